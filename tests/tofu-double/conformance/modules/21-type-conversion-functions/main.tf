# Conversions between primitive types and JSON.
output "converted" {
  value = [tostring(12), tonumber("3.5"), tobool("true"), tostring(true)]
}

output "json" {
  value = jsondecode(jsonencode({ a = [1, "two"], b = { c = null } }))
}

output "coalesced" {
  value = coalesce("", "first", "second")
}
