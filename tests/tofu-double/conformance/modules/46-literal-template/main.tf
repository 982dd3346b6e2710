# templatestring refuses a template written in place: the same diagnostic at validate and plan.
variable "name" {
  type    = string
  default = "world"
}

output "greeting" {
  value = templatestring("Hello, $${name}!", { name = var.name })
}
