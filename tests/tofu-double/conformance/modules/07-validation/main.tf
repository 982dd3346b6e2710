# A variable validation that passes.
variable "gpu_type" {
  type    = string
  default = "a100"

  validation {
    condition     = contains(["a100", "h100"], var.gpu_type)
    error_message = "gpu_type must be a100 or h100."
  }
}

output "gpu_type" {
  value = upper(var.gpu_type)
}
