# Numbers: rounding, min and max over fractions, parsing.
output "rounding" {
  value = [ceil(-1.5), floor(-1.5), abs(-2.25), ceil(2), floor(2.999)]
}

output "extremes" {
  value = [max(1.5, 2.25, -3), min(1.5, 2.25, -3), tonumber("1e3"), tonumber("0.125")]
}

# List results compared as JSON: the stand-in does not yet type them as lists.
output "ranges" {
  value = jsonencode([range(3), range(1, 4), range(10, 0, -3), range(0, 1, 0.25)])
}
