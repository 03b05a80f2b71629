# Cases for package pintu.authz, run by `pintu policy test`: each case's input is evaluated as a
# security server would evaluate it, and the decision must hold what `expect` names (every key
# given: allow, reasons, obligations).
package pintu.authz_test

import rego.v1

# A birth-support caseworker system asks the civil registry for a person, with a right held
# through a global group, for an allowed purpose, with the citizen's consent.
base := {
	"version": 1,
	"exchange": {
		"client": "DEMO/GOV/WELFARE/birthsupport",
		"client_server": "DEMO/GOV/WELFARE/ss1",
		"provider": "DEMO/GOV/POPREG/civilregistry",
		"service": "popreg.v1.CivilRegistry",
		"method": "GetPerson",
		"purpose": "birth-support",
	},
	"client_groups": ["social-services"],
	"subject": {"concerned": true, "consent": "active"},
	"service": {
		"personal_data": true,
		"data_categories": ["identity"],
		"purposes": ["birth-support"],
		"consent_required": true,
		"legal_basis": "",
	},
	"rights": [{"holder": "group:social-services", "methods": ["GetPerson"]}],
	"windows": [],
	"time": {"ns": 1764000000000000000},
}

no_personal_data := {
	"personal_data": false,
	"data_categories": [],
	"purposes": [],
	"consent_required": false,
	"legal_basis": "",
}

legal_basis_only := object.union(base.service, {"consent_required": false, "legal_basis": "Population Act art. 5"})

cases := [
	{
		"name": "allowed with a group right, a purpose and consent",
		"input": base,
		"expect": {"allow": true, "reasons": [], "obligations": ["log_body", "notify_subject"]},
	},
	{
		"name": "a service that requires consent is not asked without a citizen",
		"input": object.union(base, {"subject": {"concerned": false, "consent": "none"}}),
		"expect": {"allow": false, "reasons": ["subject_missing"]},
	},
	{
		"name": "default deny without any right",
		"input": object.union(base, {"rights": []}),
		"expect": {"allow": false, "reasons": ["no_access_right"], "obligations": []},
	},
	{
		"name": "a right for another method does not cover this one",
		"input": object.union(base, {"exchange": object.union(base.exchange, {"method": "ListPeople"})}),
		"expect": {"allow": false, "reasons": ["no_access_right"]},
	},
	{
		"name": "a right without methods covers every method",
		"input": object.union(base, {
			"rights": [{"holder": "subsystem:DEMO/GOV/WELFARE/birthsupport", "methods": []}],
			"exchange": object.union(base.exchange, {"method": "ListPeople"}),
		}),
		"expect": {"allow": true},
	},
	{
		"name": "one applicable right among several is enough",
		"input": object.union(base, {"rights": [
			{"holder": "local:caseworkers", "methods": ["ListPeople"]},
			{"holder": "subsystem:DEMO/GOV/WELFARE/birthsupport", "methods": ["GetPerson"]},
		]}),
		"expect": {"allow": true},
	},
	{
		"name": "a purpose the service does not serve is refused",
		"input": object.union(base, {"exchange": object.union(base.exchange, {"purpose": "marketing"})}),
		"expect": {"allow": false, "reasons": ["purpose_not_allowed"]},
	},
	{
		"name": "personal data without a purpose is refused",
		"input": object.union(base, {
			"exchange": object.union(base.exchange, {"purpose": ""}),
			"service": object.union(base.service, {"purposes": []}),
		}),
		"expect": {"allow": false, "reasons": ["purpose_missing"]},
	},
	{
		"name": "personal data without consent is refused",
		"input": object.union(base, {"subject": {"concerned": true, "consent": "none"}}),
		"expect": {"allow": false, "reasons": ["consent_missing"]},
	},
	{
		"name": "paused consent is no consent",
		"input": object.union(base, {"subject": {"concerned": true, "consent": "paused"}}),
		"expect": {"allow": false, "reasons": ["consent_missing"]},
	},
	{
		"name": "revoked consent is no consent",
		"input": object.union(base, {"subject": {"concerned": true, "consent": "revoked"}}),
		"expect": {"allow": false, "reasons": ["consent_missing"]},
	},
	{
		"name": "expired consent is no consent",
		"input": object.union(base, {"subject": {"concerned": true, "consent": "expired"}}),
		"expect": {"allow": false, "reasons": ["consent_missing"]},
	},
	{
		"name": "a legal basis stands in for consent",
		"input": object.union(base, {"subject": {"concerned": true, "consent": "none"}, "service": legal_basis_only}),
		"expect": {"allow": true, "obligations": ["log_body", "notify_subject"]},
	},
	{
		"name": "a legal basis does not replace consent the service requires",
		"input": object.union(base, {
			"subject": {"concerned": true, "consent": "none"},
			"service": object.union(legal_basis_only, {"consent_required": true}),
		}),
		"expect": {"allow": false, "reasons": ["consent_missing"]},
	},
	{
		"name": "no consent is needed when no citizen is concerned, unless the service requires it",
		"input": object.union(base, {"service": legal_basis_only, "subject": {"concerned": false, "consent": "none"}}),
		"expect": {"allow": true, "obligations": ["log_body"]},
	},
	{
		"name": "a service without personal data has no obligations",
		"input": object.union(base, {"service": no_personal_data, "subject": {"concerned": false, "consent": "none"}}),
		"expect": {"allow": true, "reasons": [], "obligations": []},
	},
	{
		"name": "a maintenance window closes the service",
		"input": object.union(base, {"windows": [{"from_ns": 1763999000000000000, "until_ns": 1764001000000000000, "reason": "maintenance"}]}),
		"expect": {"allow": false, "reasons": ["service_closed"]},
	},
	{
		"name": "a window ends before its until",
		"input": object.union(base, {"windows": [{"from_ns": 1763999000000000000, "until_ns": 1764000000000000000, "reason": "maintenance"}]}),
		"expect": {"allow": true},
	},
	{
		"name": "every reason is given at once, sorted",
		"input": object.union(base, {
			"rights": [],
			"exchange": object.union(base.exchange, {"purpose": "marketing"}),
			"subject": {"concerned": true, "consent": "revoked"},
		}),
		"expect": {"allow": false, "reasons": ["consent_missing", "no_access_right", "purpose_not_allowed"], "obligations": []},
	},
	{
		"name": "an unknown input version is refused",
		"input": object.union(base, {"version": 2}),
		"expect": {"allow": false, "reasons": ["input_version_unknown"]},
	},
]
