"""Refusals as structured log records (logger ``pintu.gateway``).

Each refusal is one record at WARNING level whose ``pintu_event`` attribute holds the fields:
``event`` ("exchange_refused"), ``code``, ``status``, ``origin``, ``message_id``, ``method``,
``client``, ``provider``, ``peer`` and ``message``; a policy refusal adds ``reasons`` and
``decision_id``. ``pintu``'s log set-up prints them as JSON
lines.
"""

from __future__ import annotations

import logging

from gateway._errors import GatewayError, Origin

LOGGER = logging.getLogger("pintu.gateway")


def log_refusal(
    error: GatewayError,
    origin: Origin,
    *,
    message_id: str,
    method: str,
    client: str = "",
    provider: str = "",
    peer: str = "",
) -> None:
    """Record one refused exchange."""
    if not LOGGER.isEnabledFor(logging.WARNING):
        return
    LOGGER.warning(
        "exchange refused: %s: %s",
        error.code.label,
        error.message,
        extra={
            "pintu_event": {
                "event": "exchange_refused",
                "code": error.code.label,
                "status": error.code.status.name,
                "origin": origin.label,
                "message_id": message_id,
                "method": method[:300],
                "client": client,
                "provider": provider,
                "peer": peer,
                "message": error.message,
                **(
                    {"reasons": list(error.reasons), "decision_id": error.decision_id}
                    if error.decision_id or error.reasons
                    else {}
                ),
            }
        },
    )
