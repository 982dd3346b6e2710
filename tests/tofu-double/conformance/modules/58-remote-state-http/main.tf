# data "terraform_remote_state" over the http backend: the differential check serves this
# module's remote.tfstate (written by Terraform 1.11.4) and passes its address in
# TF_VAR_conformance_http.
variable "conformance_http" {
  type    = string
  default = "http://127.0.0.1:9"
}

data "terraform_remote_state" "net" {
  backend = "http"
  config = {
    address = "${var.conformance_http}/modules/58-remote-state-http/remote.tfstate"
  }
}

resource "terraform_data" "a" {
  input = data.terraform_remote_state.net.outputs.m
}

output "vpc" {
  value = data.terraform_remote_state.net.outputs.vpc
}

output "x" {
  value = terraform_data.a.output.x
}
