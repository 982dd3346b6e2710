# Applies a resource whose provisioner fails, as a broken migration would.
resource "terraform_data" "migration" {
  provisioner "local-exec" {
    command = "echo running migration 42; echo 'migration 42 failed: table locked' >&2; exit 3"
  }
}
