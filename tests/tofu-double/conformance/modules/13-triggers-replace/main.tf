# triggers_replace and an object input.
variable "release" {
  type    = string
  default = "v1"
}

resource "terraform_data" "app" {
  triggers_replace = [var.release]
  input = {
    release = var.release
    tags    = ["a", "b"]
  }
}

output "release" {
  value = terraform_data.app.output.release
}
