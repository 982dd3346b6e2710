# The first configuration: three resources; stage2/ removes two of them with removed blocks,
# one forgotten (destroy = false), the other destroyed.
resource "terraform_data" "keep" {
  input = "k"
}

resource "terraform_data" "gone" {
  input = "g"
}

resource "terraform_data" "many" {
  count = 2
  input = count.index
}

output "ids" {
  value = length([terraform_data.keep.id, terraform_data.gone.id])
}
