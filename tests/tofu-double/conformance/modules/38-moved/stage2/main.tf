resource "terraform_data" "b" {
  input = "x"
}

moved {
  from = terraform_data.a
  to   = terraform_data.b
}

resource "terraform_data" "m" {
  for_each = toset(["zero", "one"])
  input    = each.key == "zero" ? 0 : 1
}

moved {
  from = terraform_data.n[0]
  to   = terraform_data.m["zero"]
}

moved {
  from = terraform_data.n[1]
  to   = terraform_data.m["one"]
}

output "b" {
  value = terraform_data.b.output
}
