# check blocks: a passing, a failing (warnings, not errors) and one known only after apply.
variable "n" {
  default = 3
}
check "positive" {
  assert {
    condition     = var.n > 0
    error_message = "n must be positive"
  }
}
check "small" {
  assert {
    condition     = var.n < 2
    error_message = "n is not small: ${var.n}"
  }
  assert {
    condition     = var.n != 5
    error_message = "n is five"
  }
}
resource "terraform_data" "r" {
  input = var.n
}
check "uses_resource" {
  assert {
    condition     = terraform_data.r.output == 3
    error_message = "output is not 3"
  }
}
