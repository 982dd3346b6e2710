# No resources: outputs known at plan time.
locals {
  region = "eu-west-1"
}

output "region" {
  value = local.region
}

output "numbers" {
  value = [for n in range(3) : n * 10]
}

output "object" {
  value = { name = "x", count = 2, on = true }
}
