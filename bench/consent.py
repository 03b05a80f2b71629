"""The consent suite: what checking, granting and revoking consent costs.

    python -m bench.run --suite consent [--rounds 3] [--replica-consents 1000,100000,1000000]
                        [--store-consents 10000000] [--grants 300] [--gateways 10]
                        [--revocations 50]

Measured, in alternating rounds where it matters:

* **replica check**: ``ConsentReplica.state`` — what a provider security server does per
  exchange — for a citizen with a consent and for one without, as the replica holds 1 thousand
  to 1 million consents (one per citizen, the provider's own);
* **store check**: the consent service's ``Check`` query (a citizen's consents from the database,
  then the same decision) with 10 million consents in SQLite, for comparison: what a gateway
  would pay without its replica;
* **revocation propagation**: a consent service and ``gateways`` replicas following it (in this
  process, over mutual TLS on 127.0.0.1): from the revoke call until every replica refuses, one
  revocation after another;
* **grant throughput**: ``ConsentStore.grant`` (signed receipt, one transaction each) one after
  another and from 8 threads, on SQLite and on a throwaway PostgreSQL cluster.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import json
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Coroutine, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert

import pki
from bench._document import machine, reproduce, today
from bench.pki import Figures
from consent import (
    Change,
    Consent,
    ConsentClient,
    ConsentDetail,
    ConsentReplica,
    ConsentService,
    ConsentSettings,
    ConsentStatus,
    ConsentStore,
    ReplicaFollower,
    StatusChange,
    consent_state,
    sign_receipt,
)
from consent import _schema as tables
from pintu import free_port
from proto import MemberId, OperatorId
from registry import GlobalConfiguration, Member, SecurityServer, Service, StaticConfiguration
from tools.postgres import PostgresCluster

NAME = "consent"
TITLE = "Consent: checks, revocations and grants"
CHECK_TARGET_US = 50.0
PROPAGATION_TARGET_S = 1.0
NHIS = MemberId.parse("DEMO/PUB/NHIS")
WELFARE = MemberId.parse("DEMO/GOV/WELFARE")
SIGNER = MemberId.parse("DEMO/GOV/PINTU")
PROVIDER = NHIS.subsystem("eligibility")
CONSUMER = WELFARE.subsystem("birthsupport")
SERVICE_ID = PROVIDER.service("nhis.v1.Eligibility")
PURPOSE = "birth-support"
SERVICE = Service(
    SERVICE_ID,
    ("GetCoverage",),
    "Eligibility",
    personal_data=True,
    data_categories=("health",),
    purposes=(PURPOSE,),
    consent_required=True,
)
DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class ConsentBenchSettings:
    """How much the consent suite measures."""

    rounds: int = 3
    replica_consents: tuple[int, ...] = (1_000, 100_000, 1_000_000)
    store_consents: int = 10_000_000
    grants: int = 300
    gateways: int = 10
    revocations: int = 50


def _subject(n: int) -> str:
    return f"NIK:{n:016d}"


def _detail(n: int, now: dt.datetime) -> ConsentDetail:
    return ConsentDetail(
        subject=_subject(n),
        provider=PROVIDER,
        consumer=CONSUMER,
        purpose=PURPOSE,
        purpose_text="To decide on the birth-support application",
        valid_from=now - DAY,
        valid_until=now + DAY * 365,
        services=(SERVICE_ID,),
    )


def _configuration() -> GlobalConfiguration:
    return GlobalConfiguration.build(
        "DEMO",
        [
            Member(NHIS, "National Health Insurance Service", frozenset({"eligibility"})),
            Member(WELFARE, "Welfare", frozenset({"birthsupport"})),
        ],
        [SecurityServer(NHIS.server(f"ss{n}"), (f"127.0.0.1:{n + 1}",)) for n in range(100)],
        [SERVICE],
    )


# -- replica check ----------------------------------------------------------------------------


def _replica(count: int, now: dt.datetime) -> ConsentReplica:
    """A replica holding ``count`` active consents, one per citizen."""
    replica = ConsentReplica()
    history = (StatusChange(ConsentStatus.ACTIVE, now - DAY, "bench"),)
    template = _detail(0, now)
    replica.load(
        Consent(str(n), dataclasses.replace(template, subject=_subject(n)), history, n + 1)
        for n in range(count)
    )
    return replica


def _replica_round(replicas: dict[int, ConsentReplica], figures: Figures, now: dt.datetime) -> None:
    lookups = 20_000
    for count, replica in replicas.items():
        present = [_subject(random.randrange(count)) for _ in range(lookups)]
        absent = [_subject(count + n) for n in range(lookups)]
        for kind, subjects in (("with", present), ("without", absent)):
            started = time.perf_counter()
            for subject in subjects:
                replica.state(subject, CONSUMER, SERVICE, PURPOSE, now)
            figures.add((time.perf_counter() - started) / lookups, "replica", kind, count)
        state = replica.state(present[0], CONSUMER, SERVICE, PURPOSE, now)
        if state[0] != "active":
            raise SystemExit(f"bench: the replica answered {state} for a consenting citizen")


# -- store check --------------------------------------------------------------------------------


def _fill(url: str, count: int, now: dt.datetime) -> None:
    """``count`` consents (and their grant events) written straight into an empty store."""
    ConsentStore(url).close()  # the schema
    engine = create_engine(url)
    template = _detail(0, now).to_json()
    chunk = 100_000
    with engine.begin() as connection:
        for start in range(0, count, chunk):
            consents, events = [], []
            for n in range(start, min(count, start + chunk)):
                consent_id = str(uuid.UUID(int=n + 1))
                consents.append(
                    {
                        "id": consent_id,
                        "subject": _subject(n),
                        "provider_member": str(NHIS),
                        "detail": json.dumps({**template, "subject": _subject(n)}),
                        "receipt": "",
                        "request_id": None,
                        "created_at": now,
                        "valid_until": now + DAY * 365,
                        "position": n + 1,
                        "status": "active",
                    }
                )
                events.append(
                    {
                        "position": n + 1,
                        "consent_id": consent_id,
                        "status": "active",
                        "at": now,
                        "actor": "bench",
                        "reason": "granted",
                        "request_id": None,
                    }
                )
            connection.execute(insert(tables.consents), consents)
            connection.execute(insert(tables.events), events)
        connection.execute(tables.state.update().values(position=count))
    engine.dispose()


def _store_round(store: ConsentStore, count: int, figures: Figures, now: dt.datetime) -> None:
    lookups = 2_000
    subjects = [_subject(random.randrange(count)) for _ in range(lookups)]
    started = time.perf_counter()
    for subject in subjects:
        consent_state(store.of_subject(subject), CONSUMER, SERVICE, PURPOSE, now)
    figures.add((time.perf_counter() - started) / lookups, "store")


# -- revocation propagation --------------------------------------------------------------------


@dataclass
class _Site:
    ca: pki.CertificateAuthority
    folder: Path

    def identity(self, certificate_for: str) -> pki.TlsIdentity:
        key = pki.generate_key()
        now = dt.datetime.now(dt.UTC)
        if certificate_for == "operator":
            certificate = self.ca.issue_operator_certificate(
                OperatorId("bench"), key.public_key(), now=now, lifetime=DAY
            )
        else:
            certificate = self.ca.issue_server_certificate(
                NHIS.server(certificate_for), key.public_key(), now=now, lifetime=DAY
            )
        return pki.TlsIdentity(
            pki.key_pem(key),
            pki.certificate_pem(certificate),
            pki.certificate_pem(self.ca.certificate),
        )

    def settings(self, port: int) -> ConsentSettings:
        now = dt.datetime.now(dt.UTC)
        tls_key, signing_key = pki.generate_key(), pki.generate_key()
        tls = self.ca.issue_service_certificate(
            "consent",
            ["127.0.0.1"],
            tls_key.public_key(),
            now=now,
            lifetime=DAY,
            reserved=(pki.CONSENT_TLS_NAME,),
        )
        signer = self.ca.issue_signing_certificate(
            SIGNER, signing_key.public_key(), now=now, lifetime=DAY
        )
        return ConsentSettings(
            database=f"sqlite:///{self.folder / 'propagation.db'}",
            listen=f"127.0.0.1:{port}",
            tls=pki.TlsIdentity(
                pki.key_pem(tls_key),
                pki.certificate_pem(tls),
                pki.certificate_pem(self.ca.certificate),
            ),
            signing_key=signing_key,
            signing_chain=(signer,),
            registry=StaticConfiguration(_configuration()),
            operators=frozenset({OperatorId("bench")}),
            poll_seconds=0.2,
        )


def _same(identity: pki.TlsIdentity) -> pki.TlsIdentity:
    return identity


async def _propagation(site: _Site, settings: ConsentBenchSettings, figures: Figures) -> None:
    port = free_port()
    service = ConsentService(site.settings(port))
    await service.start()
    followers = []
    try:
        for n in range(settings.gateways):
            identity = site.identity(f"ss{n}")
            follower = ReplicaFollower(
                ConsentReplica(), f"127.0.0.1:{port}", functools.partial(_same, identity)
            )
            follower.start()
            followers.append(follower)
        now = dt.datetime.now(dt.UTC)
        async with ConsentClient(f"127.0.0.1:{port}", site.identity("operator")) as client:
            granted = [
                (await client.grant(_detail(n, now)))[0] for n in range(settings.revocations)
            ]
            deadline = time.monotonic() + 30
            while any(len(f.replica) < len(granted) for f in followers):
                if time.monotonic() > deadline:
                    raise SystemExit("bench: the replicas did not receive the grants")
                await asyncio.sleep(0.01)
            delays = []
            for consent in granted:
                subject = consent.detail.subject
                started = time.monotonic()
                await client.change(consent.id, Change.REVOKE, subject=subject)
                while any(
                    f.replica.state(subject, CONSUMER, SERVICE, PURPOSE, now)[0] != "revoked"
                    for f in followers
                ):
                    if time.monotonic() - started > 10:
                        raise SystemExit("bench: a revocation did not reach every replica")
                    await asyncio.sleep(0.001)
                delays.append(time.monotonic() - started)
        delays.sort()
        figures.add(statistics.median(delays), "propagation", "p50")
        figures.add(delays[min(len(delays) - 1, int(len(delays) * 0.99))], "propagation", "p99")
    finally:
        for follower in followers:
            await follower.stop()
        await service.stop(0)


# -- grant throughput --------------------------------------------------------------------------


def _grants(url: str, settings: ConsentBenchSettings, figures: Figures, backend: str) -> None:
    ca = pki.CertificateAuthority.create(
        "DEMO", now=dt.datetime.now(dt.UTC) - DAY, lifetime=DAY * 30
    )
    key = pki.generate_key()
    chain = (
        ca.issue_signing_certificate(
            SIGNER, key.public_key(), now=dt.datetime.now(dt.UTC), lifetime=DAY
        ),
    )

    def sign(consent_id: str, detail: ConsentDetail, at: dt.datetime) -> str:
        return sign_receipt(consent_id, detail, at, key, chain)

    store = ConsentStore(url)
    try:
        now = dt.datetime.now(dt.UTC)
        offset = random.randrange(10**12)
        details = [_detail(offset + n, now) for n in range(settings.grants * 2)]
        started = time.perf_counter()
        for detail in details[: settings.grants]:
            store.grant(detail, actor="bench", now=now, sign=sign)
        figures.add(settings.grants / (time.perf_counter() - started), "grants", backend, 1)
        lock = threading.Lock()
        remaining = iter(details[settings.grants :])

        def work() -> None:
            while True:
                with lock:
                    detail = next(remaining, None)
                if detail is None:
                    return
                store.grant(detail, actor="bench", now=now, sign=sign)

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(work) for _ in range(8)]:
                future.result()
        figures.add(settings.grants / (time.perf_counter() - started), "grants", backend, 8)
    finally:
        store.close()


def _postgres() -> Generator[str, None, None]:
    cluster = PostgresCluster.start()
    try:
        while True:
            yield cluster.create_schema()
    finally:
        cluster.stop()


def _bounded(measurement: Coroutine[Any, Any, None]) -> None:
    """Run ``measurement`` in a loop of its own; tasks the gRPC stack leaves behind get five
    seconds to end (they could otherwise hold the run up for good at the loop's close)."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(measurement)
    finally:
        left = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=5))
        loop.close()


