# A workflow whose first stack fails: its dependant is skipped, the independent stack applies.
workflow {
  approval = "auto"
}

stack "migrate" {
  source    = "./failing"
  workspace = "afwf/migrate"
}

stack "after" {
  source     = "./noop"
  workspace  = "afwf/after"
  depends_on = ["migrate"]
}

stack "side" {
  source    = "./noop"
  workspace = "afwf/side"
}
