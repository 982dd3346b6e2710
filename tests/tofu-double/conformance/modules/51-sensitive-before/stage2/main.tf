# The same resources with nothing sensitive: db is updated, whole replaced.
resource "terraform_data" "db" {
  input = {
    password = "now-plain"
    region   = "us"
    list     = ["y", "x"]
  }
}

resource "terraform_data" "whole" {
  input            = "plain"
  triggers_replace = ["plain"]
}

# dropped is deleted; token is no longer sensitive, plain becomes so.
output "token" {
  value = "t-plain"
}

output "plain" {
  value     = "p2"
  sensitive = true
}
