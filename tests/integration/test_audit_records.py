"""The provider's security server records every exchange attempt in its tamper-evident log:
allowed exchanges before they reach the backend (with the policy decision id, the consent id and
the citizen's pseudonym), their outcome, and refusals; the log verifies; a log that cannot be
written refuses the exchange (``audit_unavailable``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from audit import ExchangeRecord, pseudonym, verify_log
from consent import ConsentDetail
from tests.integration.support import assert_refusal, refused
from tests.integration.testbed import (
    CLIENT,
    PROBE,
    PSEUDONYM_KEY,
    B,
    TwoGateways,
    metadata,
    probe,
)

pytestmark = pytest.mark.integration

S = grpc.StatusCode
CITIZEN = "NIK:3174051234560001"
MakeTestbed = Callable[..., Awaitable[TwoGateways]]


def records(testbed: TwoGateways) -> list[ExchangeRecord]:
    audit = testbed.provider.audit
    assert audit is not None
    return [ExchangeRecord.decode(audit.log.record(n)) for n in range(audit.log.size)]


def echo(testbed: TwoGateways, **entries: str) -> Any:
    return probe(testbed.agency_channel(), "Echo")(b"x", metadata=metadata(**entries), timeout=10)


async def test_allowed_and_refused_exchanges_are_recorded_and_the_log_verifies(
    make_testbed: MakeTestbed,
) -> None:
    testbed = await make_testbed(consent=True, audit=True)
    now = dt.datetime.now(dt.UTC)
    async with testbed.consent_client() as client:
        consent, _ = await client.grant(
            ConsentDetail(
                subject=CITIZEN,
                provider=PROBE.provider,
                consumer=CLIENT,
                purpose="testing",
                purpose_text="To test",
                valid_from=now - dt.timedelta(minutes=1),
                valid_until=now + dt.timedelta(days=1),
                services=(PROBE,),
            )
        )
    for _ in range(100):
        try:
            await echo(testbed, pintu_subject=CITIZEN)
            break
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.05)
    refusal = await refused(echo(testbed, pintu_subject="NIK:3174050000000000"))
    detail = assert_refusal(refusal, S.PERMISSION_DENIED, "access_denied", "provider_gateway")

    for _ in range(100):  # refusals are recorded in the background
        written = records(testbed)
        if any(r.message_id == detail.message_id for r in written):
            break
        await asyncio.sleep(0.02)
    allowed = [r for r in written if r.kind == "request"]
    assert allowed, written
    request = allowed[-1]
    outcome = next(r for r in written if r.kind == "outcome" and r.message_id == request.message_id)
    assert (request.client, request.purpose, request.consent_id) == (
        str(CLIENT),
        "testing",
        consent.id,
    )
    assert len(request.decision_id) == 36
    assert request.subject == pseudonym(PSEUDONYM_KEY, CITIZEN)
    assert CITIZEN not in str(written)  # never the citizen's own identifier
    assert outcome.status == "OK"
    assert written.index(request) < written.index(outcome)
    refused_record = next(r for r in written if r.message_id == detail.message_id)
    assert (refused_record.kind, refused_record.code, refused_record.reasons) == (
        "refusal",
        "access_denied",
        ("consent_missing",),
    )
    assert refused_record.decision_id == detail.decision_id

    audit = testbed.provider.audit
    assert audit is not None
    path = audit.log.path
    await testbed.provider.stop(0)  # signs a last checkpoint
    verified = verify_log(path, [testbed.pki.root], B)
    assert verified.records == len(written)
    assert verified.uncovered == 0


async def test_a_log_that_cannot_be_written_refuses_the_exchange(make_testbed: MakeTestbed) -> None:
    testbed = await make_testbed(audit=True)
    assert await echo(testbed) == b"x"
    audit = testbed.provider.audit
    assert audit is not None
    db = sqlite3.connect(audit.log.path)
    db.execute("BEGIN EXCLUSIVE")  # another process holds the file
    try:
        testbed.probe.calls.clear()
        error = await refused(echo(testbed))
        assert_refusal(error, S.UNAVAILABLE, "audit_unavailable", "provider_gateway")
        assert testbed.probe.calls == []
    finally:
        db.rollback()
        db.close()
    assert await echo(testbed) == b"x"
