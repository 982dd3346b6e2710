# Requires a human approval when the plan changes more than max_changes resources, even for a
# run submitted with --auto-approve or auto-approved by another policy.
#
#   tofuflow policy add approval-above-10 --workspace '**' --file approval_above_n.rego
package main

import rego.v1

max_changes := 10

changed contains rc.address if {
	some rc in input.resource_changes
	not rc.change.actions in [["no-op"], ["read"]]
}

warn contains msg if {
	count(changed) > max_changes
	msg := sprintf("the plan changes %d resources (more than %d): a human must approve it", [count(changed), max_changes])
}
