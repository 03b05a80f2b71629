"""The ``pintu-*`` metadata agency systems send, and what the gateways pass on.

An agency system calls its own security server with the provider's native method and these entries:

==================  ========  =====================================================
key                 required  value
==================  ========  =====================================================
``pintu-client``    yes       the calling subsystem, ``INSTANCE/CLASS/MEMBER/SUBSYSTEM``
``pintu-provider``  yes       the provider subsystem, same form
``pintu-purpose``   yes       purpose code
``pintu-subject``   no        the citizen concerned, e.g. ``NIK:3174051234560001``
``pintu-user``      no        the person acting at the client
``pintu-issue``     no        the client's case or application reference
==================  ========  =====================================================

Any other ``pintu-*`` key is refused (a misspelt ``pintu-subject`` must not silently drop the
subject). Other metadata passes to the provider's backend unchanged, except the gRPC-reserved
``grpc-*`` and ``user-agent`` entries. The provider's backend receives the verified
``pintu-client``, ``pintu-purpose``, ``pintu-subject``, ``pintu-user``, ``pintu-issue`` and
``pintu-message-id`` values from the provider gateway, never copies of what a caller sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, cast

from gateway._errors import ErrorCode, GatewayError
from proto import (
    IdentifierError,
    SubsystemId,
    parse_purpose,
    parse_reference,
    parse_subject,
)

Metadata = tuple[tuple[str, str | bytes], ...]

CLIENT_KEY: Final = "pintu-client"
PROVIDER_KEY: Final = "pintu-provider"
PURPOSE_KEY: Final = "pintu-purpose"
SUBJECT_KEY: Final = "pintu-subject"
USER_KEY: Final = "pintu-user"
ISSUE_KEY: Final = "pintu-issue"
EXCHANGE_HEADER_KEY: Final = "pintu-exchange-bin"
MESSAGE_ID_KEY: Final = "pintu-message-id"
# The provider security server's stapled OCSP response, in its response headers.
OCSP_KEY: Final = "pintu-ocsp-bin"
# The provider security server's seal on its answer (a serialized pintu.v1.Seal), in trailers.
SEAL_KEY: Final = "pintu-seal-bin"

_REQUIRED: Final = (CLIENT_KEY, PROVIDER_KEY, PURPOSE_KEY)
_PARSERS: Final[dict[str, Callable[[object], object]]] = {
    CLIENT_KEY: SubsystemId.parse,
    PROVIDER_KEY: SubsystemId.parse,
    PURPOSE_KEY: parse_purpose,
    SUBJECT_KEY: parse_subject,
    USER_KEY: lambda text: parse_reference("user", text),
    ISSUE_KEY: lambda text: parse_reference("issue", text),
}


@dataclass(frozen=True, slots=True)
class AgencyRequest:
    """The checked ``pintu-*`` values of one call, and the metadata to pass on."""

    client: SubsystemId
    provider: SubsystemId
    purpose: str
    subject: str
    user: str
    issue: str
    passthrough: Metadata


def pairs(metadata: object) -> Metadata:
    """gRPC metadata (a sequence of key/value tuples at run time) as plain pairs."""
    if not metadata:
        return ()
    return tuple(cast(Iterable[tuple[str, str | bytes]], metadata))


def is_reserved(key: str) -> bool:
    """Whether ``key`` is Pintu's or gRPC's own, never passed between parties as is."""
    return key.startswith(("pintu-", "grpc-")) or key == "user-agent"


def passthrough(metadata: Iterable[tuple[str, str | bytes]]) -> Metadata:
    """``metadata`` without reserved entries."""
    return tuple((key, value) for key, value in metadata if not is_reserved(key))


# gRPC's rich error model (google.rpc.Status) travels in this reserved key; it belongs to the
# answer and passes from the backend to the caller.
STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"


def response_passthrough(metadata: Iterable[tuple[str, str | bytes]]) -> Metadata:
    """A backend's response metadata as the caller may see it: without reserved entries except
    the rich error details."""
    return tuple(
        (key, value) for key, value in metadata if key == STATUS_DETAILS_KEY or not is_reserved(key)
    )


def metadata_size(metadata: Iterable[tuple[str, str | bytes]]) -> int:
    """Size as HTTP/2 and gRPC count it: each entry's key and value, plus 32 bytes."""
    return sum(len(key) + len(value) + 32 for key, value in metadata)


def read_agency_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> AgencyRequest:
    """Check a call's metadata as sent by an agency system.

    Raises:
        GatewayError: ``metadata_missing`` or ``metadata_invalid``, with the key as ``field``.
    """
    found: dict[str, object] = {}
    others: list[tuple[str, str | bytes]] = []
    for key, value in metadata:
        if not key.startswith("pintu-"):
            if not key.startswith("grpc-") and key != "user-agent":
                others.append((key, value))
            continue
        parser = _PARSERS.get(key)
        if parser is None:
            raise GatewayError(
                ErrorCode.METADATA_INVALID,
                f"{key}: not a metadata key callers may send; see the pintu-* keys in the docs",
                key,
            )
        if key in found:
            raise GatewayError(ErrorCode.METADATA_INVALID, f"{key}: given more than once", key)
        try:
            found[key] = parser(value)
        except IdentifierError as error:
            raise GatewayError(ErrorCode.METADATA_INVALID, f"{key}: {error}", key) from None
    for key in _REQUIRED:
        if key not in found:
            raise GatewayError(ErrorCode.METADATA_MISSING, f"{key}: required", key)
    client, provider = found[CLIENT_KEY], found[PROVIDER_KEY]
    assert isinstance(client, SubsystemId)
    assert isinstance(provider, SubsystemId)
    return AgencyRequest(
        client=client,
        provider=provider,
        purpose=str(found[PURPOSE_KEY]),
        subject=str(found.get(SUBJECT_KEY, "")),
        user=str(found.get(USER_KEY, "")),
        issue=str(found.get(ISSUE_KEY, "")),
        passthrough=tuple(others),
    )
