# csvdecode, text encodings, regex and regexall (plain, numbered and named groups), replace
# with a regular expression, strcontains.
output "csv" {
  value = jsonencode(csvdecode("a,b,c\n1,\"x, \"\"y\"\"\",\n3,4,5\n"))
}

output "text_encodings" {
  value = [
    textencodebase64("Hello World", "UTF-16LE"),
    textencodebase64("hé", "ISO-8859-1"),
    textencodebase64("hé", "UTF-8"),
    textencodebase64("hi", "utf-16be"),
    textdecodebase64("SABlAGwAbABvAA==", "UTF-16LE"),
    textdecodebase64("aOk=", "latin1"),
  ]
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

output "strings" {
  value = [replace("hello world", "/w(or)ld/", "$1 [$0]"), replace("a1b22", "/\\d+/", "<$${0}>"), replace("x.y.z", ".", "-"), strcontains("hello", "ell"), strcontains("hello", "xyz")]
}
