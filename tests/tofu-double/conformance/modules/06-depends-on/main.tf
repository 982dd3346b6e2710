# A reference chain and an explicit depends_on.
resource "terraform_data" "network" {
  input = "net"
}

resource "terraform_data" "cluster" {
  input = terraform_data.network.output
}

resource "terraform_data" "after" {
  input      = "last"
  depends_on = [terraform_data.cluster]
}

output "cluster_input" {
  value = terraform_data.cluster.output
}
