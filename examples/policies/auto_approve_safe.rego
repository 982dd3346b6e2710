# Auto-approves a plan that destroys nothing (no delete, no replace) and changes only
# resource types on the allow-list. Anything else waits for a human as usual.
#
#   tofuflow policy add auto-approve-safe --workspace 'dev/**' --file auto_approve_safe.rego
package main

import rego.v1

allowed_types := {"terraform_data", "random_id", "random_pet", "local_file", "null_resource"}

# Whether a resource change changes something (reads and no-ops do not).
changing(rc) if not rc.change.actions in [["no-op"], ["read"]]

destroyed contains rc.address if {
	some rc in input.resource_changes
	changing(rc)
	"delete" in rc.change.actions
}

unlisted contains rc.type if {
	some rc in input.resource_changes
	changing(rc)
	not rc.type in allowed_types
}

auto_approve if {
	count(destroyed) == 0
	count(unlisted) == 0
}
