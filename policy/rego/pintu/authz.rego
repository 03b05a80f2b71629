# Pintu's exchange policy: who may call which service, for what, and when.
#
# Input: docs/policy.md (version 1). `input.rights` and `input.windows` hold only the entries
# that apply to this client and service. Output: `decision`.
package pintu.authz

import rego.v1

# Default deny: an exchange is allowed only when no rule below objects.
default allow := false

allow if {
	input.version == 1
	count(deny) == 0
}

# -- access rights: by subsystem, global group or local group; per service or per method ------

deny contains "no_access_right" if not has_right

has_right if {
	some right in input.rights
	count(right.methods) == 0
}

has_right if {
	some right in input.rights
	input.exchange.method in right.methods
}

# -- purpose binding ---------------------------------------------------------------------------

# A service that names its purposes serves only those.
deny contains "purpose_not_allowed" if {
	count(input.service.purposes) > 0
	not input.exchange.purpose in input.service.purposes
}

# Personal data is never asked for without a purpose.
deny contains "purpose_missing" if {
	input.service.personal_data
	input.exchange.purpose == ""
}

# -- personal data: the citizen's consent, or a declared legal basis ---------------------------

deny contains "consent_missing" if {
	input.service.personal_data
	input.subject.concerned
	not lawful
}

# A service that requires consent answers only about a named citizen: without one, no consent
# could have been checked.
deny contains "subject_missing" if {
	input.service.consent_required
	not input.subject.concerned
}

lawful if input.subject.consent == "active"

lawful if {
	not input.service.consent_required
	input.service.legal_basis != ""
}

# -- maintenance and other closed windows -------------------------------------------------------

deny contains "service_closed" if {
	some window in input.windows
	window.from_ns <= input.time.ns
	input.time.ns < window.until_ns
}

# -- an input this policy does not know --------------------------------------------------------

deny contains "input_version_unknown" if input.version != 1

# -- what the security server must do when it lets the exchange through ---------------------------

obligations contains "log_body" if {
	allow
	input.service.personal_data
}

obligations contains "notify_subject" if {
	allow
	input.service.personal_data
	input.subject.concerned
}

decision := {
	"allow": allow,
	"reasons": sort([reason | some reason in deny]),
	"obligations": sort([obligation | some obligation in obligations]),
}
