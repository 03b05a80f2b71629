"""A citizen's consent: an immutable detail and a history of status changes.

The detail says who (the ``subject``, a citizen) lets whom (the ``consumer`` subsystem) obtain
what (``services`` of the ``provider``, or every service of the provider handling some
``data_categories``) for which ``purpose``, from when until when. It never changes: a changed
detail is a new consent. The history records each status (ACTIVE, PAUSED, REVOKED, EXPIRED)
with its time and actor; a consent is EXPIRED from ``valid_until`` on whether or not that was
recorded, and REVOKED for good once revoked.

:func:`next_status` is the one place that says which changes are allowed.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from consent._errors import (
    AccessInvalid,
    AlreadyRevoked,
    ConsentExpired,
    ConsentInvalid,
    PurposeNotServed,
    ServiceUnknown,
    TransitionRefused,
    ValidityInvalid,
)
from proto import (
    IdentifierError,
    MemberId,
    MethodPath,
    SecurityServerId,
    ServiceId,
    SubsystemId,
    parse_purpose,
    parse_subject,
)
from registry import GlobalConfiguration, Service

MAX_PURPOSE_TEXT = 500
MAX_SERVICES = 100
MAX_ACTOR = 200
# Access events one ReportAccess may carry, and one ListAccess answers with.
MAX_ACCESS_EVENTS = 1000
# Sequence numbers and checkpoint sizes are stored as signed 64-bit integers.
MAX_SEQ = 2**63 - 1
_PSEUDONYM = re.compile(r"[0-9a-f]{1,64}")
_MESSAGE_ID = re.compile(r"[0-9a-f]{32}")
_ROOT = re.compile(r"[0-9a-f]{64}")
_CODE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
MAX_CODE = 64


class ConsentStatus(enum.Enum):
    """A consent's status; the value is what policies see as ``subject.consent``."""

    ACTIVE = "active"
    PAUSED = "paused"
    REVOKED = "revoked"
    EXPIRED = "expired"


class Change(enum.Enum):
    """What a caller asks of an existing consent."""

    PAUSE = "pause"
    RESUME = "resume"
    REVOKE = "revoke"


Provider = MemberId | SubsystemId


def parse_provider(text: object) -> Provider:
    """A data provider: a member (all its subsystems) or one subsystem.

    Raises:
        ConsentInvalid: neither.
    """
    if not isinstance(text, str):
        raise ConsentInvalid(f"provider: expected a string, got {type(text).__name__}")
    try:
        return SubsystemId.parse(text) if text.count("/") == 3 else MemberId.parse(text)
    except IdentifierError as error:
        raise ConsentInvalid(f"provider: {error}") from None


def _plain_text(name: str, text: object, limit: int) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ConsentInvalid(f"{name}: required")
    if len(text) > limit:
        raise ConsentInvalid(f"{name}: at most {limit} characters")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text):
        raise ConsentInvalid(f"{name}: control characters are not allowed")
    return text


