# nonsensitive() lifts a sensitive for_each; a count derived from a sensitive value is allowed.
variable "names" {
  type      = set(string)
  default   = ["a", "b"]
  sensitive = true
}

resource "terraform_data" "c" {
  for_each = nonsensitive(var.names)
  input    = each.key
}

resource "terraform_data" "d" {
  count = length(sensitive([1, 2]))
  input = count.index
}

output "keys" {
  value = keys(terraform_data.c)
}
