# Denies destroying (or replacing) a resource tagged protected: a `protected` tag ("true" or
# true) in `tags`, or, for terraform_data, `protected = true` in its `input`.
#
#   tofuflow policy add deny-protected --workspace '**' --file deny_protected.rego
package main

import rego.v1

protected(before) if before.tags.protected in {true, "true"}

protected(before) if before.input.protected == true

deny contains msg if {
	some rc in input.resource_changes
	"delete" in rc.change.actions
	protected(rc.change.before)
	msg := sprintf("%s is tagged protected and the plan would destroy it (actions %v): remove the tag first in a separate run", [rc.address, rc.change.actions])
}
