# count derived from a list variable's length, instances indexed into it.
variable "names" {
  type    = list(string)
  default = ["a", "b"]
}

resource "terraform_data" "item" {
  count = length(var.names)
  input = element(var.names, count.index)
}

output "second" {
  value = terraform_data.item[1].input
}
