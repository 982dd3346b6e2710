# formatdate's verbs and literals, timeadd with Go durations, timecmp across offsets.
locals {
  t = "2018-01-02T03:04:05-08:00"
}

output "formats" {
  value = [
    formatdate("DD MMM YYYY hh:mm ZZZ", "2018-01-02T23:12:01Z"),
    formatdate("EEEE, DD-MMM-YY hh:mm:ss ZZZZ", local.t),
    formatdate("EEE, D M MM MMMM YY h H HH m mm s ss AA aa", local.t),
    formatdate("'literal ''quoted''' Z ZZZZZ ZZZ", "2018-01-02T03:04:05.123+05:30"),
    formatdate("HH:mm AA Z ZZZ", "2018-12-31T12:00:00Z"),
    formatdate("YYYY-MM-DD", "1999-02-28T23:59:59+00:00"),
  ]
}

output "arithmetic" {
  value = [
    timeadd("2017-11-22T00:00:00Z", "10m"),
    timeadd("2017-11-22T00:00:00Z", "-1h30m45.5s"),
    timeadd("2017-11-22T00:00:00+02:00", "25h"),
    timeadd("2018-01-02T03:04:05.5Z", "1.5s"),
    timeadd("2020-02-28T23:00:00Z", "24h1ms"),
    timecmp("2017-11-22T00:00:00Z", "2017-11-22T01:00:00+01:00"),
    timecmp("2017-11-22T00:00:01Z", "2017-11-22T00:00:00Z"),
    timecmp("2017-11-22T00:00:00Z", "2017-11-22T00:00:00.5Z"),
  ]
}
