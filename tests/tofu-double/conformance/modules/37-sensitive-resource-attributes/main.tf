# Sensitivity of resource attributes: marked down to the attribute or element written with a
# sensitive variable (through locals too); output, computed, carries no mark.
variable "pw" {
  type      = string
  default   = "hunter2-not-real"
  sensitive = true
}

locals {
  cfg = { password = var.pw, region = "eu" }
}

resource "terraform_data" "db" {
  input = { password = var.pw, region = "eu", nested = { inner = var.pw, plain = 1 }, list = [var.pw, "x"], via = local.cfg }
}

resource "terraform_data" "whole" {
  input            = var.pw
  triggers_replace = [var.pw]
}

output "region" {
  value = terraform_data.db.output.region
}