@dataclass(frozen=True, slots=True)
class ConsentDetail:
    """The immutable part of a consent (see the module docstring)."""

    subject: str
    provider: Provider
    consumer: SubsystemId
    purpose: str
    purpose_text: str
    valid_from: dt.datetime
    valid_until: dt.datetime
    services: tuple[ServiceId, ...] = ()
    data_categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        try:
            parse_subject(self.subject)
            parse_purpose(self.purpose)
        except IdentifierError as error:
            raise ConsentInvalid(str(error)) from None
        _plain_text("purpose_text", self.purpose_text, MAX_PURPOSE_TEXT)
        if self.valid_from.tzinfo is None or self.valid_until.tzinfo is None:
            raise ValidityInvalid("valid_from and valid_until need a time zone")
        if self.valid_until <= self.valid_from:
            raise ValidityInvalid("valid_until must come after valid_from")
        if not self.services and not self.data_categories:
            raise ConsentInvalid("a consent names services or data categories")
        if len(self.services) > MAX_SERVICES or len(self.data_categories) > MAX_SERVICES:
            raise ConsentInvalid(f"at most {MAX_SERVICES} services and categories")
        for service in self.services:
            if not self.provided_by_provider(service.provider):
                raise ConsentInvalid(f"services: {service} is not provided by {self.provider}")
        for category in self.data_categories:
            try:
                parse_purpose(category)  # the same token grammar
            except IdentifierError:
                raise ConsentInvalid(f"data_categories: {category!r} is not a code") from None
        object.__setattr__(self, "services", tuple(sorted(set(self.services), key=str)))
        object.__setattr__(self, "data_categories", tuple(sorted(set(self.data_categories))))

    def provided_by_provider(self, subsystem: SubsystemId) -> bool:
        """Whether ``subsystem`` is (of) the consent's provider."""
        provider = self.provider
        return (
            subsystem == provider
            if isinstance(provider, SubsystemId)
            else (subsystem.member == provider)
        )

    @property
    def provider_member(self) -> MemberId:
        """The member whose data the consent is about."""
        provider = self.provider
        return provider.member if isinstance(provider, SubsystemId) else provider

    def covers(self, service: Service) -> bool:
        """Whether the consent is about ``service`` (named, or handling one of its categories)."""
        if not self.provided_by_provider(service.id.provider):
            return False
        return service.id in self.services or not set(self.data_categories).isdisjoint(
            service.data_categories
        )

    def check_against(self, configuration: GlobalConfiguration) -> None:
        """The services exist and serve the purpose.

        Raises:
            ServiceUnknown: a named service is not registered, or no registered service of the
                provider handles the data categories.
            PurposeNotServed: a covered service names its purposes and this one is not among
                them.
        """
        covered: list[Service] = []
        for named in self.services:
            service = configuration.services.get(named)
            if service is None:
                raise ServiceUnknown(f"services: {named} is not a registered service")
            covered.append(service)
        if self.data_categories:
            by_category = [
                service
                for service in configuration.services.values()
                if self.provided_by_provider(service.id.provider)
                and not set(self.data_categories).isdisjoint(service.data_categories)
            ]
            if not by_category:
                raise ServiceUnknown(
                    f"data_categories: no registered service of {self.provider} handles"
                    f" {', '.join(self.data_categories)}"
                )
            covered += by_category
        for service in covered:
            if service.purposes and self.purpose not in service.purposes:
                raise PurposeNotServed(
                    f"purpose: {service.id} does not serve {self.purpose!r}"
                    f" (it serves {', '.join(service.purposes)})"
                )

    def to_json(self) -> dict[str, Any]:
        """The detail as JSON (receipts sign it)."""
        return {
            "subject": self.subject,
            "provider": str(self.provider),
            "consumer": str(self.consumer),
            "services": [str(s) for s in self.services],
            "data_categories": list(self.data_categories),
            "purpose": self.purpose,
            "purpose_text": self.purpose_text,
            "valid_from": _time(self.valid_from),
            "valid_until": _time(self.valid_until),
        }

    @staticmethod
    def from_json(document: object) -> ConsentDetail:
        """The detail :meth:`to_json` wrote (ConsentInvalid: not one)."""
        if not isinstance(document, dict):
            raise ConsentInvalid("a consent detail is an object")
        try:
            services = document.get("services", [])
            categories = document.get("data_categories", [])
            if not isinstance(services, list) or not isinstance(categories, list):
                raise ConsentInvalid("services and data_categories are lists")
            return ConsentDetail(
                subject=document["subject"],
                provider=parse_provider(document["provider"]),
                consumer=SubsystemId.parse(document["consumer"]),
                purpose=document["purpose"],
                purpose_text=document["purpose_text"],
                valid_from=_parse_time("valid_from", document["valid_from"]),
                valid_until=_parse_time("valid_until", document["valid_until"]),
                services=tuple(ServiceId.parse(s) for s in services),
                data_categories=tuple(categories),
            )
        except KeyError as missing:
            raise ConsentInvalid(f"{missing.args[0]}: required") from None
        except (IdentifierError, TypeError) as error:
            raise ConsentInvalid(str(error)) from None


