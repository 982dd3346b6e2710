# fileset, abspath, pathexpand, templatefile and templatestring.
locals {
  greeting = file("${path.module}/greeting.txt")
}

output "fileset" {
  value = jsonencode([fileset(path.module, "*.tf"), fileset(path.module, "{*.tpl,*.txt}"), fileset(path.module, "g?eeting.*"), fileset(path.module, "nothing*")])
}

output "paths" {
  value = [abspath("/a/../b/./c/"), abspath("${path.module}/main.tf") == "${abspath(path.module)}/main.tf", pathexpand("/x/y"), pathexpand("~/x") == "${pathexpand("~")}/x"]
}

output "templates" {
  value = [templatefile("${path.module}/list.tpl", { names = ["a", "b"], title = "list" }), templatestring(local.greeting, { name = "world" })]
}

resource "terraform_data" "rendered" {
  input = templatefile("${path.module}/list.tpl", { names = ["x"], title = "one" })
}
