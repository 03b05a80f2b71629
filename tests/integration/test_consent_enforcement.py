"""The provider's security server enforces citizens' consent from its replica of the consent
service: no consent, another citizen's, paused, revoked or expired consent are refused
(``consent_missing``); a stale replica fails closed (``consent_state_stale``) and recovers."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from consent import Change, ConsentDetail, ConsentService
from gateway import security_server
from tests.integration.support import assert_refusal, refused
from tests.integration.testbed import CLIENT, PROBE, TwoGateways, metadata, probe

pytestmark = pytest.mark.integration

S = grpc.StatusCode
CITIZEN = "NIK:3174051234560001"
OTHER = "NIK:3174051234560002"
MakeTestbed = Callable[..., Awaitable[TwoGateways]]


@pytest.fixture
async def testbed(make_testbed: MakeTestbed) -> TwoGateways:
    return await make_testbed(consent=True)


def detail(
    subject: str = CITIZEN, until: dt.datetime | None = None, purpose: str = "testing"
) -> ConsentDetail:
    now = dt.datetime.now(dt.UTC)
    return ConsentDetail(
        subject=subject,
        provider=PROBE.provider,
        consumer=CLIENT,
        purpose=purpose,
        purpose_text="To test the probe",
        valid_from=now - dt.timedelta(minutes=1),
        valid_until=until or now + dt.timedelta(days=1),
        services=(PROBE,),
    )


def call(testbed: TwoGateways, subject: str | None = CITIZEN) -> Any:
    extra = {"pintu_subject": subject} if subject else {}
    return probe(testbed.agency_channel(), "Echo")(b"x", metadata=metadata(**extra), timeout=10)


async def outcome(testbed: TwoGateways, subject: str | None = CITIZEN) -> str:
    """ "allowed", or the refusal's code and reasons."""
    try:
        await call(testbed, subject)
    except grpc.aio.AioRpcError as error:
        trailers = dict(error.trailing_metadata() or ())
        return str(trailers.get("pintu-error-code"))
    return "allowed"


async def until(testbed: TwoGateways, expected: str, subject: str | None = CITIZEN) -> None:
    for _ in range(200):
        if await outcome(testbed, subject) == expected:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"the exchange never became {expected}: {await outcome(testbed, subject)}")


async def consent_missing(testbed: TwoGateways, subject: str | None = CITIZEN) -> None:
    testbed.probe.calls.clear()
    error = await refused(call(testbed, subject))
    detail_ = assert_refusal(error, S.PERMISSION_DENIED, "access_denied", "provider_gateway")
    assert list(detail_.reasons) == ["consent_missing"]
    assert testbed.probe.calls == []


async def test_without_consent_the_exchange_is_refused(testbed: TwoGateways) -> None:
    await until(testbed, "access_denied")
    await consent_missing(testbed)


async def test_a_consent_allows_and_its_revocation_refuses(testbed: TwoGateways) -> None:
    async with testbed.consent_client() as client:
        consent, _ = await client.grant(detail())
        await until(testbed, "allowed")
        assert testbed.probe.metadata[-1]["pintu-subject"] == [CITIZEN]
        await client.change(consent.id, Change.REVOKE, subject=CITIZEN)
        await until(testbed, "access_denied")
    await consent_missing(testbed)


async def test_a_paused_consent_refuses_until_resumed(testbed: TwoGateways) -> None:
    async with testbed.consent_client() as client:
        consent, _ = await client.grant(detail())
        await until(testbed, "allowed")
        await client.change(consent.id, Change.PAUSE, subject=CITIZEN)
        await until(testbed, "access_denied")
        await client.change(consent.id, Change.RESUME, subject=CITIZEN)
        await until(testbed, "allowed")


async def test_another_citizens_consent_does_not_count(testbed: TwoGateways) -> None:
    async with testbed.consent_client() as client:
        await client.grant(detail(OTHER))
    await until(testbed, "allowed", OTHER)
    await consent_missing(testbed, CITIZEN)


async def test_an_expired_consent_refuses(testbed: TwoGateways) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
    async with testbed.consent_client() as client:
        await client.grant(detail(until=soon))
    await until(testbed, "allowed")
    await asyncio.sleep(max(0.0, (soon - dt.datetime.now(dt.UTC)).total_seconds()) + 0.1)
    await consent_missing(testbed)


async def test_a_consent_required_service_needs_a_citizen(testbed: TwoGateways) -> None:
    testbed.probe.calls.clear()
    error = await refused(call(testbed, subject=None))
    detail_ = assert_refusal(error, S.PERMISSION_DENIED, "access_denied", "provider_gateway")
    assert list(detail_.reasons) == ["subject_missing"]


async def test_a_stale_replica_fails_closed_and_recovers(testbed: TwoGateways) -> None:
    assert testbed.consent is not None
    async with testbed.consent_client() as client:
        await client.grant(detail())
    await until(testbed, "allowed")
    service = testbed.consent
    await service.stop(0)
    # Within its bound (1 s in the testbed) the replica goes on deciding by itself.
    assert await outcome(testbed) == "allowed"
    await asyncio.sleep(1.3)
    testbed.probe.calls.clear()
    error = await refused(call(testbed))
    assert_refusal(error, S.UNAVAILABLE, "consent_state_stale", "provider_gateway")
    assert testbed.probe.calls == []
    # Started again on the same port and database, as after a crash.
    source = await testbed.registry.follower(testbed.pki.path / "consent-again", poll=0.5)
    testbed.consent = ConsentService(dataclasses.replace(service.settings, registry=source))
    await testbed.consent.start()
    await until(testbed, "allowed")


async def test_a_provider_without_a_replica_refuses_consent_required_services(
    testbed: TwoGateways,
) -> None:
    old = testbed.provider
    await old.stop(0)
    folder = old.settings.pki.key_path.parent
    testbed.provider = security_server(
        dataclasses.replace(
            old.settings, consent=None, registry=await testbed.registry.follower(folder)
        )
    )
    await testbed.provider.start()
    async with testbed.consent_client() as client:
        await client.grant(detail())
    testbed.probe.calls.clear()
    error = await refused(call(testbed))
    detail_ = assert_refusal(error, S.UNAVAILABLE, "consent_state_stale", "provider_gateway")
    assert "keeps no consent replica" in detail_.message
    assert testbed.probe.calls == []
