"""The policy input (version 1) and the decision: their shape, and everything they refuse."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import textwrap
from dataclasses import replace
from typing import Any

import pytest

import policy
import policy._model
from policy import Decision, PolicyError, PolicyInput, Right, ServiceFacts, Window
from tests.policy.rego_support import BIRTH_SUPPORT, MOMENT, MOMENT_NS, birth_support


def documented_input() -> dict[str, Any]:
    """The example input of the model's module docstring (the documented version 1)."""
    found = re.search(r"::\n\n(.*?)\n\n", policy._model.__doc__ or "", re.DOTALL)
    assert found, "the module docstring has no example input"
    document: dict[str, Any] = json.loads(textwrap.dedent(found[1]))
    return document


def test_to_json_is_the_documented_version_1_document() -> None:
    policy_input = PolicyInput(
        client="DEMO/GOV/WELFARE/birthsupport",
        client_server="DEMO/GOV/WELFARE/ss1",
        provider="DEMO/GOV/POPREG/civilregistry",
        service="popreg.v1.CivilRegistry",
        method="GetPerson",
        time=dt.datetime(2025, 11, 24, 16, 20, 34, tzinfo=dt.UTC),
        purpose="birth-support",
        client_groups=("social-services",),
        subject_concerned=True,
        consent="active",
        facts=ServiceFacts(
            personal_data=True,
            data_categories=("identity",),
            purposes=("birth-support",),
            consent_required=False,
            legal_basis="Population Act art. 5",
        ),
        rights=(Right("group:social-services", ("GetPerson",)),),
        windows=(Window(1_764_000_000_000_000_000, 1_764_003_600_000_000_000, "maintenance"),),
    )

    document = policy_input.to_json()

    assert document == documented_input()
    assert document["version"] == policy.INPUT_VERSION == 1
    assert list(document) == [
        "version",
        "exchange",
        "client_groups",
        "subject",
        "service",
        "rights",
        "windows",
        "time",
    ]


def test_defaults_give_empty_fields_and_no_consent() -> None:
    document = PolicyInput("c", "cs", "p", "s.v1.S", "M", MOMENT).to_json()

    assert document["exchange"]["purpose"] == ""
    assert document["client_groups"] == []
    assert document["subject"] == {"concerned": False, "consent": "none"}
    assert document["service"] == {
        "personal_data": False,
        "data_categories": [],
        "purposes": [],
        "consent_required": False,
        "legal_basis": "",
    }
    assert document["rights"] == []
    assert document["windows"] == []


def test_a_right_without_methods_is_an_empty_list() -> None:
    document = birth_support(rights=(Right("subsystem:DEMO/GOV/WELFARE/birthsupport"),)).to_json()

    assert document["rights"] == [
        {"holder": "subsystem:DEMO/GOV/WELFARE/birthsupport", "methods": []}
    ]


def test_client_groups_are_sorted() -> None:
    document = birth_support(client_groups=("welfare", "health", "social-services")).to_json()

    assert document["client_groups"] == ["health", "social-services", "welfare"]


def test_time_is_integer_nanoseconds_since_the_epoch() -> None:
    ns = birth_support(time=MOMENT.replace(microsecond=123_456)).to_json()["time"]["ns"]

    assert type(ns) is int
    assert ns == MOMENT_NS + 123_456_000


def test_time_in_another_zone_is_the_same_utc_instant() -> None:
    helsinki = dt.timezone(dt.timedelta(hours=2))
    local = dt.datetime(2025, 11, 24, 18, 0, tzinfo=helsinki)

    assert birth_support(time=local).to_json()["time"] == {"ns": MOMENT_NS}


def test_time_before_the_epoch_is_negative() -> None:
    moment = dt.datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=dt.UTC)

    assert birth_support(time=moment).to_json()["time"] == {"ns": -500_000_000}


def test_naive_time_is_refused() -> None:
    with pytest.raises(PolicyError, match="time: a time zone is required") as error:
        birth_support(time=dt.datetime(2025, 11, 24, 16, 0)).to_json()

    assert error.value.code == "policy_error"


def test_canonical_is_compact_json_with_sorted_keys() -> None:
    document = {"b": [1, {"z": True, "a": None}], "a": "ä"}

    assert policy.canonical(document) == b'{"a":"\\u00e4","b":[1,{"a":null,"z":true}]}'


def test_digest_is_the_sha256_of_the_canonical_input() -> None:
    expected = hashlib.sha256(policy.canonical(BIRTH_SUPPORT.to_json())).hexdigest()

    assert BIRTH_SUPPORT.digest() == expected
    assert re.fullmatch(r"[0-9a-f]{64}", expected)


def test_digest_is_stable_for_equal_inputs() -> None:
    # Equal inputs, built separately, with the groups given in another order.
    first = birth_support(client_groups=("social-services", "health"))
    second = birth_support(client_groups=("health", "social-services"))

    assert first is not second
    assert first.digest() == second.digest()
    assert first.digest() == first.digest()


