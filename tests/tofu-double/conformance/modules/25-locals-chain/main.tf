# Locals that refer to each other, declared out of order, feeding a resource.
locals {
  full   = "${local.prefix}-${local.suffix}"
  prefix = upper(local.base)
  base   = "pool"
  suffix = format("%03d", 7)
}

resource "terraform_data" "named" {
  input = local.full
}

output "full" {
  value = local.full
}

output "named" {
  value = terraform_data.named.output
}
