# count = 0: no instances, an empty splat.
variable "enabled" {
  type    = bool
  default = false
}

resource "terraform_data" "maybe" {
  count = var.enabled ? 1 : 0
  input = "m"
}

output "ids" {
  value = terraform_data.maybe[*].id
}
