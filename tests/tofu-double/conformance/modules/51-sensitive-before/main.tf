# The first configuration writes sensitive attributes; stage2/ changes them to values that are
# not sensitive: the update's before keeps the marks state recorded.
variable "secret" {
  type      = string
  default   = "s3cr3t"
  sensitive = true
}

resource "terraform_data" "db" {
  input = {
    password = var.secret
    region   = "eu"
    list     = [var.secret, "x"]
  }
}

resource "terraform_data" "whole" {
  input            = var.secret
  triggers_replace = [var.secret]
}

resource "terraform_data" "dropped" {
  input = { key = var.secret }
}

output "token" {
  value     = "t-${var.secret}"
  sensitive = true
}

output "plain" {
  value = "p"
}
