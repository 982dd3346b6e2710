# data "terraform_remote_state" over the local backend: another configuration's outputs (its
# sensitive one arrives unmarked, as with the real binary), defaults for missing ones, used by a
# resource (which then depends on the data source), a local and outputs. remote.tfstate was
# written by Terraform 1.11.4.
data "terraform_remote_state" "net" {
  backend = "local"
  config = {
    path = "${path.module}/remote.tfstate"
  }
  defaults = {
    region = "eu-west-1"
    vpc    = "overridden"
  }
}

locals {
  subnets = data.terraform_remote_state.net.outputs.subnets
}

resource "terraform_data" "a" {
  input = "${data.terraform_remote_state.net.outputs.vpc}/${local.subnets[0]}"
}

resource "terraform_data" "b" {
  input = terraform_data.a.output
}

output "vpc" {
  value = data.terraform_remote_state.net.outputs.vpc
}

output "all" {
  value = local.subnets
}

output "region" {
  value = data.terraform_remote_state.net.outputs.region
}

output "secret" {
  value     = data.terraform_remote_state.net.outputs.secret
  sensitive = true
}
