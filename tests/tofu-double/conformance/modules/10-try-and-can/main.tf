# try and can evaluate their arguments lazily.
locals {
  m = { a = 1 }
}

output "tried" {
  value = [try(local.m.missing, "fallback"), try(local.m.a, "fallback"), try(tonumber("x"), -1)]
}

output "could" {
  value = [can(local.m.missing), can(local.m.a), can(cidrhost("10.0.0.0/30", 8))]
}

output "templated" {
  value = "value-${try(local.m.missing, "none")}"
}
