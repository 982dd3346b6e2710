# moved blocks (stage2/): a resource renamed, count instances moved to for_each keys.
resource "terraform_data" "a" {
  input = "x"
}

resource "terraform_data" "n" {
  count = 2
  input = count.index
}