@pytest.mark.parametrize(
    "changes",
    [
        {"method": "ListPeople"},
        {"purpose": ""},
        {"consent": "revoked"},
        {"subject_concerned": False},
        {"time": MOMENT + dt.timedelta(microseconds=1)},
        {"rights": ()},
        {"windows": (Window(0, 1),)},
        {"facts": ServiceFacts()},
    ],
    ids=lambda changes: next(iter(changes)),
)
def test_digest_differs_for_different_inputs(changes: dict[str, Any]) -> None:
    assert birth_support(**changes).digest() != BIRTH_SUPPORT.digest()


UNEXPECTED = {
    "non-string client": ({"client": 5}, "client: expected a string, got int"),
    "non-string client_server": ({"client_server": None}, "client_server: expected a string"),
    "bytes method": ({"method": b"GetPerson"}, "method: expected a string, got bytes"),
    "non-string purpose": ({"purpose": None}, "purpose: expected a string"),
    "bool for time": ({"time": True}, "time: expected a datetime, got bool"),
    "int for time": ({"time": MOMENT_NS}, "time: expected a datetime, got int"),
    "date for time": ({"time": dt.date(2025, 11, 24)}, "time: expected a datetime, got date"),
    "int for subject_concerned": ({"subject_concerned": 1}, "subject_concerned: expected a bool"),
    "unknown consent state": ({"consent": "granted"}, "consent: 'granted' is not one of"),
    "upper-case consent state": ({"consent": "ACTIVE"}, "consent: 'ACTIVE' is not one of"),
    "no consent state": ({"consent": None}, "consent: None is not one of"),
    "list of ints for client_groups": ({"client_groups": [1, 2]}, "client_groups: expected"),
    "a string for client_groups": ({"client_groups": "social-services"}, "client_groups:"),
    "facts not ServiceFacts": ({"facts": {"personal_data": True}}, "facts: expected ServiceFacts"),
    "facts.personal_data not bool": (
        {"facts": ServiceFacts(personal_data="yes")},  # type: ignore[arg-type]
        "personal_data and consent_required must be bools",
    ),
    "facts.personal_data an int": (
        {"facts": ServiceFacts(personal_data=1)},  # type: ignore[arg-type]
        "personal_data and consent_required must be bools",
    ),
    "facts.consent_required None": (
        {"facts": ServiceFacts(consent_required=None)},  # type: ignore[arg-type]
        "personal_data and consent_required must be bools",
    ),
    "facts.legal_basis None": (
        {"facts": ServiceFacts(legal_basis=None)},  # type: ignore[arg-type]
        "facts.legal_basis: expected a string",
    ),
    "facts.data_categories with an int": (
        {"facts": ServiceFacts(data_categories=("identity", 3))},  # type: ignore[arg-type]
        "facts.data_categories: expected a sequence of strings",
    ),
    "facts.purposes a string": (
        {"facts": ServiceFacts(purposes="birth-support")},  # type: ignore[arg-type]
        "facts.purposes: expected a sequence of strings",
    ),
    "rights not Right": ({"rights": ({"holder": "group:x"},)}, "rights: expected a sequence"),
    "rights a single Right": ({"rights": Right("group:x")}, "rights: expected a sequence"),
    "right holder not a string": ({"rights": (Right(5),)}, "rights: a holder must be a string"),  # type: ignore[arg-type]
    "right methods not strings": (
        {"rights": (Right("group:x", (1, 2)),)},  # type: ignore[arg-type]
        "rights.methods: expected a sequence of strings",
    ),
    "right methods a string": (
        {"rights": (Right("group:x", "GetPerson"),)},  # type: ignore[arg-type]
        "rights.methods: expected a sequence of strings",
    ),
    "windows not Window": ({"windows": ((0, 1),)}, "windows: expected a sequence of Window"),
    "window bound a float": (
        {"windows": (Window(1.5, 2),)},  # type: ignore[arg-type]
        "windows: from_ns and until_ns must be integers",
    ),
    "window bound a bool": (
        {"windows": (Window(True, 2),)},
        "windows: from_ns and until_ns must be integers",
    ),
    "window bound a string": (
        {"windows": (Window(0, "2"),)},  # type: ignore[arg-type]
        "windows: from_ns and until_ns must be integers",
    ),
    "window reason not a string": (
        {"windows": (Window(0, 2, None),)},  # type: ignore[arg-type]
        "windows",
    ),
    "window bound past 64 bits": (
        {"windows": (Window(0, 2**63),)},
        "windows: from_ns and until_ns must be integers from 0 to 2**63-1",
    ),
    "negative window bound": (
        {"windows": (Window(-1, 2),)},
        "windows: from_ns and until_ns must be integers from 0 to 2**63-1",
    ),
    "time past 64 bits of nanoseconds": (
        {"time": dt.datetime(2300, 1, 1, tzinfo=dt.UTC)},
        "time: must lie between the years 1677 and 2262",
    ),
    "NUL in the purpose": (
        {"purpose": "birth-support\x00marketing"},
        "purpose: control characters are not allowed",
    ),
    "newline in the method": ({"method": "Get\nPerson"}, "method: control characters"),
    "control character in a group": (
        {"client_groups": ("social\x07services",)},
        "client_groups: control characters",
    ),
    "control character in a holder": (
        {"rights": (Right("group:a\x00b"),)},
        "rights.holder: control characters",
    ),
    "control character in the legal basis": (
        {"facts": ServiceFacts(legal_basis="Act\x00")},
        "facts.legal_basis: control characters",
    ),
}


