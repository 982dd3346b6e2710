# A module whose apply runs a long local-exec, for cancel and crash tests. The command traps
# nothing: SIGINT to the process group stops it, as it would under real OpenTofu.

variable "seconds" {
  type    = number
  default = 600
}

resource "terraform_data" "slow" {
  input = var.seconds

  provisioner "local-exec" {
    command = "echo started; sleep ${var.seconds}; echo finished"
  }
}

output "slept" {
  value = terraform_data.slow.output
}
