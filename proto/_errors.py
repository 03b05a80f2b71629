"""How a refusal travels: a gRPC status plus ``pintu-*`` trailing metadata (see errors.proto).

Every Pintu service (security servers, the CA service) reports refusals through
:func:`error_trailers`, so callers read one format everywhere.
"""

from __future__ import annotations

from typing import Final

from proto.pintu.v1 import errors_pb2

ERROR_CODE_KEY: Final = "pintu-error-code"
ERROR_ORIGIN_KEY: Final = "pintu-error-origin"
ERROR_DETAIL_KEY: Final = "pintu-error-detail-bin"
MESSAGE_ID_KEY: Final = "pintu-message-id"

ORIGIN_LABELS: Final[dict[int, str]] = {
    errors_pb2.ERROR_ORIGIN_CONSUMER_GATEWAY: "consumer_gateway",
    errors_pb2.ERROR_ORIGIN_PROVIDER_GATEWAY: "provider_gateway",
    errors_pb2.ERROR_ORIGIN_CERTIFICATE_AUTHORITY: "certificate_authority",
    errors_pb2.ERROR_ORIGIN_REGISTRY: "registry",
    errors_pb2.ERROR_ORIGIN_CONSENT_SERVICE: "consent_service",
}


def error_trailers(
    code: str,
    origin: errors_pb2.ErrorOrigin.ValueType,
    message: str,
    *,
    message_id: str = "",
    field: str = "",
    reasons: tuple[str, ...] = (),
    decision_id: str = "",
) -> tuple[tuple[str, str | bytes], ...]:
    """The trailing metadata that reports a refusal with a stable ``code``."""
    detail = errors_pb2.ErrorDetail(
        code=code,
        origin=origin,
        message=message,
        message_id=message_id,
        field=field,
        reasons=reasons,
        decision_id=decision_id,
    )
    trailers: list[tuple[str, str | bytes]] = [
        (ERROR_CODE_KEY, code),
        (ERROR_ORIGIN_KEY, ORIGIN_LABELS[origin]),
        (ERROR_DETAIL_KEY, detail.SerializeToString()),
    ]
    if message_id:
        trailers.append((MESSAGE_ID_KEY, message_id))
    return tuple(trailers)
