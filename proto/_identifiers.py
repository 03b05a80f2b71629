"""Identifiers of members, subsystems, security servers and services, and their one strict parser.

Canonical text forms (parts joined by ``/``):

===================  =======================================================
member               ``INSTANCE/CLASS/MEMBER``
subsystem            ``INSTANCE/CLASS/MEMBER/SUBSYSTEM``
security server      ``INSTANCE/CLASS/MEMBER/SERVER`` (owner member + server code)
service              ``INSTANCE/CLASS/MEMBER/SUBSYSTEM/package.Service``
===================  =======================================================

The safe set for a part: 1 to 64 ASCII letters, digits, ``.``, ``_`` and ``-``, starting and ending
with a letter or digit. That rules out empty parts, ``.`` and ``..``, hidden-file and
option-like names (``.x``, ``-x``), separators (``/``, ``\\``), percent-encoding, whitespace,
control characters and every non-ASCII (look-alike) character. Identifiers are case-sensitive;
the canonical form is the only accepted spelling (no trimming, no case folding, no trailing
separator).

A gRPC service name is ``package.Service``: two or more dot-separated names of ASCII letters,
digits and ``_`` not starting with a digit, at most 200 characters in all. A method name is one
such name of at most 100 characters; a method path is ``/package.Service/Method``.

In certificates identities are URI SANs: ``urn:pintu:member:<member>``,
``urn:pintu:subsystem:<subsystem>`` and ``urn:pintu:server:<security server>``.

Every malformed input raises :class:`IdentifierError`, whose ``reason`` is one of the stable values
in :class:`IdentifierProblem`.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from proto.pintu.v1 import identifiers_pb2

MAX_PART_LENGTH: Final = 64
MAX_SERVICE_NAME_LENGTH: Final = 200
MAX_METHOD_NAME_LENGTH: Final = 100

_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_PART_CHARS = re.compile(r"[A-Za-z0-9._-]*")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URI_PREFIX: Final = "urn:pintu:"

_MEMBER_PARTS: Final = ("instance", "member class", "member code")


class IdentifierProblem(enum.StrEnum):
    """Why an identifier was refused; values are stable and appear in error messages."""

    NOT_TEXT = "not_text"
    EMPTY = "empty"
    PART_COUNT = "part_count"
    UNSAFE_CHARACTER = "unsafe_character"
    BAD_EDGE = "bad_edge"
    TOO_LONG = "too_long"
    BAD_SERVICE_NAME = "bad_service_name"
    BAD_METHOD = "bad_method"
    BAD_URI = "bad_uri"


class IdentifierError(ValueError):
    """An identifier that does not follow the grammar; ``reason`` says which rule it broke."""

    code: Final = "identifier_malformed"

    def __init__(self, kind: str, text: object, reason: IdentifierProblem, explanation: str):
        shown = text if isinstance(text, str) else type(text).__name__
        super().__init__(f"{kind} {_quote(shown)}: {explanation}")
        self.kind = kind
        self.reason = reason


def _quote(text: str) -> str:
    """Quote untrusted text for an error message: printable ASCII only, bounded length."""
    shown = text.encode("ascii", "backslashreplace").decode("ascii")
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in shown)
    return '"' + (shown if len(shown) <= 120 else shown[:117] + "...") + '"'


def _check_part(kind: str, text: str, label: str, part: str) -> None:
    if not part:
        raise IdentifierError(kind, text, IdentifierProblem.EMPTY, f"{label} is empty")
    if len(part) > MAX_PART_LENGTH:
        raise IdentifierError(
            kind,
            text,
            IdentifierProblem.TOO_LONG,
            f"{label} is {len(part)} characters long; at most {MAX_PART_LENGTH} are allowed",
        )
    if _PART.fullmatch(part):
        return
    if not _PART_CHARS.fullmatch(part):
        bad = next(c for c in part if not _PART_CHARS.fullmatch(c))
        raise IdentifierError(
            kind,
            text,
            IdentifierProblem.UNSAFE_CHARACTER,
            f"{label} contains {_quote(bad)} (U+{ord(bad):04X}); "
            "allowed are ASCII letters, digits, '.', '_' and '-'",
        )
    raise IdentifierError(
        kind,
        text,
        IdentifierProblem.BAD_EDGE,
        f"{label} must start and end with a letter or digit",
    )


def _text(kind: str, text: object) -> str:
    if not isinstance(text, str):
        raise IdentifierError(kind, text, IdentifierProblem.NOT_TEXT, "not a string")
    return text


def _split(kind: str, text: str, labels: tuple[str, ...]) -> list[str]:
    if not text:
        raise IdentifierError(kind, text, IdentifierProblem.EMPTY, "is empty")
    limit = len(labels) * (MAX_PART_LENGTH + 1) + MAX_SERVICE_NAME_LENGTH
    if len(text) > limit:
        raise IdentifierError(
            kind, text, IdentifierProblem.TOO_LONG, f"is longer than {limit} characters"
        )
    parts = text.split("/")
    if len(parts) != len(labels):
        raise IdentifierError(
            kind,
            text,
            IdentifierProblem.PART_COUNT,
            f"has {len(parts)} part(s) separated by '/'; expected {len(labels)} "
            f"({'/'.join(label.upper().replace(' ', '_') for label in labels)})",
        )
    return parts


def _check_service_name(kind: str, text: str, name: str) -> None:
    if not name:
        raise IdentifierError(kind, text, IdentifierProblem.EMPTY, "service name is empty")
    if len(name) > MAX_SERVICE_NAME_LENGTH:
        raise IdentifierError(
            kind,
            text,
            IdentifierProblem.TOO_LONG,
            f"service name is longer than {MAX_SERVICE_NAME_LENGTH} characters",
        )
    names = name.split(".")
    if len(names) < 2 or not all(_NAME.fullmatch(n) for n in names):
        raise IdentifierError(
            kind,
            text,
            IdentifierProblem.BAD_SERVICE_NAME,
            "service name must be a gRPC 'package.Service' name (dot-separated names of ASCII "
            "letters, digits and '_', none starting with a digit)",
        )


@dataclass(frozen=True, slots=True)
class MemberId:
    """A member of the federation (an agency): ``INSTANCE/CLASS/MEMBER``."""

    instance: str
    member_class: str
    member_code: str

    def __post_init__(self) -> None:
        text = f"{self.instance}/{self.member_class}/{self.member_code}"
        for label, part in zip(_MEMBER_PARTS, self._parts(), strict=True):
            _check_part("member", text, label, part)

    def _parts(self) -> tuple[str, str, str]:
        return (self.instance, self.member_class, self.member_code)

    @staticmethod
    def parse(text: object) -> MemberId:
        """Parse the canonical form; raise :class:`IdentifierError` on anything else."""
        return _parse_member(_text("member", text))

    def __str__(self) -> str:
        return f"{self.instance}/{self.member_class}/{self.member_code}"

    def subsystem(self, code: str) -> SubsystemId:
        """The subsystem ``code`` of this member."""
        return SubsystemId(self, code)

    def server(self, code: str) -> SecurityServerId:
        """The security server ``code`` owned by this member."""
        return SecurityServerId(self, code)

    @property
    def uri(self) -> str:
        """The certificate URI SAN naming this member."""
        return f"{_URI_PREFIX}member:{self}"

    def to_proto(self) -> identifiers_pb2.MemberId:
        """The ``pintu.v1.MemberId`` message."""
        return identifiers_pb2.MemberId(
            instance=self.instance, member_class=self.member_class, member_code=self.member_code
        )

    @staticmethod
    def from_proto(message: identifiers_pb2.MemberId) -> MemberId:
        """Validate and convert a ``pintu.v1.MemberId`` message."""
        return MemberId(message.instance, message.member_class, message.member_code)


@dataclass(frozen=True, slots=True)
class SubsystemId:
    """An information system of a member: ``INSTANCE/CLASS/MEMBER/SUBSYSTEM``."""

    member: MemberId
    subsystem_code: str

    def __post_init__(self) -> None:
        _check_part(
            "subsystem",
            f"{self.member}/{self.subsystem_code}",
            "subsystem code",
            self.subsystem_code,
        )

    @staticmethod
    def parse(text: object) -> SubsystemId:
        """Parse the canonical form; raise :class:`IdentifierError` on anything else."""
        return _parse_subsystem(_text("subsystem", text))

    def __str__(self) -> str:
        return f"{self.member}/{self.subsystem_code}"

    def service(self, name: str) -> ServiceId:
        """The gRPC service ``name`` offered by this subsystem."""
        return ServiceId(self, name)

    @property
    def uri(self) -> str:
        """The certificate URI SAN naming this subsystem (agency client certificates)."""
        return f"{_URI_PREFIX}subsystem:{self}"

    def to_proto(self) -> identifiers_pb2.SubsystemId:
        """The ``pintu.v1.SubsystemId`` message."""
        return identifiers_pb2.SubsystemId(
            member=self.member.to_proto(), subsystem_code=self.subsystem_code
        )

    @staticmethod
    def from_proto(message: identifiers_pb2.SubsystemId) -> SubsystemId:
        """Validate and convert a ``pintu.v1.SubsystemId`` message."""
        return SubsystemId(MemberId.from_proto(message.member), message.subsystem_code)


@dataclass(frozen=True, slots=True)
class SecurityServerId:
    """A security server (gateway): ``INSTANCE/CLASS/MEMBER/SERVER``, owner member + server code."""

    owner: MemberId
    server_code: str

    def __post_init__(self) -> None:
        _check_part(
            "security server", f"{self.owner}/{self.server_code}", "server code", self.server_code
        )

    @staticmethod
    def parse(text: object) -> SecurityServerId:
        """Parse the canonical form; raise :class:`IdentifierError` on anything else."""
        return _parse_server(_text("security server", text))

    def __str__(self) -> str:
        return f"{self.owner}/{self.server_code}"

    @property
    def uri(self) -> str:
        """The certificate URI SAN naming this security server."""
        return f"{_URI_PREFIX}server:{self}"

    def to_proto(self) -> identifiers_pb2.SecurityServerId:
        """The ``pintu.v1.SecurityServerId`` message."""
        return identifiers_pb2.SecurityServerId(
            owner=self.owner.to_proto(), server_code=self.server_code
        )

    @staticmethod
    def from_proto(message: identifiers_pb2.SecurityServerId) -> SecurityServerId:
        """Validate and convert a ``pintu.v1.SecurityServerId`` message."""
        return SecurityServerId(MemberId.from_proto(message.owner), message.server_code)


@dataclass(frozen=True, slots=True)
class ServiceId:
    """A gRPC service of a subsystem: ``INSTANCE/CLASS/MEMBER/SUBSYSTEM/package.Service``."""

    provider: SubsystemId
    service_name: str

    def __post_init__(self) -> None:
        _check_service_name("service", f"{self.provider}/{self.service_name}", self.service_name)

    @staticmethod
    def parse(text: object) -> ServiceId:
        """Parse the canonical form; raise :class:`IdentifierError` on anything else."""
        return _parse_service(_text("service", text))

    def __str__(self) -> str:
        return f"{self.provider}/{self.service_name}"

    def to_proto(self) -> identifiers_pb2.ServiceId:
        """The ``pintu.v1.ServiceId`` message."""
        return identifiers_pb2.ServiceId(
            provider=self.provider.to_proto(), service_name=self.service_name
        )

    @staticmethod
    def from_proto(message: identifiers_pb2.ServiceId) -> ServiceId:
        """Validate and convert a ``pintu.v1.ServiceId`` message."""
        return ServiceId(SubsystemId.from_proto(message.provider), message.service_name)


@dataclass(frozen=True, slots=True)
class MethodPath:
    """A gRPC method path ``/package.Service/Method``, split into service and method names."""

    service_name: str
    method_name: str

    def __post_init__(self) -> None:
        text = f"/{self.service_name}/{self.method_name}"
        _check_service_name("method path", text, self.service_name)
        _check_method_name(text, self.method_name)

    @staticmethod
    def parse(text: object) -> MethodPath:
        """Parse ``/package.Service/Method``; raise :class:`IdentifierError` otherwise."""
        return _parse_method(_text("method path", text))

    def __str__(self) -> str:
        return f"/{self.service_name}/{self.method_name}"


def _member_from(kind: str, text: str, parts: list[str]) -> MemberId:
    for label, part in zip(_MEMBER_PARTS, parts, strict=False):
        _check_part(kind, text, label, part)
    return MemberId(parts[0], parts[1], parts[2])


@lru_cache(maxsize=4096)
def _parse_member(text: str) -> MemberId:
    parts = _split("member", text, _MEMBER_PARTS)
    return _member_from("member", text, parts)


@lru_cache(maxsize=4096)
def _parse_subsystem(text: str) -> SubsystemId:
    parts = _split("subsystem", text, (*_MEMBER_PARTS, "subsystem code"))
    member = _member_from("subsystem", text, parts)
    _check_part("subsystem", text, "subsystem code", parts[3])
    return SubsystemId(member, parts[3])


@lru_cache(maxsize=1024)
def _parse_server(text: str) -> SecurityServerId:
    parts = _split("security server", text, (*_MEMBER_PARTS, "server code"))
    member = _member_from("security server", text, parts)
    _check_part("security server", text, "server code", parts[3])
    return SecurityServerId(member, parts[3])


@lru_cache(maxsize=4096)
def _parse_service(text: str) -> ServiceId:
    parts = _split("service", text, (*_MEMBER_PARTS, "subsystem code", "service name"))
    member = _member_from("service", text, parts)
    _check_part("service", text, "subsystem code", parts[3])
    _check_service_name("service", text, parts[4])
    return ServiceId(SubsystemId(member, parts[3]), parts[4])


@lru_cache(maxsize=4096)
def _parse_method(text: str) -> MethodPath:
    kind = "method path"
    limit = MAX_SERVICE_NAME_LENGTH + MAX_METHOD_NAME_LENGTH + 2
    if not text:
        raise IdentifierError(kind, text, IdentifierProblem.EMPTY, "is empty")
    if len(text) > limit:
        raise IdentifierError(kind, text, IdentifierProblem.TOO_LONG, f"is longer than {limit}")
    pieces = text.split("/")
    if len(pieces) != 3 or pieces[0]:
        raise IdentifierError(
            kind, text, IdentifierProblem.BAD_METHOD, "must be '/package.Service/Method'"
        )
    _check_service_name(kind, text, pieces[1])
    _check_method_name(text, pieces[2])
    return MethodPath(pieces[1], pieces[2])


def _check_method_name(text: str, method: str) -> None:
    kind = "method path"
    if len(method) > MAX_METHOD_NAME_LENGTH:
        raise IdentifierError(
            kind,
            text,
            IdentifierProblem.TOO_LONG,
            f"method name is longer than {MAX_METHOD_NAME_LENGTH} characters",
        )
    if not _NAME.fullmatch(method):
        raise IdentifierError(
            kind,
            text,
            IdentifierProblem.BAD_METHOD,
            "method name must be ASCII letters, digits and '_', not starting with a digit",
        )


@dataclass(frozen=True, slots=True)
class RegistryId:
    """The federation's registry, the signer of its global configuration: the instance code."""

    instance: str

    def __post_init__(self) -> None:
        _check_part("registry", self.instance, "instance", self.instance)

    def __str__(self) -> str:
        return self.instance

    @property
    def uri(self) -> str:
        """The certificate URI SAN of the configuration-signing certificate."""
        return f"{_URI_PREFIX}registry:{self}"


