# terraform_data.gone is forgotten (left out of state, not destroyed); terraform_data.many is
# destroyed, as it would be without the block; a removed block for what state never held is a
# no-op.
resource "terraform_data" "keep" {
  input = "k"
}

removed {
  from = terraform_data.gone

  lifecycle {
    destroy = false
  }
}

removed {
  from = terraform_data.many
}

removed {
  from = terraform_data.never

  lifecycle {
    destroy = false
  }
}

output "kept" {
  value = terraform_data.keep.output
}
