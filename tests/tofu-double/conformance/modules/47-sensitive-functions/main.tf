# sensitive() marks what it wraps, nonsensitive() removes the mark, issensitive() answers from
# the configuration (unknown for a value known only after apply); marks reach resource
# attributes and decide whether an output must be marked sensitive.
variable "secret" {
  type      = string
  default   = "s3cr3t"
  sensitive = true
}

locals {
  wrapped  = sensitive("plain")
  derived  = "${var.secret}-x"
  revealed = nonsensitive(var.secret)
}

resource "terraform_data" "a" {
  input = {
    marked   = sensitive("visible")
    revealed = nonsensitive(var.secret)
    through  = local.wrapped
    plain    = "p"
    mixed    = "${local.revealed}-${local.derived}"
    answer   = issensitive(var.secret)
  }
}

output "checks" {
  value = [issensitive(var.secret), issensitive(local.derived), issensitive(local.revealed), issensitive(local.wrapped), issensitive("x"), issensitive(terraform_data.a.output), issensitive(nonsensitive(sensitive(1)))]
}

output "revealed" {
  value = local.revealed
}

output "hidden" {
  value     = local.wrapped
  sensitive = true
}