@dataclass(frozen=True, slots=True)
class OperatorId:
    """A person or system operating the federation's registry: a name of the safe set."""

    name: str

    def __post_init__(self) -> None:
        _check_part("operator", self.name, "name", self.name)

    def __str__(self) -> str:
        return self.name

    @property
    def uri(self) -> str:
        """The certificate URI SAN of the operator's client certificate."""
        return f"{_URI_PREFIX}operator:{self}"


PartyId = MemberId | SubsystemId | SecurityServerId | RegistryId | OperatorId


def parse_identity_uri(uri: object) -> PartyId:
    """Parse a certificate URI SAN (``urn:pintu:{member,subsystem,server,registry,operator}:``)."""
    if not isinstance(uri, str):
        raise IdentifierError("identity URI", uri, IdentifierProblem.NOT_TEXT, "not a string")
    if not uri:
        raise IdentifierError("identity URI", uri, IdentifierProblem.EMPTY, "is empty")
    kind, sep, rest = uri.removeprefix(_URI_PREFIX).partition(":")
    if not uri.startswith(_URI_PREFIX) or not sep:
        raise IdentifierError(
            "identity URI",
            uri,
            IdentifierProblem.BAD_URI,
            f"must be {_URI_PREFIX}{{member,subsystem,server,registry,operator}}:IDENTIFIER",
        )
    if kind == "member":
        return MemberId.parse(rest)
    if kind == "subsystem":
        return SubsystemId.parse(rest)
    if kind == "server":
        return SecurityServerId.parse(rest)
    if kind == "registry":
        return RegistryId(rest)
    if kind == "operator":
        return OperatorId(rest)
    raise IdentifierError(
        "identity URI", uri, IdentifierProblem.BAD_URI, f"unknown identity kind {_quote(kind)}"
    )


