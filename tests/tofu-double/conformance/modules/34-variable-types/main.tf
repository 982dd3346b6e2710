# Type constraints: optional() defaults (nested too), attributes not in the type dropped,
# conversions inside collections, tuples; outputs of a variable carry its declared type.
variable "pool" {
  type = object({
    name  = string
    size  = optional(number, 2)
    tags  = optional(map(string), {})
    gpu   = optional(string)
    nodes = optional(list(object({ zone = string, spot = optional(bool, false) })), [])
  })
  default = {
    name  = "p"
    extra = "dropped"
    nodes = [{ zone = "a" }, { zone = "b", spot = true }]
  }
}
variable "counts" {
  type    = map(number)
  default = { a = "1", b = 2 }
}
variable "ids" {
  type    = list(string)
  default = [1, true, "x"]
}
variable "tup" {
  type    = tuple([string, number])
  default = ["a", "5"]
}
output "pool" { value = var.pool }
output "counts" { value = var.counts }
output "ids" { value = var.ids }
output "tup" { value = var.tup }
