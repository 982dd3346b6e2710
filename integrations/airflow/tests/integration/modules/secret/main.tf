# Receives a credential as a sensitive variable and keeps it out of every output but one
# sensitive output.
variable "api_key" {
  type      = string
  sensitive = true
}

resource "terraform_data" "client" {
  input = length(var.api_key)

  provisioner "local-exec" {
    command = "echo configured client in $CLOUD_REGION; echo token-length $${#CLOUD_TOKEN}; echo token $CLOUD_TOKEN"
  }
}

output "key_length" {
  value = terraform_data.client.output
}

output "api_key" {
  value     = var.api_key
  sensitive = true
}
