# An apply that takes `seconds` (a long local-exec), for the workflow timeout test.
variable "seconds" {
  type = number
}

resource "terraform_data" "slow" {
  input = var.seconds

  provisioner "local-exec" {
    command = "echo started; sleep ${var.seconds}; echo finished"
  }
}
