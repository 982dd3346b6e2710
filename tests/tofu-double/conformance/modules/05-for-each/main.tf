# for_each over a map, each.key and each.value.
variable "zones" {
  type = map(string)
  default = {
    a = "eu-west-1a"
    b = "eu-west-1b"
  }
}

resource "terraform_data" "zone" {
  for_each = var.zones
  input    = "${each.key}=${each.value}"
}

output "zone_a" {
  value = terraform_data.zone["a"].input
}
