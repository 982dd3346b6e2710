# Heredocs and template directives.
locals {
  items = ["x", "y"]
}

output "heredoc" {
  value = <<-EOT
    first line
    items: %{for i in local.items}[${i}]%{endfor}
    %{if length(local.items) > 1}many%{else}few%{endif}
  EOT
}
