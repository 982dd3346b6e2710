# for_each over a set of strings: each.key equals each.value.
resource "terraform_data" "member" {
  for_each = toset(["red", "green", "blue"])
  input    = "${each.key}/${each.value}"
}

output "green" {
  value = terraform_data.member["green"].input
}
