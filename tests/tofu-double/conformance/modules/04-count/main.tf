# count with count.index and a splat over the instances.
resource "terraform_data" "node" {
  count = 3
  input = "node-${count.index}"
}

output "names" {
  value = terraform_data.node[*].input
}

output "how_many" {
  value = length(terraform_data.node)
}
