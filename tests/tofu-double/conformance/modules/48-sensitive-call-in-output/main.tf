# An output whose value calls sensitive() must itself be marked sensitive.
output "leak" {
  value = upper(sensitive("x"))
}
