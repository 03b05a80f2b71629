"""Certificates in motion: stapling, revocation, renewal under load, an unreachable responder and
a root rollover — with real gateways and a real CA service."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections import Counter

import grpc
import pytest

import pki
from proto import RegistryId
from proto.pintu.v1 import registry_pb2
from tests.integration.support import assert_refusal
from tests.integration.testbed import B, TwoGateways, metadata, probe

pytestmark = pytest.mark.integration

# Short times so that what takes a day in production takes seconds here.
FAST = {
    "policy": pki.IssuancePolicy(
        ocsp_refresh=dt.timedelta(seconds=0.5), crl_validity=dt.timedelta(seconds=30)
    ),
    "max_age": dt.timedelta(seconds=4),
    "refresh": dt.timedelta(seconds=0.5),
}


class Load:
    """Exchanges in a loop on several connections until stopped; counts outcomes."""

    def __init__(self, testbed: TwoGateways, concurrency: int = 8) -> None:
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._loop(testbed.agency_channel())) for _ in range(concurrency)
        ]

    async def _loop(self, channel: grpc.aio.Channel) -> None:
        echo = probe(channel, "Echo")
        while not self._stop.is_set():
            try:
                await echo(b"payload", metadata=metadata(), timeout=10)
                self.outcomes["ok"] += 1
            except grpc.aio.AioRpcError as error:
                code = dict(error.trailing_metadata() or ()).get("pintu-error-code", "")
                self.outcomes[f"{error.code().name} {code}"] += 1
                self.failures.append(f"{error.code().name} {code}: {error.details()}")
            await asyncio.sleep(0.01)

    async def stop(self) -> Counter[str]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.outcomes


async def echo_ok(testbed: TwoGateways) -> bytes:
    return await probe(testbed.agency_channel(), "Echo")(b"ok", metadata=metadata(), timeout=10)


async def test_each_exchange_carries_both_staples(testbed: TwoGateways) -> None:
    assert await echo_ok(testbed) == b"ok"
    for gateway in (testbed.consumer, testbed.provider):
        assert gateway.keeper is not None
        assert gateway.keeper.staple
        assert gateway.keeper.staple_age() < 60


async def test_a_revoked_consumer_is_refused_within_the_freshness_bound(make_testbed) -> None:
    testbed = await make_testbed(**FAST)
    assert await echo_ok(testbed) == b"ok"
    keeper = testbed.consumer.keeper
    assert keeper is not None
    testbed.pki.revoke(keeper.certificate.serial_number)
    revoked_at = time.monotonic()
    while True:
        try:
            await echo_ok(testbed)
        except grpc.aio.AioRpcError as error:
            code = dict(error.trailing_metadata())["pintu-error-code"]
            break
        assert time.monotonic() - revoked_at < FAST["max_age"].total_seconds(), (
            "a revoked security server was still served after the freshness bound"
        )
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - revoked_at
    # Refused by the provider, from its CRL or from the revoked staple, whichever came first.
    assert code == "peer_certificate_revoked"
    assert elapsed < FAST["max_age"].total_seconds()
    print(f"revoked consumer refused after {elapsed:.2f} s")


async def test_a_revoked_provider_is_refused_by_the_consumer(make_testbed) -> None:
    testbed = await make_testbed(**FAST)
    assert await echo_ok(testbed) == b"ok"
    keeper = testbed.provider.keeper
    assert keeper is not None
    testbed.pki.revoke(keeper.certificate.serial_number)
    deadline = time.monotonic() + FAST["max_age"].total_seconds()
    while time.monotonic() < deadline:
        try:
            await echo_ok(testbed)
        except grpc.aio.AioRpcError as error:
            assert_refusal(
                error,
                grpc.StatusCode.PERMISSION_DENIED,
                "peer_certificate_revoked",
                "consumer_gateway",
            )
            return
        await asyncio.sleep(0.05)
    pytest.fail("a revoked provider was still served after the freshness bound")


async def test_an_unreachable_responder_keeps_the_last_staple_then_fails_closed(
    make_testbed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pintu.pki")
    testbed = await make_testbed(**FAST)
    assert await echo_ok(testbed) == b"ok"
    await testbed.pki.stop()  # the CA service, HTTP side included, is gone
    stopped = time.monotonic()
    max_age = FAST["max_age"].total_seconds()
    # Still served with the last good staple ...
    assert await echo_ok(testbed) == b"ok"
    # ... until it is too old: then the consumer refuses before contacting the provider.
    while time.monotonic() - stopped < max_age + 3:
        try:
            await echo_ok(testbed)
        except grpc.aio.AioRpcError as error:
            assert_refusal(
                error, grpc.StatusCode.UNAVAILABLE, "status_unavailable", "consumer_gateway"
            )
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("exchanges went on with a stale staple")
    assert time.monotonic() - stopped >= max_age - 1.5  # not before the staple went stale
    await asyncio.sleep(FAST["refresh"].total_seconds() * 3)  # the keepers' next look
    events = [r.pintu_event["event"] for r in caplog.records if hasattr(r, "pintu_event")]
    # Warned at half the maximum age, before the refusals began, and again at the limit.
    assert "staple_ageing" in events
    assert "staple_stale" in events
    assert events.index("staple_ageing") < events.index("staple_stale")


async def test_renewal_under_continuous_load_fails_no_exchange(make_testbed) -> None:
    policy = pki.IssuancePolicy(
        authentication_lifetime=dt.timedelta(seconds=8), ocsp_refresh=dt.timedelta(seconds=0.5)
    )
    testbed = await make_testbed(
        policy=policy,
        max_age=dt.timedelta(seconds=5),
        refresh=dt.timedelta(seconds=1),
        renew_at=0.5,
    )
    first = {
        g.settings.server: g.keeper.certificate.serial_number
        for g in (testbed.consumer, testbed.provider)
        if g.keeper
    }
    load = Load(testbed)
    await asyncio.sleep(10)  # a renewal at 4 s and 8 s into each certificate's life
    outcomes = await load.stop()
    assert load.failures == [], Counter(load.failures).most_common(5)
    assert outcomes["ok"] > 100
    for gateway in (testbed.consumer, testbed.provider):
        assert gateway.keeper is not None
        assert gateway.keeper.renewals >= 2
        assert gateway.keeper.certificate.serial_number != first[gateway.settings.server]
        # The renewed files are on disk, for a restart.
        on_disk = pki.load_certificates(gateway.settings.pki.certificate_path)[0]
        assert on_disk == gateway.keeper.certificate
    print(f"renewal under load: {outcomes['ok']} exchanges, no failure")


async def test_root_rollover_without_stopping_exchanges(make_testbed) -> None:
    policy = pki.IssuancePolicy(
        authentication_lifetime=dt.timedelta(seconds=6), ocsp_refresh=dt.timedelta(seconds=0.5)
    )
    testbed = await make_testbed(
        policy=policy,
        max_age=dt.timedelta(seconds=5),
        refresh=dt.timedelta(seconds=0.5),
        renew_at=0.5,
    )
    folder = testbed.pki.folder
    load = Load(testbed)
    gateways = [testbed.consumer, testbed.provider]

    def roots(gateway) -> list[str]:
        return [
            r.subject.rfc4514_string()
            for r in pki.load_certificates(gateway.settings.pki.trust_anchors_path)
        ]

    now = dt.datetime.now(dt.UTC)
    folder.rollover_begin(now=now, actor="test")  # G2 trusted beside G1
    # The registry trusts G2 too, so that servers renewed under G2 can register their
    # certificates (`pintu registry rotate-signing-key` does this from the CA's trust bundle).
    registry = testbed.registry.service
    both = pki.certificate_pem(*folder.trust_bundle().roots)
    registry.replace_tls(dataclasses.replace(registry.settings.tls, trust_anchors=both))
    await asyncio.sleep(3)
    assert all(len(roots(g)) == 2 for g in gateways), [roots(g) for g in gateways]
    folder.rollover_switch(now=dt.datetime.now(dt.UTC), actor="test")  # G2 issues
    # The registry's signing key is rotated under G2 before G1 is retired.
    signing_key = pki.generate_key()
    g2 = folder.generation(2)
    g2_ca = pki.CertificateAuthority(
        testbed.pki.storage.load("G2-issuing"), g2.issuing, folder.settings.urls(2)
    )
    signer = g2_ca.issue_configuration_signing_certificate(
        RegistryId("DEMO"),
        signing_key.public_key(),
        now=dt.datetime.now(dt.UTC),
        lifetime=dt.timedelta(days=1),
    )
    await registry.replace_signer(signing_key, (signer, g2.issuing))
    await asyncio.sleep(8)  # every certificate renewed at least once under G2
    g2_issuing = folder.generation(2).issuing
    for gateway in gateways:
        assert gateway.keeper is not None
        assert gateway.keeper.certificate.issuer == g2_issuing.subject
    folder.rollover_retire(now=dt.datetime.now(dt.UTC), actor="test")  # G1 no longer trusted
    await asyncio.sleep(3)
    outcomes = await load.stop()
    assert load.failures == [], Counter(load.failures).most_common(5)
    assert outcomes["ok"] > 100
    g2_root = folder.generation(2).root.subject.rfc4514_string()
    assert all(roots(g) == [g2_root] for g in gateways)
    # The gateways still follow the registry, now signed under G2 only.
    version = await testbed.registry.operator.change(
        [registry_pb2.RegistryChange(add_subsystem=B.subsystem("late").to_proto())], "after"
    )
    await testbed.registry.caught_up(version)
    print(f"rollover under load: {outcomes['ok']} exchanges, no failure")
