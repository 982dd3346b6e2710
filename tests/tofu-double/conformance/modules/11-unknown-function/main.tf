# A function no version has: the error must be OpenTofu's, never a value.
output "broken" {
  value = nosuchfn("x")
}
