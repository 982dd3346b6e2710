# A creation provisioner with an environment.
resource "terraform_data" "provisioned" {
  input = "p"

  provisioner "local-exec" {
    command     = "echo provisioning $WHAT"
    environment = { WHAT = "thing" }
  }
}

output "done" {
  value = terraform_data.provisioned.output
}
