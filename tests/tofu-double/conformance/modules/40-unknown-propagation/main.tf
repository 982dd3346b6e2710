# Values known only after apply propagate through operators, conditions and functions; a
# structural function (length, merge, concat) keeps a known shape around them.
resource "terraform_data" "src" {
  count = 2
  input = count.index
}

resource "terraform_data" "uses" {
  input = {
    equal   = terraform_data.src[0].output == 0
    sum     = terraform_data.src[1].output + 1
    picked  = terraform_data.src[0].output > 0 ? "yes" : "no"
    upper   = upper(terraform_data.src[0].id)
    count   = length(terraform_data.src[*].id)
    merged  = merge({ a = terraform_data.src[0].id }, { b = "known" })
    encoded = jsonencode(terraform_data.src[*].id)
  }
}

output "equal" {
  value = terraform_data.src[0].output == 0
}

output "count" {
  value = length(terraform_data.src[*].id)
}

output "upper" {
  value = upper(terraform_data.src[1].id)
}

output "both" {
  value = concat(terraform_data.src[*].id, ["known"])
}
