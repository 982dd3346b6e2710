# References to one instance's computed attributes.
resource "terraform_data" "n" {
  count = 2
  input = count.index
}

resource "terraform_data" "uses_first" {
  input = terraform_data.n[0].output
}

output "first_output" {
  value = terraform_data.n[0].output
}

output "all_outputs" {
  value = terraform_data.n[*].output
}
