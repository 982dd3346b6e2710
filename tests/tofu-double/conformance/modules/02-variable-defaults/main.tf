# Variables of the primitive types with defaults, a local built from them.
variable "name" {
  type    = string
  default = "gpu"
}

variable "size" {
  type    = number
  default = 3
}

variable "enabled" {
  type    = bool
  default = true
}

locals {
  label = "${var.name}-${var.size}"
}

resource "terraform_data" "cfg" {
  input = {
    label   = local.label
    enabled = var.enabled
    size    = var.size
  }
}

output "label" {
  value = local.label
}

output "size_doubled" {
  value = var.size * 2
}