_SUBJECT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._:-]*[A-Za-z0-9])?")
_SUBJECT_CHARS = re.compile(r"[A-Za-z0-9._:-]*")
_REFERENCE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._:@#/+-]*[A-Za-z0-9])?")
_REFERENCE_CHARS = re.compile(r"[A-Za-z0-9._:@#/+-]*")
MAX_SUBJECT_LENGTH: Final = 128
MAX_REFERENCE_LENGTH: Final = 128


def _token(
    kind: str,
    text: object,
    pattern: re.Pattern[str],
    chars: re.Pattern[str],
    limit: int,
    allowed: str,
) -> str:
    value = _text(kind, text)
    if not value:
        raise IdentifierError(kind, value, IdentifierProblem.EMPTY, "is empty")
    if len(value) > limit:
        raise IdentifierError(
            kind, value, IdentifierProblem.TOO_LONG, f"is longer than {limit} characters"
        )
    if not pattern.fullmatch(value):
        safe = bool(chars.fullmatch(value))
        raise IdentifierError(
            kind,
            value,
            IdentifierProblem.BAD_EDGE if safe else IdentifierProblem.UNSAFE_CHARACTER,
            f"must be {allowed}, starting and ending with a letter or digit",
        )
    return value


def parse_purpose(text: object) -> str:
    """A purpose code: the safe set of an identifier part (1-64 characters)."""
    return _token(
        "purpose",
        text,
        _PART,
        _PART_CHARS,
        MAX_PART_LENGTH,
        "ASCII letters, digits, '.', '_', '-'",
    )


def parse_subject(text: object) -> str:
    """A citizen identifier such as ``NIK:3174051234560001`` (1-128 characters)."""
    return _token(
        "subject",
        text,
        _SUBJECT,
        _SUBJECT_CHARS,
        MAX_SUBJECT_LENGTH,
        "ASCII letters, digits, '.', '_', ':', '-'",
    )


def subject_pseudonym(key: bytes, subject: str) -> str:
    """The citizen's keyed pseudonym (HMAC-SHA-256 under the federation's pseudonym key, 32 hex
    digits; "" for no subject): what audit records and access histories hold in place of the
    identifier, so that only a holder of the key can link them to the citizen."""
    if not subject:
        return ""
    return hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()[:32]


def parse_reference(kind: str, text: object) -> str:
    """A free reference such as a user or a case number (1-128 characters, no spaces)."""
    return _token(
        kind,
        text,
        _REFERENCE,
        _REFERENCE_CHARS,
        MAX_REFERENCE_LENGTH,
        "ASCII letters, digits and . _ : @ # / + -",
    )
