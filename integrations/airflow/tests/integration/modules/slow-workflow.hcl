# A workflow whose one stack applies for ten minutes: its task times out first.
workflow {
  approval = "auto"
}

stack "slow" {
  source    = "./slow"
  workspace = "afwf/slow"
  inputs    = { seconds = 600 }
}
