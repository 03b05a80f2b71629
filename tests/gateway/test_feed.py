"""Which audit records become access events, and how a refusal's unchecked claims are left out."""

from __future__ import annotations

import datetime as dt

from audit import Checkpoint, ExchangeRecord
from gateway._feed import access_event
from proto import SecurityServerId

SERVER = SecurityServerId.parse("DEMO/GOV/B/ss1")
CHECKPOINT = Checkpoint("DEMO/GOV/B/ss1", 10, b"\x01" * 32, dt.datetime.now(dt.UTC), "token")
AT = dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)


def record(kind: str, **fields: object) -> bytes:
    base: dict[str, object] = {
        "message_id": "a" * 32,
        "role": "provider",
        "at": AT,
        "method": "/test.v1.Probe/Echo",
        "client": "DEMO/GOV/A/client",
        "client_server": "DEMO/GOV/A/ss1",
        "provider": "DEMO/GOV/B/provider",
        "purpose": "testing",
        "subject": "ab" * 16,
    }
    return ExchangeRecord(kind=kind, **{**base, **fields}).encode()  # type: ignore[arg-type]


def test_an_allowed_exchange_about_a_citizen_is_reported_with_everything() -> None:
    event = access_event(3, record("request"), SERVER, CHECKPOINT)
    assert event is not None
    assert (event.log, event.seq, event.allowed, event.code) == (str(SERVER), 3, True, "")
    assert (event.consumer, event.provider, event.method) == (
        "DEMO/GOV/A/client",
        "DEMO/GOV/B/provider",
        "/test.v1.Probe/Echo",
    )
    assert (event.checkpoint_size, event.checkpoint_root) == (10, "01" * 32)


def test_records_not_about_a_citizen_or_not_the_providers_are_not_reported() -> None:
    assert access_event(3, record("request", subject=""), SERVER, CHECKPOINT) is None
    assert access_event(3, record("outcome", status="OK"), SERVER, CHECKPOINT) is None
    assert access_event(3, record("request", role="consumer"), SERVER, CHECKPOINT) is None
    assert access_event(3, b"not a record", SERVER, CHECKPOINT) is None


def test_a_refusals_unchecked_claims_are_left_out() -> None:
    other = access_event(
        4,
        record("refusal", provider="DEMO/GOV/C/app", code="provider_not_served", client_server=""),
        SERVER,
        CHECKPOINT,
    )
    assert other is not None
    assert (other.allowed, other.code, other.provider) == (False, "provider_not_served", "")
    assert other.consumer == "DEMO/GOV/A/client"
    garbled = access_event(
        5, record("refusal", method="no method", code="method_invalid"), SERVER, CHECKPOINT
    )
    assert garbled is not None
    assert (garbled.method, garbled.provider, garbled.consumer) == ("", "", "")
    assert garbled.code == "method_invalid"
