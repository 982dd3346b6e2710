# Sets: toset drops duplicates and orders its elements; set(string) variables too.
variable "zones" {
  type    = set(string)
  default = ["b", "a", "b"]
}

output "zones" {
  value = var.zones
}

output "toset_json" {
  value = jsonencode([toset(["c", "a", "c", "b"]), toset([3, 1, 2, 1])])
}
