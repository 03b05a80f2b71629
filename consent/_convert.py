"""Consents and access events to and from their ``pintu.v1`` messages
(proto/pintu/v1/consent.proto)."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from consent._errors import AccessInvalid, ConsentInvalid
from consent._model import (
    AccessEvent,
    Consent,
    ConsentDetail,
    ConsentStatus,
    StatusChange,
    parse_provider,
)
from proto import IdentifierError, ServiceId, SubsystemId
from proto.pintu.v1 import consent_pb2

_STATUS_TO_WIRE = {
    ConsentStatus.ACTIVE: consent_pb2.CONSENT_STATUS_ACTIVE,
    ConsentStatus.PAUSED: consent_pb2.CONSENT_STATUS_PAUSED,
    ConsentStatus.REVOKED: consent_pb2.CONSENT_STATUS_REVOKED,
    ConsentStatus.EXPIRED: consent_pb2.CONSENT_STATUS_EXPIRED,
}
_STATUS_FROM_WIRE = {wire: status for status, wire in _STATUS_TO_WIRE.items()}


def timestamp(moment: dt.datetime) -> Timestamp:
    """``moment`` as a protobuf Timestamp."""
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(dt.UTC))
    return stamp


def moment(stamp: Timestamp, name: str) -> dt.datetime:
    """A Timestamp as an aware datetime (ConsentInvalid: unset)."""
    if stamp.seconds == 0 and stamp.nanos == 0:
        raise ConsentInvalid(f"{name}: required")
    return stamp.ToDatetime(tzinfo=dt.UTC)


def detail_to_proto(detail: ConsentDetail) -> consent_pb2.ConsentDetail:
    """The detail as a message."""
    return consent_pb2.ConsentDetail(
        subject=detail.subject,
        provider=str(detail.provider),
        consumer=str(detail.consumer),
        services=[str(s) for s in detail.services],
        data_categories=list(detail.data_categories),
        purpose=detail.purpose,
        purpose_text=detail.purpose_text,
        valid_from=timestamp(detail.valid_from),
        valid_until=timestamp(detail.valid_until),
    )


def detail_from_proto(message: consent_pb2.ConsentDetail) -> ConsentDetail:
    """The detail in a message (ConsentInvalid: malformed)."""
    try:
        return ConsentDetail(
            subject=message.subject,
            provider=parse_provider(message.provider),
            consumer=SubsystemId.parse(message.consumer),
            purpose=message.purpose,
            purpose_text=message.purpose_text,
            valid_from=moment(message.valid_from, "valid_from"),
            valid_until=moment(message.valid_until, "valid_until"),
            services=tuple(ServiceId.parse(s) for s in message.services),
            data_categories=tuple(message.data_categories),
        )
    except IdentifierError as error:
        raise ConsentInvalid(str(error)) from None


def consent_to_proto(consent: Consent, receipt: str = "") -> consent_pb2.Consent:
    """The consent as a message."""
    return consent_pb2.Consent(
        id=consent.id,
        detail=detail_to_proto(consent.detail),
        history=[
            consent_pb2.ConsentStatusChange(
                status=_STATUS_TO_WIRE[change.status],
                at=timestamp(change.at),
                actor=change.actor,
                reason=change.reason,
            )
            for change in consent.history
        ],
        position=consent.position,
        receipt=receipt,
    )


def consent_from_proto(message: consent_pb2.Consent) -> Consent:
    """The consent in a message (ConsentInvalid: malformed)."""
    if not message.id or not message.history:
        raise ConsentInvalid("a consent has an id and a history")
    history = []
    for change in message.history:
        status = _STATUS_FROM_WIRE.get(change.status)
        if status is None:
            raise ConsentInvalid(f"history: unknown status {change.status}")
        history.append(
            StatusChange(status, moment(change.at, "history.at"), change.actor, change.reason)
        )
    return Consent(message.id, detail_from_proto(message.detail), tuple(history), message.position)


def access_event_to_proto(event: AccessEvent) -> consent_pb2.AccessEvent:
    """The access event as a message."""
    return consent_pb2.AccessEvent(
        log=event.log,
        seq=event.seq,
        subject=event.subject,
        consumer=event.consumer,
        consumer_server=event.consumer_server,
        provider=event.provider,
        method=event.method,
        purpose=event.purpose,
        at=timestamp(event.at),
        allowed=event.allowed,
        code=event.code,
        message_id=event.message_id,
        checkpoint_size=event.checkpoint_size,
        checkpoint_root=event.checkpoint_root,
    )


def access_event_from_proto(message: consent_pb2.AccessEvent) -> AccessEvent:
    """The access event in a message (AccessInvalid: malformed, the message names the field)."""
    if not message.HasField("at") or (message.at.seconds == 0 and message.at.nanos == 0):
        raise AccessInvalid("at: required")
    try:
        at = message.at.ToDatetime(tzinfo=dt.UTC)
    except (ValueError, OverflowError):
        raise AccessInvalid("at: not a valid time") from None
    return AccessEvent(
        log=message.log,
        seq=message.seq,
        subject=message.subject,
        consumer=message.consumer,
        consumer_server=message.consumer_server,
        provider=message.provider,
        method=message.method,
        purpose=message.purpose,
        at=at,
        allowed=message.allowed,
        code=message.code,
        message_id=message.message_id,
        checkpoint_size=message.checkpoint_size,
        checkpoint_root=message.checkpoint_root,
    )
