# jsonencode: key order, numbers, nulls, nested values.
output "encoded" {
  value = jsonencode({ b = 1, a = [true, null, 1.5, "x"], c = { z = 10, y = 2.0 } })
}

output "decoded_number" {
  value = jsondecode("[1, 2.5, 100]")
}
