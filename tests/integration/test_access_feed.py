"""The citizens' access feed: the provider's security server reports every exchange about a
citizen, allowed or refused, from its audit log to the consent service's access history — by
pseudonym, with a checkpoint that covers the record; an outage of the consent service loses
nothing, and redelivery never records an event twice."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from audit import pseudonym
from consent import ConsentService
from gateway._feed import CURSOR
from tests.integration.test_consent_enforcement import CITIZEN, detail, outcome, until
from tests.integration.testbed import PSEUDONYM_KEY, TwoGateways

pytestmark = pytest.mark.integration

MakeTestbed = Callable[..., Awaitable[TwoGateways]]
STRANGER = "NIK:3174050000000009"


async def history(testbed: TwoGateways, subject: str) -> list[Any]:
    async with testbed.consent_client() as client:
        return list(await client.access_of(subject))


async def settled(testbed: TwoGateways, subject: str, count: int) -> list[Any]:
    """The citizen's access history once it holds ``count`` events (bounded wait)."""
    for _ in range(200):
        events = await history(testbed, subject)
        if len(events) >= count:
            return events
        await asyncio.sleep(0.05)
    pytest.fail(f"{subject}'s history holds {len(await history(testbed, subject))} events")


async def test_allowed_and_refused_exchanges_reach_the_citizens_access_history(
    make_testbed: MakeTestbed,
) -> None:
    testbed = await make_testbed(consent=True, audit=True)
    async with testbed.consent_client() as client:
        await client.grant(detail())
    await until(testbed, "allowed")  # the replica may need a moment; each try is reported
    assert await outcome(testbed, STRANGER) == "access_denied"

    mine = await settled(testbed, CITIZEN, 1)
    assert all(e.subject == pseudonym(PSEUDONYM_KEY, CITIZEN) for e in mine)
    allowed = [e for e in mine if e.allowed]
    assert allowed, mine
    event = allowed[0]
    assert event.log == str(testbed.provider.settings.server)
    assert event.consumer.endswith("/client")
    assert event.method == "/test.v1.Probe/Echo"
    assert event.purpose == "testing"
    assert len(event.message_id) == 32
    assert event.checkpoint_size > event.seq  # a checkpoint covers the record
    assert len(event.checkpoint_root) == 64

    theirs = await settled(testbed, STRANGER, 1)
    assert [(e.allowed, e.code) for e in theirs] == [(False, "access_denied")]
    assert not {e.message_id for e in theirs} & {e.message_id for e in mine}


async def test_an_outage_loses_nothing_and_redelivery_records_nothing_twice(
    make_testbed: MakeTestbed,
) -> None:
    testbed = await make_testbed(consent=True, audit=True, consent_staleness=30)
    async with testbed.consent_client() as client:
        await client.grant(detail())
    await until(testbed, "allowed")
    before = len(await settled(testbed, CITIZEN, 1))

    service = testbed.consent
    assert service is not None
    await service.stop(0)
    # The replica is fresh for 30 s here: exchanges go on while the feed cannot deliver.
    for _ in range(5):
        assert await outcome(testbed) == "allowed"
    feed = testbed.provider.access_feed
    assert feed is not None
    for _ in range(200):
        if feed.failing:
            break
        await asyncio.sleep(0.05)
    assert feed.failing

    source = await testbed.registry.follower(testbed.pki.path / "consent-again", poll=0.5)
    testbed.consent = ConsentService(dataclasses.replace(service.settings, registry=source))
    await testbed.consent.start()
    events = await settled(testbed, CITIZEN, before + 5)
    assert len(events) == before + 5
    assert len({(e.log, e.seq) for e in events}) == len(events)

    # The feed forgets how far it got (as after a crash before its cursor was stored): it
    # delivers everything again, and the history does not change.
    audit = testbed.provider.audit
    assert audit is not None
    size = audit.log.size
    audit.log.set_cursor(CURSOR, 0)
    for _ in range(200):
        if audit.log.cursor(CURSOR) >= size:
            break
        await asyncio.sleep(0.05)
    assert audit.log.cursor(CURSOR) >= size
    assert len(await history(testbed, CITIZEN)) == before + 5
