# Conditionals, arithmetic, comparison and logical operators.
variable "n" {
  type    = number
  default = 7
}

output "arithmetic" {
  value = [var.n + 1, var.n - 10, var.n * 3, var.n / 2, var.n % 4, -var.n]
}

output "logic" {
  value = [var.n > 5 && var.n < 10, var.n == 7 || false, !(var.n != 7), var.n >= 8 ? "big" : "small"]
}