def run(settings: ConsentBenchSettings, command: str) -> str:
    """Measure, and return the suite's section of docs/benchmarks.md."""
    figures = Figures()
    now = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="pintu-bench-consent-") as scratch:
        folder = Path(scratch)
        print(f"consent: filling a store with {settings.store_consents:,} consents", flush=True)
        started = time.monotonic()
        store_url = f"sqlite:///{folder / 'store.db'}"
        _fill(store_url, settings.store_consents, now)
        print(f"consent: filled in {time.monotonic() - started:,.0f} s", flush=True)
        store = ConsentStore(store_url)
        print("consent: building the replicas", flush=True)
        replicas = {count: _replica(count, now) for count in settings.replica_consents}
        site = _Site(
            pki.CertificateAuthority.create("DEMO", now=now - DAY, lifetime=DAY * 30), folder
        )
        schemas = _postgres()
        try:
            for index in range(settings.rounds):
                _replica_round(replicas, figures, now)
                _store_round(store, settings.store_consents, figures, now)
                _bounded(_propagation(site, settings, figures))
                _grants(f"sqlite:///{folder / f'grants-{index}.db'}", settings, figures, "SQLite")
                _grants(next(schemas), settings, figures, "PostgreSQL")
                largest = settings.replica_consents[-1]
                print(
                    f"consent: round {index + 1}/{settings.rounds}: replica check"
                    f" {figures.median('replica', 'with', largest) * 1e6:.1f} µs at"
                    f" {largest:,}, store check {figures.median('store') * 1e6:,.0f} µs,"
                    f" revocation p99 {figures.median('propagation', 'p99') * 1e3:.0f} ms",
                    flush=True,
                )
        finally:
            store.close()
            schemas.close()
    return _report(settings, figures, command)


