# A sensitive output next to a plain one.
variable "token" {
  type      = string
  default   = "not-really-secret"
  sensitive = true
}

output "token" {
  value     = var.token
  sensitive = true
}

output "plain" {
  value = "visible"
}
