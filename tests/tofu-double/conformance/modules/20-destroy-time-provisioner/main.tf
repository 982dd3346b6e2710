# A destroy-time provisioner: nothing runs while creating.
resource "terraform_data" "torn_down" {
  input = "d"

  provisioner "local-exec" {
    when    = destroy
    command = "echo tearing down ${self.output}"
  }
}

output "value" {
  value = terraform_data.torn_down.output
}