@pytest.mark.parametrize(("changes", "message"), UNEXPECTED.values(), ids=UNEXPECTED.keys())
def test_input_with_unexpected_types_is_refused(changes: dict[str, Any], message: str) -> None:
    policy_input = replace(BIRTH_SUPPORT, **changes)

    with pytest.raises(PolicyError) as error:
        policy_input.to_json()

    assert type(error.value) is PolicyError
    assert error.value.code == "policy_error"
    assert message in str(error.value)


def test_digest_of_an_input_with_unexpected_types_is_refused() -> None:
    with pytest.raises(PolicyError, match="consent"):
        birth_support(consent="granted").digest()


def test_every_documented_consent_state_is_taken() -> None:
    assert policy.CONSENT_STATES == ("active", "paused", "revoked", "expired", "none")
    for state in policy.CONSENT_STATES:
        assert birth_support(consent=state).to_json()["subject"]["consent"] == state


# -- the decision -----------------------------------------------------------------------------

NOT_DECISIONS = {
    "undefined": (None, "not a decision object: None"),
    "a string": ("yes", "not a decision object: 'yes'"),
    "a list": ([True], "not a decision object"),
    "a bool": (True, "not a decision object"),
    "allow missing": ({"reasons": ["no_access_right"]}, "allow is not a boolean: None"),
    "allow a string": ({"allow": "true"}, "allow is not a boolean: 'true'"),
    "allow an int": ({"allow": 1}, "allow is not a boolean: 1"),
    "reasons a string": (
        {"allow": False, "reasons": "no_access_right"},
        "reasons are not a list of codes",
    ),
    "reasons upper-case": (
        {"allow": False, "reasons": ["NO_ACCESS_RIGHT"]},
        "reasons are not a list of codes",
    ),
    "reasons with a space": (
        {"allow": False, "reasons": ["no access right"]},
        "reasons are not a list of codes",
    ),
    "reasons with an empty string": (
        {"allow": False, "reasons": ["no_access_right", ""]},
        "reasons are not a list of codes",
    ),
    "reasons with a number": ({"allow": False, "reasons": [5]}, "reasons are not a list of codes"),
    "reasons a set-like object": (
        {"allow": False, "reasons": {"no_access_right": True}},
        "reasons are not a list of codes",
    ),
    "obligations not codes": (
        {"allow": True, "reasons": [], "obligations": ["Log-Body"]},
        "obligations are not a list of codes",
    ),
    "obligations null": ({"allow": True, "obligations": None}, "obligations are not a list"),
    "deny without reason": (
        {"allow": False, "reasons": [], "obligations": []},
        "denied without a reason",
    ),
    "deny without reasons key": ({"allow": False}, "denied without a reason"),
}


@pytest.mark.parametrize(("result", "message"), NOT_DECISIONS.values(), ids=NOT_DECISIONS.keys())
def test_result_that_is_not_a_decision_is_refused(result: object, message: str) -> None:
    with pytest.raises(PolicyError) as error:
        policy.parse_decision(result, decision_id="d-1", revision="r-1")

    assert error.value.code == "policy_error"
    assert message in str(error.value)


def test_a_denial_is_a_decision() -> None:
    result = {
        "allow": False,
        "reasons": ["no_access_right", "purpose_not_allowed"],
        "obligations": [],
    }

    decision = policy.parse_decision(result, decision_id="d-1", revision="r-1")

    assert decision == Decision(
        allow=False,
        reasons=("no_access_right", "purpose_not_allowed"),
        obligations=(),
        decision_id="d-1",
        revision="r-1",
    )


def test_an_allowed_decision_without_lists_has_none() -> None:
    decision = policy.parse_decision({"allow": True}, decision_id="d-2", revision="r-2")

    assert decision == Decision(True, (), (), "d-2", "r-2")


def test_codes_may_hold_digits_and_underscores() -> None:
    result = {"allow": True, "reasons": [], "obligations": ["log_body", "notify_subject_2"]}

    decision = policy.parse_decision(result, decision_id="d", revision="r")

    assert decision.obligations == ("log_body", "notify_subject_2")
