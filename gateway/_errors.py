"""The gateway's error catalogue: every refusal's stable code, gRPC status and origin.

::

    GatewayError        one refusal; carries an ErrorCode, a message and optionally a field
    SettingsError       (code: settings_invalid) a gateway built from inconsistent settings

:func:`refusal_trailers` is the one place where a code becomes what the caller sees: the gRPC
status (from the catalogue) and the trailing metadata ``pintu-error-code``, ``pintu-error-origin``
and ``pintu-error-detail-bin`` (a serialized ``pintu.v1.ErrorDetail``).
"""

from __future__ import annotations

import enum
from typing import ClassVar

import grpc

from pki import (
    CertificateRevoked,
    StatusInvalid,
    StatusMissing,
    StatusRefused,
    StatusStale,
    StatusUnknown,
)
from proto import ERROR_CODE_KEY, ERROR_DETAIL_KEY, ERROR_ORIGIN_KEY, MESSAGE_ID_KEY, error_trailers
from proto.pintu.v1 import errors_pb2

__all__ = [
    "ERROR_CODE_KEY",
    "ERROR_DETAIL_KEY",
    "ERROR_ORIGIN_KEY",
    "MESSAGE_ID_KEY",
    "ErrorCode",
    "GatewayError",
    "Origin",
    "SettingsError",
    "refusal_trailers",
    "status_refusal",
]


_S = grpc.StatusCode


class Origin(enum.Enum):
    """The component that refused an exchange."""

    CONSUMER_GATEWAY = ("consumer_gateway", errors_pb2.ERROR_ORIGIN_CONSUMER_GATEWAY)
    PROVIDER_GATEWAY = ("provider_gateway", errors_pb2.ERROR_ORIGIN_PROVIDER_GATEWAY)

    def __init__(self, label: str, wire: errors_pb2.ErrorOrigin.ValueType) -> None:
        self.label = label
        self.wire = wire


