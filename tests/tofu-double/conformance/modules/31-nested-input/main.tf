# A nested input: maps of lists of objects.
resource "terraform_data" "nested" {
  input = {
    pools = [
      { name = "a", sizes = [1, 2] },
      { name = "b", sizes = [] },
    ]
    meta = { owner = "team", tags = { env = "dev" } }
  }
}

output "first_pool" {
  value = terraform_data.nested.output.pools[0].name
}
