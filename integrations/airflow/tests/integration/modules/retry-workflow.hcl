# A workflow whose one stack applies for 8 seconds: long enough to kill a worker mid-apply.
workflow {
  approval = "auto"
}

stack "slow" {
  source    = "./slow"
  workspace = "afwf/retry"
  inputs    = { seconds = 8 }
}
