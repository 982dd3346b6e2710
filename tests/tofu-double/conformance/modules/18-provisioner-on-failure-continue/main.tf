# A failing provisioner that may fail.
resource "terraform_data" "tolerant" {
  input = "t"

  provisioner "local-exec" {
    command    = "exit 2"
    on_failure = continue
  }
}

output "ok" {
  value = terraform_data.tolerant.output
}
