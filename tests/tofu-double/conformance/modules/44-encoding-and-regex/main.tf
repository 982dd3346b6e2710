# csvdecode, text encodings, regex and regexall (plain, numbered and named groups), replace
# with a regular expression, strcontains; Go's (ASCII) character classes.
output "csv" {
  value = jsonencode(csvdecode("a,b,c\n1,\"x, \"\"y\"\"\",\n3,4,5\n"))
}

output "csv_edges" {
  value = [can(csvdecode("a\n\"x\"y\n")), can(csvdecode("a\nx\"y\n")), can(csvdecode("a,b\n1\n")), jsonencode(csvdecode("a,b\r\n1,2\r\n\r\n3,4"))]
}

output "text_encodings" {
  value = [
    textencodebase64("Hello World", "UTF-16LE"),
    textencodebase64("hé", "ISO-8859-1"),
    textencodebase64("hé", "UTF-8"),
    textencodebase64("hi", "utf-16be"),
    textdecodebase64("SABlAGwAbABvAA==", "UTF-16LE"),
    textdecodebase64("aOk=", "latin1"),
    textencodebase64("hi", "US-ASCII"),
    textencodebase64("hi", "UTF-16"),
    textdecodebase64("/v8AaABp", "UTF-16"),
  ]
}

# Text an encoding cannot hold, bytes not valid in it, and names Go's index does not know fail.
output "text_encoding_errors" {
  value = [can(textencodebase64("hé", "US-ASCII")), can(textdecodebase64("aOk=", "US-ASCII")), can(textencodebase64("hi", "ascii")), can(textencodebase64("€", "ISO-8859-1")), can(textdecodebase64("/w==", "UTF-8")), can(textdecodebase64("2D3Y", "UTF-16LE")), can(textencodebase64("hi", "utf8"))]
}

output "regex" {
  value = jsonencode([
    regex("[a-z]+", "53453453.345345aaabbbccc23454"),
    regex("^(?:(?P<scheme>[^:/?#]+):)?(?://(?P<authority>[^/?#]*))?", "https://terraform.io/docs/"),
    regex("(\\d\\d\\d\\d)-(\\d\\d)-(\\d\\d)", "2019-02-01"),
    regex("(a)|(b)", "b"),
    regexall("[a-z]+", "1234abcd5678efgh9"),
    regexall("(\\d)(\\w)", "1a 2b 3c"),
    length(regexall("z", "abc")),
  ])
}

# Go's \d, \w, \s and \b are ASCII-only; ] first in a class and & inside one are literal.
output "regex_classes" {
  value = jsonencode([
    regex("\\w+", "héllo wörld"),
    regexall("\\d", "1٣2"),
    regexall("\\bx", "éx x"),
    regex("[\\w]+", "ébc"),
    regexall("[^\\d]", "a1"),
    regex("[]a]+", "x]a]"),
    regex("[[:alpha:]&]+", "1a&b"),
    replace("a b\u00a0c", "/\\s/", "_"),
  ])
}

output "strings" {
  value = [replace("hello world", "/w(or)ld/", "$1 [$0]"), replace("a1b22", "/\\d+/", "<$${0}>"), replace("x.y.z", ".", "-"), strcontains("hello", "ell"), strcontains("hello", "xyz")]
}
