# cidrnetmask and cidrsubnets (IPv4 and IPv6), matchkeys, setproduct, transpose, log.
output "network" {
  value = [cidrnetmask("172.16.0.0/12"), cidrnetmask("10.0.0.0/31"), cidrnetmask("0.0.0.0/0")]
}

output "subnets" {
  value = jsonencode([cidrsubnets("10.1.0.0/16", 4, 4, 8, 4), cidrsubnets("fd00:fd12:3456:7890::/56", 16, 16, 16, 32), cidrsubnets("10.0.0.0/24", 2, 1)])
}

output "collections" {
  value = jsonencode([
    matchkeys(["i-123", "i-abc", "i-def"], ["us-west", "us-east", "us-east"], ["us-east"]),
    setproduct(["a", "b"], ["x", "y"], ["1"]),
    transpose({ "a" = ["1", "2"], "b" = ["2", "3"] }),
  ])
}

output "logs" {
  value = [log(16, 2), log(10, 10), log(1, 10), floor(log(1000, 10)), log(10, 3), log(2, 10), log(100, 7.5), log(0.5, 2)]
}
