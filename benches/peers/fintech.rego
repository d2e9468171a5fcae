# The case-study policy (policies/fintech_policy.yaml) in Rego.
# Input: {"capability": "payments.transfer", "environment": "...", "amount": 120.0}.
package capfence

import rego.v1

transfer if input.capability == "payments.transfer"

deny_tier if {
	transfer
	input.amount > 10000
}

deny_tier if {
	transfer
	input.environment == "staging"
	input.amount > 50
}

approval_tier if {
	transfer
	input.amount > 500
}

approval_tier if {
	input.capability == "payments.refund"
	input.amount > 100
}

allow_tier if {
	transfer
	input.amount <= 500
}

allow_tier if input.capability == "payments.read"

default decision := "deny"

decision := "deny" if deny_tier

decision := "require_approval" if {
	not deny_tier
	approval_tier
}

decision := "allow" if {
	not deny_tier
	not approval_tier
	allow_tier
}
