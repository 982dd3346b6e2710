# More string functions and their edge cases (list results compared as JSON: the stand-in does
# not yet type them as lists).
output "split" {
  value = jsonencode([split(",", "a,b,,c"), split(",", "")])
}

output "substr" {
  value = [substr("hello", 1, -1), substr("hello", 0, 10), substr("héllo", 1, 2)]
}

output "formats" {
  value = [format("%-6s|%6s|", "ab", "cd"), format("%q", "tab\tnew\nline"), format("%.2f%%", 12.345), format("%d items", 3)]
}
