# A default that fails its validation: plan stops with the error message.
variable "replicas" {
  type    = number
  default = 0

  validation {
    condition     = var.replicas > 0
    error_message = "replicas must be positive."
  }
}

output "replicas" {
  value = var.replicas
}
