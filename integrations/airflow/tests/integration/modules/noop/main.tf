# Does nothing worth mentioning, successfully.
resource "terraform_data" "noop" {
  input = "ok"
}

output "value" {
  value = terraform_data.noop.output
}
