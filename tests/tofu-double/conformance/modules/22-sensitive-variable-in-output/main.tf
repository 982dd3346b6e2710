# A sensitive variable reaching an output that is not marked sensitive is an error.
variable "password" {
  type      = string
  default   = "hunter2-not-real"
  sensitive = true
}

output "leaky" {
  value = "pw=${var.password}"
}
