# String and collection functions whose values are plain.
locals {
  words = ["b", "a", "c", "a"]
  m     = { x = 1, y = 2 }
}

output "strings" {
  value = [upper("ab"), lower("CD"), trimspace("  e  "), join("-", local.words), replace("a.b.c", ".", "/"), substr("abcdef", 1, 3)]
}

output "lists" {
  value = [length(local.words), element(local.words, 5), contains(local.words, "c"), join(",", distinct(local.words)), join(",", flatten([["p"], ["q", "r"]]))]
}

output "maps" {
  value = [lookup(local.m, "y", 0), lookup(local.m, "z", 9), join(",", keys(local.m)), max(3, 7, 5), min(3, 7, 5), abs(-4), ceil(1.2), floor(1.8)]
}

output "encodings" {
  value = [base64encode("tofu"), base64decode("dG9mdQ=="), jsonencode({ a = [1, 2] }), startswith("prefix-x", "prefix"), endswith("x-suffix", "fix")]
}
