variable "subnet" {
  type = string
}

resource "terraform_data" "app" {
  input = "https://${var.subnet}.example"
}

output "endpoint" {
  value = terraform_data.app.output
}