def _report(settings: ConsentBenchSettings, figures: Figures, command: str) -> str:
    f = figures
    rows = [
        f"| {count:,} | {f.median('replica', 'with', count) * 1e6:.1f} "
        f"| {f.median('replica', 'without', count) * 1e6:.1f} |"
        for count in settings.replica_consents
    ]
    largest = settings.replica_consents[-1]
    check = f.median("replica", "with", largest) * 1e6
    p50, p99 = f.median("propagation", "p50"), f.median("propagation", "p99")
    grants = [
        f"| {backend} | {f.median('grants', backend, 1):,.0f}"
        f" | {f.median('grants', backend, 8):,.0f} |"
        for backend in ("SQLite", "PostgreSQL")
    ]
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            *reproduce(command),
            "",
            f"- date: {today()}",
            "- machine: " + machine() + " (shared; figures are noisy, so read medians)",
            f"- method: `bench/consent.py` says what each figure covers; {settings.rounds} rounds,"
            " every figure the median over them.",
            "",
            "| consents in the replica | check, citizen with a consent (µs) | check, citizen"
            " without (µs) |",
            "|---:|---:|---:|",
            *rows,
            "",
            f"A provider security server's check costs {check:.1f} µs with {largest:,} consents"
            f" in its replica (target {CHECK_TARGET_US:g} µs). The same check asked of the store"
            f" ({settings.store_consents:,} consents, SQLite) costs"
            f" {f.median('store') * 1e6:,.0f} µs.",
            "",
            f"Revocation to {settings.gateways} replicas (all of them refusing), over"
            f" {settings.revocations} revocations one after another: p50 {p50 * 1e3:.1f} ms,"
            f" p99 {p99 * 1e3:.1f} ms (target {PROPAGATION_TARGET_S:g} s). The service and the"
            " replicas share this process and its event loop.",
            "",
            "| grants per second | one after another | 8 threads |",
            "|---|---:|---:|",
            *grants,
            "",
            "Each grant signs its receipt (ES256) and commits one transaction.",
        ]
    )
