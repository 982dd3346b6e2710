# A failing creation provisioner: the apply fails and the resource is tainted.
resource "terraform_data" "fails" {
  input = "f"

  provisioner "local-exec" {
    command = "exit 3"
  }
}
