# A removed block for a resource still declared fails the plan.
resource "terraform_data" "keep" {
  input = "k"
}

removed {
  from = terraform_data.keep

  lifecycle {
    destroy = false
  }
}
