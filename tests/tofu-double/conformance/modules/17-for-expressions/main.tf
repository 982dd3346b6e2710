# for expressions over lists and maps, with filters and object results.
locals {
  names = ["alpha", "beta", "gamma"]
  sizes = { small = 1, large = 4 }
}

output "upper_names" {
  value = [for n in local.names : upper(n)]
}

output "long_names" {
  value = [for i, n in local.names : "${i}:${n}" if length(n) > 4]
}

output "doubled" {
  value = { for k, v in local.sizes : k => v * 2 }
}