class ErrorCode(enum.Enum):
    """Stable error codes. A code's meaning never changes and a retired code is never reused."""

    # Caller input, checked by the consumer gateway.
    METADATA_MISSING = (
        "metadata_missing",
        _S.INVALID_ARGUMENT,
        "A required pintu-* metadata entry is missing.",
    )
    METADATA_INVALID = (
        "metadata_invalid",
        _S.INVALID_ARGUMENT,
        "A pintu-* metadata entry is malformed or given more than once.",
    )
    METHOD_INVALID = (
        "method_invalid",
        _S.INVALID_ARGUMENT,
        "The call's method path is not /package.Service/Method.",
    )
    METADATA_TOO_LARGE = (
        "metadata_too_large",
        _S.RESOURCE_EXHAUSTED,
        "The call's metadata exceeds the configured size limit.",
    )
    REQUEST_INVALID = (
        "request_invalid",
        _S.INVALID_ARGUMENT,
        "A field of a request to the security server's own services is malformed.",
    )
    CLIENT_NOT_ALLOWED = (
        "client_not_allowed",
        _S.PERMISSION_DENIED,
        "The caller may not act as the subsystem named in pintu-client.",
    )
    PROVIDER_UNKNOWN = (
        "provider_unknown",
        _S.NOT_FOUND,
        "The subsystem named in pintu-provider is not registered.",
    )
    CONFIGURATION_EXPIRED = (
        "configuration_expired",
        _S.UNAVAILABLE,
        "The security server's copy of the global configuration has expired and the registry "
        "has not provided a newer one.",
    )
    PROVIDER_UNAVAILABLE = (
        "provider_unavailable",
        _S.UNAVAILABLE,
        "No security server of the provider could be reached securely.",
    )
    # Peer checks, by the provider gateway.
    PEER_NOT_AUTHENTICATED = (
        "peer_not_authenticated",
        _S.UNAUTHENTICATED,
        "The TLS peer is not an identifiable security server over TLS 1.3.",
    )
    PEER_CERTIFICATE_REVOKED = (
        "peer_certificate_revoked",
        _S.PERMISSION_DENIED,
        "The peer security server's certificate is revoked (CRL or stapled OCSP).",
    )
    PEER_STATUS_MISSING = (
        "peer_status_missing",
        _S.UNAUTHENTICATED,
        "The peer security server stapled no OCSP response.",
    )
    PEER_STATUS_INVALID = (
        "peer_status_invalid",
        _S.UNAUTHENTICATED,
        "The peer's stapled OCSP response is unreadable, badly signed or about another "
        "certificate.",
    )
    PEER_STATUS_STALE = (
        "peer_status_stale",
        _S.UNAUTHENTICATED,
        "The peer's stapled OCSP response is older than the accepted maximum age.",
    )
    PEER_STATUS_UNKNOWN = (
        "peer_status_unknown",
        _S.UNAUTHENTICATED,
        "The OCSP responder does not know the peer's certificate.",
    )
    STATUS_UNAVAILABLE = (
        "status_unavailable",
        _S.UNAVAILABLE,
        "This security server has no fresh OCSP response of its own, so peers would refuse it.",
    )
    PEER_UNKNOWN = (
        "peer_unknown",
        _S.PERMISSION_DENIED,
        "The TLS peer's security server is not registered.",
    )
    PEER_CERTIFICATE_UNREGISTERED = (
        "peer_certificate_unregistered",
        _S.PERMISSION_DENIED,
        "The TLS peer presented a certificate that is not registered for its security server.",
    )
    CLIENT_UNKNOWN = (
        "client_unknown",
        _S.PERMISSION_DENIED,
        "The client subsystem named by the consumer gateway is not registered.",
    )
    PEER_MEMBER_MISMATCH = (
        "peer_member_mismatch",
        _S.PERMISSION_DENIED,
        "The TLS peer is not a security server of the client's member.",
    )
    EXCHANGE_HEADER_INVALID = (
        "exchange_header_invalid",
        _S.INVALID_ARGUMENT,
        "The exchange header from the consumer gateway is missing or malformed.",
    )
    PROVIDER_NOT_SERVED = (
        "provider_not_served",
        _S.NOT_FOUND,
        "This security server does not serve the requested provider.",
    )
    SERVICE_UNKNOWN = (
        "service_unknown",
        _S.UNIMPLEMENTED,
        "The provider offers no such service through this security server.",
    )
    METHOD_UNKNOWN = (
        "method_unknown",
        _S.UNIMPLEMENTED,
        "The service has no such method registered.",
    )
    ACCESS_DENIED = (
        "access_denied",
        _S.PERMISSION_DENIED,
        "The provider's policy denied the exchange; the error detail lists the policy's "
        "reasons (no_access_right, purpose_not_allowed, purpose_missing, consent_missing, "
        "service_closed, ...) and the decision's id.",
    )
    POLICY_ERROR = (
        "policy_error",
        _S.PERMISSION_DENIED,
        "The provider's policy could not decide (engine error, timeout, undefined result or "
        "unwritable decision log), so the exchange is denied.",
    )
    AUDIT_UNAVAILABLE = (
        "audit_unavailable",
        _S.UNAVAILABLE,
        "A security server's audit log cannot be written, so the exchange is refused: before "
        "it reaches the backend, or before the answer reaches the caller.",
    )
    SIGNATURE_MISSING = (
        "signature_missing",
        _S.UNAUTHENTICATED,
        "The request (at the provider's security server) or the response (at the consumer's) "
        "came without the sending security server's seal.",
    )
    SIGNATURE_INVALID = (
        "signature_invalid",
        _S.UNAUTHENTICATED,
        "A seal does not verify: forged, by another member's key, with a certificate that is "
        "not a valid signing certificate, or over other content than was exchanged.",
    )
    CONSENT_STATE_STALE = (
        "consent_state_stale",
        _S.UNAVAILABLE,
        "The provider's replica of citizens' consents is older than its configured bound (or "
        "there is none), so an exchange that needs the citizen's consent is refused.",
    )
    BACKEND_UNAVAILABLE = (
        "backend_unavailable",
        _S.UNAVAILABLE,
        "The provider's backend could not be reached.",
    )
    BACKEND_TIMEOUT = (
        "backend_timeout",
        _S.DEADLINE_EXCEEDED,
        "The backend did not answer within the service's configured timeout.",
    )
    # Either side.
    DEADLINE_EXCEEDED = (
        "deadline_exceeded",
        _S.DEADLINE_EXCEEDED,
        "The caller's deadline passed before the exchange completed.",
    )
    MESSAGE_TOO_LARGE = (
        "message_too_large",
        _S.RESOURCE_EXHAUSTED,
        "A request or response message exceeds the configured size limit.",
    )
    INTERNAL_ERROR = (
        "internal_error",
        _S.INTERNAL,
        "An unexpected error in the security server; see its log.",
    )

    def __init__(self, label: str, status: grpc.StatusCode, summary: str) -> None:
        self.label = label
        self.status = status
        self.summary = summary


class GatewayError(Exception):
    """A refused exchange: a catalogue code, a message for the caller, and the field concerned."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        field: str = "",
        *,
        reasons: tuple[str, ...] = (),
        decision_id: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.reasons = reasons
        self.decision_id = decision_id


class SettingsError(Exception):
    """Gateway settings that contradict each other; the message names the setting.

    ``setting`` is the setting at fault (``server``, ``peer.certificate``, ``clients``,
    ``services``, ...) and ``item``, for list settings, the identifier of the entry at fault.
    """

    code: ClassVar[str] = "settings_invalid"

    def __init__(self, setting: str, message: str, item: object = None) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message
        self.item = item


def refusal_trailers(
    error: GatewayError, origin: Origin, message_id: str
) -> tuple[tuple[str, str | bytes], ...]:
    """The trailing metadata that reports ``error`` to the caller."""
    return error_trailers(
        error.code.label,
        origin.wire,
        error.message,
        message_id=message_id,
        field=error.field,
        reasons=error.reasons,
        decision_id=error.decision_id,
    )


_STATUS_CODES: dict[type[StatusRefused], ErrorCode] = {
    StatusMissing: ErrorCode.PEER_STATUS_MISSING,
    StatusInvalid: ErrorCode.PEER_STATUS_INVALID,
    StatusStale: ErrorCode.PEER_STATUS_STALE,
    StatusUnknown: ErrorCode.PEER_STATUS_UNKNOWN,
    CertificateRevoked: ErrorCode.PEER_CERTIFICATE_REVOKED,
}


def status_refusal(error: StatusRefused) -> GatewayError:
    """A peer's refused revocation status as a refusal of the exchange."""
    return GatewayError(
        _STATUS_CODES.get(type(error), ErrorCode.PEER_STATUS_INVALID), str(error), "ocsp"
    )
