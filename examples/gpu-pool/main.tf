# A stand-in for an ephemeral GPU node pool: one node per GPU group, tagged with region and type.
# Valid OpenTofu (>= 1.9) that runs unchanged on the real binary; it uses only the built-in
# provider, so it needs no network.

terraform {
  required_version = ">= 1.6"
}

variable "region" {
  type        = string
  description = "Region the pool lives in."
  default     = "eu-west-1"
}

variable "gpu_type" {
  type        = string
  description = "GPU model of every node."
  default     = "a100"

  validation {
    condition     = contains(["a100", "h100", "l4", "t4"], var.gpu_type)
    error_message = "gpu_type must be one of a100, h100, l4, t4."
  }
}

variable "gpu_count" {
  type        = number
  description = "Number of GPU nodes."
  default     = 2
}

variable "ttl_hours" {
  type        = number
  description = "Hours after which the pool may be torn down."
  default     = 4
}

locals {
  pool_name = format("gpu-%s-%s", var.gpu_type, var.region)
  labels = {
    region   = var.region
    gpu_type = var.gpu_type
    ttl      = "${var.ttl_hours}h"
  }
}

resource "terraform_data" "pool" {
  input = {
    name   = local.pool_name
    labels = local.labels
  }
}

resource "terraform_data" "node" {
  count = var.gpu_count

  input = {
    pool  = terraform_data.pool.output.name
    index = count.index
    gpu   = var.gpu_type
  }

  provisioner "local-exec" {
    command = "echo node ${count.index} of ${local.pool_name} ready"
  }

  provisioner "local-exec" {
    when    = destroy
    command = "echo draining node ${self.input.index} of ${self.input.pool}"
  }
}

output "pool_name" {
  value = terraform_data.pool.output.name
}

output "node_ids" {
  value = terraform_data.node[*].id
}

output "gpu_total" {
  value = var.gpu_count
}
