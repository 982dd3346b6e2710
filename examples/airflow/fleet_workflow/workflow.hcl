# A network per region, then an app per region reading its network's subnet (a real output,
# read from the state tofuflow stores once the network has applied).

workflow {
  approval = "auto"
}

stack "net" {
  source    = "./net"
  workspace = "wfdemo/net-${each.key}"
  for_each  = ["eu", "us"]
  inputs    = { region = each.key }
}

stack "app" {
  source    = "./app"
  workspace = "wfdemo/app-${each.key}"
  for_each  = ["eu", "us"]
  inputs    = { subnet = stack.net[each.key].outputs.subnet_id }
}
