# A provisioner with an interpreter and a working directory.
resource "terraform_data" "here" {
  input = "w"

  provisioner "local-exec" {
    interpreter = ["/bin/sh", "-c"]
    working_dir = path.module
    command     = "test -f main.tf && echo found"
  }
}
