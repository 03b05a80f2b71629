"""The policy input (version 1) and the decision: what a security server asks and is told.

The input is a JSON object (docs/policy.md)::

    {
      "version": 1,
      "exchange": {"client": "DEMO/GOV/WELFARE/birthsupport",
                   "client_server": "DEMO/GOV/WELFARE/ss1",
                   "provider": "DEMO/GOV/POPREG/civilregistry",
                   "service": "popreg.v1.CivilRegistry", "method": "GetPerson",
                   "purpose": "birth-support"},
      "client_groups": ["social-services"],
      "subject": {"concerned": true, "consent": "active"},
      "service": {"personal_data": true, "data_categories": ["identity"],
                  "purposes": ["birth-support"], "consent_required": false,
                  "legal_basis": "Population Act art. 5"},
      "rights": [{"holder": "group:social-services", "methods": ["GetPerson"]}],
      "windows": [{"from_ns": 1764000000000000000, "until_ns": 1764003600000000000,
                   "reason": "maintenance"}],
      "time": {"ns": 1764001234000000000}
    }

``rights`` and ``windows`` hold only the entries that apply to this client and service (they are
looked up in Python: the engine's work stays the same however many rights exist). The decision
is ``{"allow": bool, "reasons": [code...], "obligations": [code...]}``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from policy._errors import PolicyError

INPUT_VERSION = 1
# The consent states the input knows (consent/ keeps the records): "none" when the subject has
# none for this service and purpose.
CONSENT_STATES = ("active", "paused", "revoked", "expired", "none")
# The characters of a reason or obligation code.
CODE_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True, slots=True)
class Right:
    """An access right that applies to the exchange: who holds it (``subsystem:ID``,
    ``group:CODE`` for a global group, ``local:CODE`` for a provider's own group) and for which
    methods (none: every method of the service)."""

    holder: str
    methods: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The right as an element of ``input.rights``."""
        return {"holder": self.holder, "methods": list(self.methods)}


@dataclass(frozen=True, slots=True)
class Window:
    """A time window in which the service is closed (maintenance), nanoseconds since the epoch,
    ``until_ns`` excluded."""

    from_ns: int
    until_ns: int
    reason: str = "maintenance"

    def to_json(self) -> dict[str, Any]:
        """The window as an element of ``input.windows``."""
        return {"from_ns": self.from_ns, "until_ns": self.until_ns, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ServiceFacts:
    """What the registry says of the service (registry.Service)."""

    personal_data: bool = False
    data_categories: tuple[str, ...] = ()
    purposes: tuple[str, ...] = ()
    consent_required: bool = False
    legal_basis: str = ""

    def to_json(self) -> dict[str, Any]:
        """The facts as ``input.service``."""
        return {
            "personal_data": self.personal_data,
            "data_categories": list(self.data_categories),
            "purposes": list(self.purposes),
            "consent_required": self.consent_required,
            "legal_basis": self.legal_basis,
        }


@dataclass(frozen=True, slots=True)
class PolicyInput:
    """Everything a policy may decide by, for one exchange (see the module docstring)."""

    client: str
    client_server: str
    provider: str
    service: str
    method: str
    time: dt.datetime
    purpose: str = ""
    client_groups: tuple[str, ...] = ()
    subject_concerned: bool = False
    consent: str = "none"
    facts: ServiceFacts = field(default_factory=ServiceFacts)
    rights: tuple[Right, ...] = ()
    windows: tuple[Window, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The input document (version :data:`INPUT_VERSION`).

        Raises:
            PolicyError: a field of the wrong type or an unknown consent state.
        """
        _check(self)
        return {
            "version": INPUT_VERSION,
            "exchange": {
                "client": self.client,
                "client_server": self.client_server,
                "provider": self.provider,
                "service": self.service,
                "method": self.method,
                "purpose": self.purpose,
            },
            "client_groups": sorted(self.client_groups),
            "subject": {"concerned": self.subject_concerned, "consent": self.consent},
            "service": self.facts.to_json(),
            "rights": [right.to_json() for right in self.rights],
            "windows": [window.to_json() for window in self.windows],
            "time": {"ns": nanoseconds(self.time)},
        }

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical input document: the decision log's reference."""
        return hashlib.sha256(canonical(self.to_json())).hexdigest()


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy's answer, with the decision's id and the policy revision that gave it."""

    allow: bool
    reasons: tuple[str, ...]
    obligations: tuple[str, ...]
    decision_id: str
    revision: str


def canonical(document: Any) -> bytes:
    """``document`` as compact JSON with sorted keys (the same input gives the same bytes)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def nanoseconds(moment: dt.datetime) -> int:
    """``moment`` in nanoseconds since the epoch (PolicyError: no time zone)."""
    if moment.tzinfo is None:
        raise PolicyError("time: a time zone is required")
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _strings(name: str, values: object) -> None:
    if not isinstance(values, (tuple, list)) or not all(isinstance(v, str) for v in values):
        raise PolicyError(f"{name}: expected a sequence of strings, got {values!r}")
    for value in values:
        _plain(name, value)


# Engines differ past 64-bit integers and at NUL (rego-cpp wraps the one and cuts the other):
# such values never reach one.
_INT_LIMIT = 2**63


def _plain(name: str, value: str) -> None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise PolicyError(f"{name}: control characters are not allowed")


def _check(policy_input: PolicyInput) -> None:
    for name in ("client", "client_server", "provider", "service", "method", "purpose"):
        value = getattr(policy_input, name)
        if not isinstance(value, str):
            raise PolicyError(f"{name}: expected a string, got {type(value).__name__}")
        _plain(name, value)
    if not isinstance(policy_input.time, dt.datetime):
        raise PolicyError(f"time: expected a datetime, got {type(policy_input.time).__name__}")
    if not -_INT_LIMIT <= nanoseconds(policy_input.time) < _INT_LIMIT:
        raise PolicyError("time: must lie between the years 1677 and 2262")
    if not isinstance(policy_input.subject_concerned, bool):
        raise PolicyError("subject_concerned: expected a bool")
    if policy_input.consent not in CONSENT_STATES:
        raise PolicyError(
            f"consent: {policy_input.consent!r} is not one of {', '.join(CONSENT_STATES)}"
        )
    _strings("client_groups", policy_input.client_groups)
    facts = policy_input.facts
    if not isinstance(facts, ServiceFacts):
        raise PolicyError("facts: expected ServiceFacts")
    if not isinstance(facts.personal_data, bool) or not isinstance(facts.consent_required, bool):
        raise PolicyError("facts: personal_data and consent_required must be bools")
    if not isinstance(facts.legal_basis, str):
        raise PolicyError("facts.legal_basis: expected a string")
    _plain("facts.legal_basis", facts.legal_basis)
    _strings("facts.data_categories", facts.data_categories)
    _strings("facts.purposes", facts.purposes)
    for right in _sequence("rights", policy_input.rights, Right):
        if not isinstance(right.holder, str):
            raise PolicyError("rights: a holder must be a string")
        _plain("rights.holder", right.holder)
        _strings("rights.methods", right.methods)
    for window in _sequence("windows", policy_input.windows, Window):
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < _INT_LIMIT
            for v in (window.from_ns, window.until_ns)
        ):
            raise PolicyError("windows: from_ns and until_ns must be integers from 0 to 2**63-1")
        if not isinstance(window.reason, str):
            raise PolicyError("windows: a reason must be a string")
        _plain("windows.reason", window.reason)


def _sequence(name: str, values: object, kind: type[Any]) -> Sequence[Any]:
    if not isinstance(values, (tuple, list)) or not all(isinstance(v, kind) for v in values):
        raise PolicyError(f"{name}: expected a sequence of {kind.__name__}")
    return values


def parse_decision(result: object, *, decision_id: str, revision: str) -> Decision:
    """The engine's result as a :class:`Decision`.

    Raises:
        PolicyError: the result is undefined or not a decision object.
    """
    if not isinstance(result, dict):
        raise PolicyError(f"the policy's result is not a decision object: {result!r:.200}")
    allow = result.get("allow")
    reasons = result.get("reasons", [])
    obligations = result.get("obligations", [])
    if not isinstance(allow, bool):
        raise PolicyError(f"the decision's allow is not a boolean: {allow!r:.100}")
    for name, codes in (("reasons", reasons), ("obligations", obligations)):
        if not isinstance(codes, list) or not all(
            isinstance(c, str) and c and set(c) <= CODE_CHARACTERS for c in codes
        ):
            raise PolicyError(f"the decision's {name} are not a list of codes: {codes!r:.200}")
    if not allow and not reasons:
        # A denial always says why; a policy that forgets to is treated as broken.
        raise PolicyError("the policy denied without a reason")
    return Decision(allow, tuple(reasons), tuple(obligations), decision_id, revision)
