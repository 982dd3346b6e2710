variable "region" {
  type = string
}

resource "terraform_data" "net" {
  input = "subnet-${var.region}"
}

output "subnet_id" {
  value = terraform_data.net.output
}
