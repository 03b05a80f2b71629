"""The consent service over mutual TLS: who may call, grants checked against the registry,
idempotent writes, receipts, and the watch stream that feeds provider replicas (resumed after a
restart, reset when needed, revocations seen within a second)."""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

import consent._service as consent_service
from consent import (
    AlreadyRevoked,
    CallerNotAllowed,
    Change,
    ConsentClient,
    ConsentInvalid,
    ConsentNotFound,
    ConsentReplica,
    ConsentStatus,
    ConsentUnavailable,
    PurposeNotServed,
    ReplicaFollower,
    RequestConflict,
    ServiceUnknown,
    ValidityInvalid,
    detail_to_proto,
    verify_receipt,
)
from proto import OperatorId
from proto.pintu.v1 import consent_pb2
from registry import Service
from tests.consent.service_site import (
    BIRTH,
    CITIZEN,
    CIVIL,
    CIVIL_REGISTRY,
    INCOME,
    NOW,
    OPERATOR_MEMBER,
    OTHER_CITIZEN,
    POPREG,
    TAX_INCOME,
    TAX_SERVER,
    ConsentSite,
    configuration,
    detail,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[ConsentSite]:
    site = ConsentSite(tmp_path)
    await site.start()
    try:
        yield site
    finally:
        await site.close()


def civil_service() -> Service:
    return configuration().services[CIVIL_REGISTRY]


async def until(condition, seconds: float = 10.0) -> float:
    """Seconds until ``condition()`` held (the test fails past ``seconds``)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "not within the time allowed"
        await asyncio.sleep(0.002)
    return time.monotonic() - started


# -- operators: grant, change, read ---------------------------------------------------------------


async def test_a_grant_is_recorded_with_a_receipt_anyone_can_verify(site: ConsentSite) -> None:
    async with site.client() as client:
        consent, receipt = await client.grant(detail(), actor=f"citizen {CITIZEN}")
    assert consent.recorded is ConsentStatus.ACTIVE
    assert consent.history[0].actor == f"operator portal for citizen {CITIZEN}"
    verified = verify_receipt(receipt, [site.ca.certificate], signer=OPERATOR_MEMBER)
    assert (verified.consent_id, verified.detail) == (consent.id, consent.detail)


async def test_grant_pause_resume_revoke_and_read(site: ConsentSite) -> None:
    async with site.client() as client:
        consent, _ = await client.grant(detail())
        paused = await client.change(consent.id, Change.PAUSE, subject=CITIZEN, reason="on holiday")
        resumed = await client.change(consent.id, Change.RESUME, subject=CITIZEN)
        revoked = await client.change(consent.id, Change.REVOKE, subject=CITIZEN)
        assert [c.status for c in revoked.history] == [
            ConsentStatus.ACTIVE,
            ConsentStatus.PAUSED,
            ConsentStatus.ACTIVE,
            ConsentStatus.REVOKED,
        ]
        assert paused.position < resumed.position < revoked.position
        with pytest.raises(AlreadyRevoked) as again:
            await client.change(consent.id, Change.REVOKE, subject=CITIZEN)
        assert again.value.code == "consent_already_revoked"
        listed = await client.of_subject(CITIZEN)
        assert [c.id for c in listed] == [consent.id]
        assert await client.of_subject(OTHER_CITIZEN) == []
        got, receipt = await client.get(consent.id, subject=CITIZEN)
        assert got.recorded is ConsentStatus.REVOKED
        assert receipt


async def test_another_subjects_consent_cannot_be_read_or_changed(site: ConsentSite) -> None:
    async with site.client() as client:
        consent, _ = await client.grant(detail())
        with pytest.raises(ConsentNotFound):
            await client.get(consent.id, subject=OTHER_CITIZEN)
        with pytest.raises(ConsentNotFound):
            await client.change(consent.id, Change.REVOKE, subject=OTHER_CITIZEN)
        assert (await client.get(consent.id, subject=CITIZEN))[0].recorded is ConsentStatus.ACTIVE


async def test_a_retried_grant_creates_no_duplicate(site: ConsentSite) -> None:
    async with site.client() as client:
        first, _ = await client.grant(detail(), request_id="req-1")
        again, _ = await client.grant(detail(), request_id="req-1")
        assert again.id == first.id
        assert len(await client.of_subject(CITIZEN)) == 1
        with pytest.raises(RequestConflict):
            await client.grant(
                detail(purpose="birth-support", subject=OTHER_CITIZEN), request_id="req-1"
            )


async def test_a_consent_for_a_service_that_does_not_exist(site: ConsentSite) -> None:
    async with site.client() as client:
        with pytest.raises(ServiceUnknown) as refused:
            await client.grant(detail(services=(CIVIL.service("popreg.v1.Nothing"),)))
    assert refused.value.code == "consent_service_unknown"


async def test_a_consent_for_a_purpose_the_service_does_not_serve(site: ConsentSite) -> None:
    async with site.client() as client:
        with pytest.raises(PurposeNotServed) as refused:
            await client.grant(detail(purpose="marketing"))
    assert refused.value.code == "consent_purpose_not_served"


async def grant_raw(site: ConsentSite, message: consent_pb2.ConsentDetail) -> grpc.aio.AioRpcError:
    identity = site.operator()
    channel = grpc.aio.secure_channel(
        site.address,
        grpc.ssl_channel_credentials(
            identity.trust_anchors, identity.private_key, identity.certificate_chain
        ),
        options=[("grpc.ssl_target_name_override", "consent.pintu.invalid")],
    )
    try:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await channel.unary_unary("/pintu.v1.Consents/Grant")(
                consent_pb2.GrantConsentRequest(detail=message).SerializeToString(), timeout=10
            )
        return failure.value
    finally:
        await channel.close()


def code(error: grpc.aio.AioRpcError) -> str:
    return str(dict(error.trailing_metadata() or ())["pintu-error-code"])


async def test_a_validity_ending_before_it_starts_is_refused_by_the_service(
    site: ConsentSite,
) -> None:
    message = detail_to_proto(detail())
    message.valid_until.CopyFrom(message.valid_from)
    message.valid_until.seconds -= 60
    error = await grant_raw(site, message)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert code(error) == ValidityInvalid.code


async def test_a_malformed_detail_is_refused_by_the_service(site: ConsentSite) -> None:
    message = detail_to_proto(detail())
    message.subject = "../etc/passwd"
    error = await grant_raw(site, message)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert code(error) == ConsentInvalid.code


async def test_only_the_services_operators_may_grant(site: ConsentSite) -> None:
    for identity in (site.operator(OperatorId("stranger")), site.server()):
        async with site.client(identity) as client:
            with pytest.raises(CallerNotAllowed) as refused:
                await client.grant(detail())
            assert refused.value.code == "consent_caller_not_allowed"


# -- security servers: check and watch --------------------------------------------------------


async def test_a_security_server_checks_consents_about_its_own_member_only(
    site: ConsentSite,
) -> None:
    async with site.client() as client:
        consent, _ = await client.grant(detail())
    async with site.client(site.server()) as server:
        assert await server.check(CITIZEN, str(BIRTH), str(CIVIL_REGISTRY), "birth-support") == (
            "active",
            consent.id,
        )
        assert await server.check(
            OTHER_CITIZEN, str(BIRTH), str(CIVIL_REGISTRY), "birth-support"
        ) == ("none", "")
    async with site.client(site.server(TAX_SERVER)) as tax:
        with pytest.raises(CallerNotAllowed):
            await tax.check(CITIZEN, str(BIRTH), str(CIVIL_REGISTRY), "birth-support")
    async with site.client() as operator:
        with pytest.raises(CallerNotAllowed):
            await operator.check(CITIZEN, str(BIRTH), str(CIVIL_REGISTRY), "birth-support")


async def test_a_replica_holds_its_members_consents_and_follows_every_change(
    site: ConsentSite,
) -> None:
    async with site.client() as client:
        mine, _ = await client.grant(detail())
        await client.grant(detail(provider=INCOME, services=(TAX_INCOME,)))
        follower = site.follow()
        replica = follower.replica
        await until(lambda: len(replica) == 1)
        assert replica.state(CITIZEN, BIRTH, civil_service(), "birth-support", NOW) == (
            "active",
            mine.id,
        )
        await client.change(mine.id, Change.PAUSE, subject=CITIZEN)
        await until(
            lambda: (
                replica.state(CITIZEN, BIRTH, civil_service(), "birth-support", NOW)[0] == "paused"
            )
        )
    assert len(replica) == 1  # the tax office's consent never reached the population registry


async def test_the_replica_hears_heartbeats_and_ages_when_the_service_is_gone(
    site: ConsentSite,
) -> None:
    follower = site.follow()
    await until(lambda: follower.replica.age() < 0.5)
    await asyncio.sleep(0.6)
    assert follower.replica.age() < 0.5  # heartbeats every 0.2 s keep it fresh
    await site.stop()
    await asyncio.sleep(1.0)
    assert follower.replica.age() > 0.8


async def test_the_replica_resumes_after_a_restart_and_misses_nothing(site: ConsentSite) -> None:
    follower = site.follow()
    async with site.client() as client:
        first, _ = await client.grant(detail())
        await until(lambda: len(follower.replica) == 1)
    await site.stop()
    # Changes made while the replica cannot hear: by another process on the same database.
    service = await site.start()
    connections = follower.connections
    await asyncio.to_thread(
        service.store.change,
        first.id,
        Change.REVOKE,
        actor="operator portal",
        now=dt.datetime.now(dt.UTC),
    )
    async with site.client() as client:
        second, _ = await client.grant(detail(subject=OTHER_CITIZEN))
    await until(lambda: len(follower.replica) == 2)
    await until(
        lambda: (
            follower.replica.state(CITIZEN, BIRTH, civil_service(), "birth-support", NOW)[0]
            == "revoked"
        )
    )
    assert follower.connections > connections - 1
    assert follower.replica.position == service.store.position()
    assert second.id


async def test_a_replica_ahead_of_the_service_starts_over(site: ConsentSite) -> None:
    async with site.client() as client:
        await client.grant(detail())
    replica = ConsentReplica()
    replica.position = 10**9  # e.g. the service's database was restored from a backup
    identity = site.server()
    follower = ReplicaFollower(replica, site.address, lambda: identity)
    follower.start()
    site.followers.append(follower)
    await until(lambda: len(replica) == 1)
    assert replica.position == 1


async def test_revocation_reaches_every_replica_within_a_second(site: ConsentSite) -> None:
    replicas = [site.follow(POPREG.server(f"ss{n}")).replica for n in (1, 2, 3)]
    service = civil_service()
    rounds = 40
    async with site.client() as client:
        consents = [(await client.grant(detail(subject=f"NIK:{n:016d}")))[0] for n in range(rounds)]
        await until(lambda: all(len(replica) == rounds for replica in replicas))
        delays = []
        for consent in consents:
            started = time.monotonic()
            await client.change(consent.id, Change.REVOKE, subject=consent.detail.subject)
            subject = consent.detail.subject
            await until(
                lambda s=subject: all(
                    replica.state(s, BIRTH, service, "birth-support", NOW)[0] == "revoked"
                    for replica in replicas
                ),
                seconds=5,
            )
            delays.append(time.monotonic() - started)
    delays.sort()
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    median = statistics.median(delays)
    print(f"revocation to replica: p50 {median * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    assert p99 < 1.0


async def test_a_client_that_cannot_reach_the_service_gets_consent_unavailable(
    tmp_path: Path,
) -> None:
    site = ConsentSite(tmp_path)  # never started
    async with ConsentClient(site.address, site.operator(), timeout=2) as client:
        with pytest.raises(ConsentUnavailable):
            await client.of_subject(CITIZEN)


async def test_the_service_on_postgresql_grants_and_feeds_replicas(
    tmp_path: Path, postgres_url: str
) -> None:
    site = ConsentSite(tmp_path)
    await site.start(postgres_url)
    try:
        follower = site.follow()
        async with site.client() as client:
            consent, receipt = await client.grant(detail(), request_id="pg-1")
            assert (await client.grant(detail(), request_id="pg-1"))[0].id == consent.id
            await until(lambda: len(follower.replica) == 1)
            await client.change(consent.id, Change.REVOKE, subject=CITIZEN)
        await until(
            lambda: (
                follower.replica.state(CITIZEN, BIRTH, civil_service(), "birth-support", NOW)[0]
                == "revoked"
            )
        )
        assert verify_receipt(receipt, [site.ca.certificate]).consent_id == consent.id
    finally:
        await site.close()


async def test_a_watch_cut_in_the_middle_of_the_stream_resumes_without_a_gap(
    site: ConsentSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 consents reach a new replica in batches (of 20 here); the service stops once some
    have arrived and starts again: the replica ends with every consent, none twice."""
    monkeypatch.setattr(consent_service, "WATCH_BATCH", 20)
    service = site.service
    assert service is not None
    now = dt.datetime.now(dt.UTC)
    for n in range(2000):
        await asyncio.to_thread(
            service.store.grant,
            detail(subject=f"NIK:{n:016d}"),
            actor="operator portal",
            now=now,
            sign=lambda *_: "",
        )
    follower = site.follow()
    await until(lambda: len(follower.replica) >= 500)
    await site.stop()
    cut_at = len(follower.replica)
    assert cut_at < 2000, "the whole stream arrived before the cut"
    restarted = await site.start()
    await until(lambda: len(follower.replica) == 2000, seconds=20)
    assert follower.replica.position == restarted.store.position() == 2000
    assert follower.connections >= 2


async def test_a_replica_that_followed_another_history_starts_over(site: ConsentSite) -> None:
    async with site.client() as client:
        await client.grant(detail())
        await client.grant(detail(subject=OTHER_CITIZEN))
    replica = ConsentReplica()
    replica.position, replica.fingerprint = 1, "from a database since restored"
    identity = site.server()
    follower = ReplicaFollower(replica, site.address, lambda: identity)
    follower.start()
    site.followers.append(follower)
    await until(lambda: len(replica) == 2)
    assert site.service is not None
    assert replica.fingerprint == site.service.store.fingerprint(replica.position)


def test_only_a_caught_up_message_makes_a_replica_fresh() -> None:
    clock = [100.0]
    replica = ConsentReplica(clock=lambda: clock[0])
    assert replica.age() == float("inf")
    replica.apply(consent_pb2.ConsentChanges(position=500, caught_up=False))
    assert replica.age() == float("inf")  # more was pending: not up to date yet
    replica.apply(consent_pb2.ConsentChanges(position=700, caught_up=True))
    clock[0] = 100.5
    assert replica.age() == 0.5
    assert replica.position == 700


async def test_an_operator_acts_for_the_consents_own_citizen_only(site: ConsentSite) -> None:
    async with site.client() as client:
        consent, _ = await client.grant(detail(), actor=f"citizen {CITIZEN}")
        with pytest.raises(CallerNotAllowed):
            await client.change(
                consent.id, Change.REVOKE, subject=CITIZEN, actor=f"citizen {OTHER_CITIZEN}"
            )
        with pytest.raises(CallerNotAllowed):
            await client.grant(detail(subject=CITIZEN), actor=f"citizen {OTHER_CITIZEN}")
        with pytest.raises(ConsentInvalid, match="subject: required"):
            await client.change(consent.id, Change.REVOKE, subject="")
        with pytest.raises(ConsentInvalid, match="subject: required"):
            await client.get(consent.id, subject="")
        with pytest.raises(ConsentInvalid, match="reason"):
            await client.change(consent.id, Change.PAUSE, subject=CITIZEN, reason="\x1b[2J")
        assert (await client.get(consent.id, subject=CITIZEN))[0].recorded is ConsentStatus.ACTIVE
