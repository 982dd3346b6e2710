# One resource, its computed attributes in outputs.
resource "terraform_data" "one" {
  input = "hello"
}

output "id" {
  value = terraform_data.one.id
}

output "echo" {
  value = terraform_data.one.output
}
