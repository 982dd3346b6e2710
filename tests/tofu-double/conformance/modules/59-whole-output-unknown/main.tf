# A changing resource's whole output (an object, a list) is one unknown value while planning,
# in an output and in another resource's input; a part of it is unknown on its own.
resource "terraform_data" "a" {
  input = { x = 1, y = ["p", "q"] }
}

resource "terraform_data" "n" {
  count = 2
  input = [count.index]
}

resource "terraform_data" "b" {
  input = terraform_data.a.output
}

output "whole" {
  value = terraform_data.a.output
}

output "instance" {
  value = terraform_data.n[1].output
}

output "part" {
  value = terraform_data.a.output.y
}

output "built" {
  value = { id = terraform_data.a.id, x = terraform_data.a.output.x }
}
