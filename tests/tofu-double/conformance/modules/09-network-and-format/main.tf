# Network functions and format verbs with flags, width and precision.
output "subnets" {
  value = [cidrsubnet("10.0.0.0/16", 8, 2), cidrsubnet("172.16.0.0/12", 4, 15), cidrhost("10.0.0.0/24", -1), cidrhost("192.168.1.0/28", 14), cidrsubnet("fd00::/32", 16, 258)]
}

output "formatted" {
  value = format("%5d|%-8s|%05.2f|%q|%t|%v|%x|%X|%o|%b|%e|%+d|%g|%.3s|%#v", 42, "ab", 2.71828, "q", true, 1.5, 255, 255, 8, 5, 12345.678, 3, 1234567.0, "abcdef", "s")
}
