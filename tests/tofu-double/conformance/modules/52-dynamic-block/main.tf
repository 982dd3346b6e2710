# terraform_data has no nested block types: a dynamic block (and an unknown argument) fails
# validate and plan with the schema's diagnostics, while init succeeds.
resource "terraform_data" "a" {
  input = "x"

  dynamic "setting" {
    for_each = ["a", "b"]
    content {
      name = setting.value
    }
  }
}

resource "terraform_data" "b" {
  input  = "y"
  colour  = "blue"
}
