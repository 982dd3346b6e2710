# A sensitive for_each (a variable, or sensitive()) fails validation; nonsensitive() lifts it,
# and a count derived from a sensitive value is allowed.
variable "names" {
  type      = set(string)
  default   = ["a"]
  sensitive = true
}

resource "terraform_data" "a" {
  for_each = var.names
  input    = each.key
}

resource "terraform_data" "b" {
  for_each = toset(sensitive(["x"]))
  input    = each.key
}

resource "terraform_data" "c" {
  for_each = nonsensitive(var.names)
  input    = each.key
}

resource "terraform_data" "d" {
  count = length(sensitive([1, 2]))
  input = count.index
}