def _time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _parse_time(name: str, text: object) -> dt.datetime:
    if not isinstance(text, str):
        raise ConsentInvalid(f"{name}: expected an ISO 8601 time")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConsentInvalid(f"{name}: not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise ValidityInvalid(f"{name}: a time zone is required")
    return moment


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One entry of a consent's history."""

    status: ConsentStatus
    at: dt.datetime
    actor: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Consent:
    """A consent: its id, detail and history (oldest first), and the position of its latest
    change in the consent service's change stream."""

    id: str
    detail: ConsentDetail
    history: tuple[StatusChange, ...]
    position: int = 0

    @property
    def recorded(self) -> ConsentStatus:
        """The latest recorded status."""
        return self.history[-1].status

    def status_at(self, now: dt.datetime) -> ConsentStatus:
        """The status at ``now``: the recorded one, or EXPIRED past ``valid_until`` (a revoked
        consent stays REVOKED)."""
        recorded = self.recorded
        if recorded is not ConsentStatus.REVOKED and now >= self.detail.valid_until:
            return ConsentStatus.EXPIRED
        return recorded

    def state_at(self, now: dt.datetime) -> str:
        """What policies see (``subject.consent``): the status, or ``none`` before
        ``valid_from``."""
        if now < self.detail.valid_from:
            return "none"
        return self.status_at(now).value


def next_status(consent: Consent, change: Change, now: dt.datetime) -> ConsentStatus:
    """The status ``change`` leads to.

    Raises:
        AlreadyRevoked: the consent is revoked.
        ConsentExpired: the consent has expired.
        TransitionRefused: pausing a paused consent or resuming an active one.
    """
    current = consent.status_at(now)
    if current is ConsentStatus.REVOKED:
        raise AlreadyRevoked(f"consent {consent.id} is revoked; it cannot change again")
    if current is ConsentStatus.EXPIRED:
        raise ConsentExpired(f"consent {consent.id} has expired; it cannot change again")
    if change is Change.REVOKE:
        return ConsentStatus.REVOKED
    if change is Change.PAUSE:
        if current is ConsentStatus.PAUSED:
            raise TransitionRefused(f"consent {consent.id} is paused already")
        return ConsentStatus.PAUSED
    if current is ConsentStatus.ACTIVE:
        raise TransitionRefused(f"consent {consent.id} is active already")
    return ConsentStatus.ACTIVE


def check_actor(actor: str) -> str:
    """An actor's name as the history keeps it (ConsentInvalid: empty, long, control chars)."""
    return _plain_text("actor", actor, MAX_ACTOR)


def check_reason(reason: str) -> str:
    """A reason for a change as the history keeps it (ConsentInvalid: long, control chars)."""
    return _plain_text("reason", reason, MAX_PURPOSE_TEXT)


# Which consent decides when several match: the most permissive state wins (an active consent
# beside a revoked older one allows; a paused one beside a revoked one is reported as paused).
_RANK = {"active": 4, "paused": 3, "expired": 2, "revoked": 1, "none": 0}


def consent_state(
    consents: Iterable[Consent],
    consumer: SubsystemId,
    service: Service,
    purpose: str,
    now: dt.datetime,
) -> tuple[str, str]:
    """The state policies see for an exchange of ``consumer`` with ``service`` for ``purpose``
    (``active``, ``paused``, ``revoked``, ``expired`` or ``none``) and the id of the consent
    that gives it ("" for none), among a subject's ``consents``."""
    best, chosen = "none", ""
    for consent in consents:
        detail = consent.detail
        if detail.consumer != consumer or detail.purpose != purpose or not detail.covers(service):
            continue
        state = consent.state_at(now)
        if _RANK[state] > _RANK[best]:
            best, chosen = state, consent.id
    return best, chosen


@dataclass(frozen=True, slots=True)
class AccessEvent:
    """One exchange about a citizen as a provider's security server recorded it in its audit
    log: an entry of the citizen's access history (``pintu.v1.AccessEvent``).

    ``log`` (the reporting security server) and ``seq`` (the record's number in its log) are
    the event's key. ``subject`` is the citizen's keyed pseudonym (lowercase hex), never the
    identifier. An allowed exchange names everything; a refused one has its ``code`` and may
    leave ``consumer``, ``consumer_server``, ``provider``, ``method`` and ``purpose`` empty
    (not known when it was refused). ``checkpoint_size`` and ``checkpoint_root`` (hex) name a
    signed checkpoint of the log that covers the record (0 and "" for none).

    Raises:
        AccessInvalid: a field is malformed (the message names it).
    """

    log: str
    seq: int
    subject: str
    consumer: str
    consumer_server: str
    provider: str
    method: str
    purpose: str
    at: dt.datetime
    allowed: bool
    code: str
    message_id: str
    checkpoint_size: int = 0
    checkpoint_root: str = ""

    def __post_init__(self) -> None:
        try:
            SecurityServerId.parse(self.log)
        except IdentifierError as error:
            raise AccessInvalid(f"log: {error}") from None
        for name in ("seq", "checkpoint_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEQ:
                raise AccessInvalid(f"{name}: a whole number from 0 to {MAX_SEQ}")
        if not isinstance(self.subject, str) or not _PSEUDONYM.fullmatch(self.subject):
            raise AccessInvalid("subject: the citizen's pseudonym, 1 to 64 lowercase hex digits")
        if not isinstance(self.message_id, str) or not _MESSAGE_ID.fullmatch(self.message_id):
            raise AccessInvalid("message_id: 32 lowercase hex digits")
        if not isinstance(self.at, dt.datetime) or self.at.tzinfo is None:
            raise AccessInvalid("at: a time with a time zone is required")
        if not isinstance(self.allowed, bool):
            raise AccessInvalid("allowed: true or false")
        if self.allowed and self.code:
            raise AccessInvalid("code: an allowed exchange has no refusal code")
        if not self.allowed and (
            not isinstance(self.code, str)
            or len(self.code) > MAX_CODE
            or not _CODE.fullmatch(self.code)
        ):
            raise AccessInvalid("code: a refused exchange names its code (snake_case)")
        # What an allowed exchange always knows; a refused one may not have got that far.
        parsers: tuple[tuple[str, Any], ...] = (
            ("consumer", SubsystemId.parse),
            ("consumer_server", SecurityServerId.parse),
            ("provider", SubsystemId.parse),
            ("method", MethodPath.parse),
            ("purpose", parse_purpose),
        )
        for name, parse in parsers:
            value = getattr(self, name)
            if value == "" and not self.allowed:
                continue
            try:
                parse(value)
            except IdentifierError as error:
                raise AccessInvalid(f"{name}: {error}") from None
        if self.checkpoint_size == 0:
            if self.checkpoint_root != "":
                raise AccessInvalid("checkpoint_root: empty without a checkpoint_size")
        else:
            if self.checkpoint_size <= self.seq:
                raise AccessInvalid("checkpoint_size: the checkpoint does not cover the record")
            if not isinstance(self.checkpoint_root, str) or not _ROOT.fullmatch(
                self.checkpoint_root
            ):
                raise AccessInvalid("checkpoint_root: 64 lowercase hex digits (SHA-256)")
