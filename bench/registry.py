"""Suite "registry": the global configuration at federation scale, from the registry's signed
snapshot to the look-ups a security server makes per exchange.

    python -m bench.run --suite registry [--rounds 3] [--members 10000] [--services 100000]
                                         [--lookup-services 100,1000,10000,100000]

1. **Registry side**: a federation of ``members`` members (one or two subsystems each, one
   security server each and a second for every tenth, each with an address and a certificate
   fingerprint) and ``services`` services spread over the subsystems, their descriptors taken
   from a few shared proto files. Timed: ``GlobalConfiguration.build`` from the parts, the import
   changes and their application in memory (``import_changes``, ``apply_changes``), the snapshot
   (``to_content``, ``sign_snapshot``), and the SQLite store: the whole federation imported as one
   batch (``RegistryStore.apply``), loaded back, the snapshot saved, and one more change.
2. **Snapshot size**: the signed bytes ``GET /global-configuration`` serves, and gzip's size
   for reference.
3. **Security server side**: ``SnapshotVerifier.verify`` (parse, check the signer, build the
   configuration) and a whole swap by ``ConfigurationClient.refresh``: fetch (from a stand-in for
   the distribution point), verify, accept, write the cache file, tell ``CurrentConfiguration``
   and ``PeerChannels``; for a new version and for the same version re-signed.
4. **Look-ups per exchange** against the configuration in use, at each of ``lookup-services``
   sizes (the federation scaled down, members in proportion): ns per look-up of random
   registered identifiers, and the ratio between the largest and the smallest size; for
   exchanges spread over the whole federation, and for a small working set of exchanges (which
   tells the cost of a look-up from the cost of the CPU's cache misses).

Keys (a root, an issuing CA, the configuration-signing key) are generated at run time. Every
figure is the median over the rounds; look-ups are taken in several runs per round and size,
each size visited in every round. The suite reaches into two of the gateway's private modules
(``CurrentConfiguration``, ``PeerChannels``): what a security server does with a new
configuration is what it measures.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import gzip
import hashlib
import random
import sqlite3
import tempfile
import time
import timeit
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cryptography
import httpx
import sqlalchemy
from cryptography import x509
from google.protobuf import __version__ as protobuf_version
from google.protobuf import descriptor_pb2
from google.protobuf.internal import api_implementation

import pki
from bench._document import machine, reproduce, today
from bench.pki import Figures, _filesystem
from gateway import Limits
from gateway._channels import PeerChannels
from gateway._configuration import CurrentConfiguration
from proto import MemberId, RegistryId, SecurityServerId, ServiceId, SubsystemId
from proto.pintu.v1 import registry_pb2
from registry import (
    Anchor,
    ConfigurationClient,
    GlobalConfiguration,
    GlobalGroup,
    Member,
    RegistryStore,
    SecurityServer,
    Service,
    SnapshotVerifier,
    StaticConfiguration,
    apply_changes,
    import_changes,
    sign_snapshot,
    snapshot_tag,
    to_content,
)

NAME = "registry"
INSTANCE = "DEMO"
VALIDITY = dt.timedelta(hours=1)  # the registry's default snapshot validity
SEED = 20_000  # the federation is the same in every run
LOOKUPS = 50_000  # per pattern, size, look-up and round, in LOOKUP_RUNS runs
LOOKUP_RUNS = 5
# The look-ups' two patterns: every exchange between random parties of the whole federation, or
# between the parties of WORKING_SET exchanges drawn at random once (a security server that
# deals with few parties, whose entries of the configuration stay in the CPU's caches).
PATTERNS = ("spread", "working set")
WORKING_SET = 100
# A working-set ratio (largest size to smallest) up to this reads as "the same cost".
FLAT = 1.25
ACTOR = "operator bench"
DISTRIBUTION = "https://registry.bench.invalid/global-configuration"

# -- the federation --------------------------------------------------------------------------

# Member classes, their share of the members and what their names say.
CLASSES = (("GOV", 4, "Agency"), ("MUN", 3, "Municipality"), ("COM", 2, "Company"))
SUBSYSTEM_CODES = ("records", "casework", "portal", "payments", "archive")
AREAS = ("population", "tax", "health", "education", "transport", "business", "social", "land")
# Service kinds offered in every area: (name, methods, personal data, consent asked).
KINDS = (
    ("Records", ("Get", "List", "Search"), True, False),
    ("Applications", ("Submit", "GetStatus", "Withdraw"), True, True),
    ("Payments", ("GetBalance", "ListPayments"), True, False),
    ("Register", ("Lookup", "ListChanges"), False, False),
    ("Statistics", ("GetAggregate", "ListSeries"), False, False),
)
CATEGORIES = {
    "population": ("identity", "address", "family"),
    "tax": ("identity", "income", "assets"),
    "health": ("identity", "health"),
    "education": ("identity", "education"),
    "transport": ("identity", "vehicles", "licences"),
    "business": ("identity", "ownership"),
    "social": ("identity", "income", "benefits"),
    "land": ("identity", "property"),
}
PURPOSES = ("benefit-check", "tax-audit", "service-delivery", "statistics", "law-enforcement")
COMMON_FILE = "pintu_bench/common/v1/common.proto"
T = TypeVar("T")


@dataclass(frozen=True)
class _Kind:
    """One service kind of one area, as many providers offer it."""

    name: str  # package.Service
    file: str
    methods: tuple[str, ...]
    description: str
    personal_data: bool
    data_categories: tuple[str, ...]
    purposes: tuple[str, ...]
    consent_required: bool
    legal_basis: str


def _catalogue() -> tuple[tuple[bytes, ...], list[_Kind]]:
    """The shared descriptor files (one per area, importing one common file) and the service
    kinds they define."""
    common = descriptor_pb2.FileDescriptorProto(
        name=COMMON_FILE, package="pintu_bench.common.v1", syntax="proto3"
    )
    for message in ("Query", "Record", "Page", "Status"):
        common.message_type.add(name=message)
    files = [common]
    kinds = []
    for number, area in enumerate(AREAS):
        file = descriptor_pb2.FileDescriptorProto(
            name=f"{area}/v1/{area}.proto",
            package=f"{area}.v1",
            syntax="proto3",
            dependency=[COMMON_FILE],
        )
        for position, (kind, methods, personal, consent) in enumerate(KINDS):
            service = file.service.add(name=kind)
            for method in methods:
                service.method.add(
                    name=method,
                    input_type=".pintu_bench.common.v1.Query",
                    output_type=".pintu_bench.common.v1.Record",
                )
            categories = CATEGORIES[area] if personal else ()
            kinds.append(
                _Kind(
                    f"{area}.v1.{kind}",
                    file.name,
                    methods,
                    f"{kind} of the {area} domain, as the provider keeps them",
                    personal,
                    categories,
                    tuple(PURPOSES[(number + position + k) % len(PURPOSES)] for k in (0, 1)),
                    consent,
                    f"{area.capitalize()} Act, art. {10 + position}" if personal else "",
                )
            )
        files.append(file)
    return tuple(f.SerializeToString(deterministic=True) for f in files), kinds


@dataclass(frozen=True)
class _Parts:
    """A federation's parts, as the registry's operators would put them in."""

    members: list[Member]
    servers: list[SecurityServer]
    services: list[Service]
    groups: list[GlobalGroup]
    descriptor_files: tuple[bytes, ...]

    def build(self) -> GlobalConfiguration:
        return GlobalConfiguration.build(
            INSTANCE,
            self.members,
            self.servers,
            self.services,
            self.groups,
            descriptor_files=self.descriptor_files,
        )


def _largest(members: int) -> int:
    """The most services ``members`` members can offer: every kind once per subsystem."""
    return (members + (members + 1) // 2) * len(AREAS) * len(KINDS)


def _federation(members: int, services: int) -> _Parts:
    """``members`` members (every other with a second subsystem; a second security server for
    every tenth) and ``services`` services spread evenly over the subsystems."""
    chooser = random.Random(SEED)
    files, kinds = _catalogue()
    classes = [code for code, share, _ in CLASSES for _ in range(share)]
    labels = {code: label for code, _, label in CLASSES}
    parts: list[Member] = []
    servers: list[SecurityServer] = []
    subsystems: list[SubsystemId] = []
    for number in range(members):
        member_class = chooser.choice(classes)
        member = MemberId(INSTANCE, member_class, f"{70_000_000 + number}")
        codes = chooser.sample(SUBSYSTEM_CODES, 1 if number % 2 else 2)
        parts.append(Member(member, f"{labels[member_class]} no. {number}", frozenset(codes)))
        subsystems += [member.subsystem(code) for code in sorted(codes)]
        for server in ("ss1", "ss2") if number % 10 == 0 else ("ss1",):
            identifier = member.server(server)
            host = f"{server}.{member.member_code}.{member_class.lower()}.example.gov"
            servers.append(
                SecurityServer(
                    identifier,
                    (f"{host}:7101",),
                    frozenset({hashlib.sha256(f"certificate of {identifier}".encode()).digest()}),
                )
            )
    # Each subsystem offers kinds in turn from its own starting point, so none offers one twice.
    start = [chooser.randrange(len(kinds)) for _ in subsystems]
    offered = []
    for index in range(services):
        slot, turn = index % len(subsystems), index // len(subsystems)
        kind = kinds[(start[slot] + turn) % len(kinds)]
        offered.append(
            Service(
                subsystems[slot].service(kind.name),
                kind.methods,
                kind.description,
                personal_data=kind.personal_data,
                data_categories=kind.data_categories,
                purposes=kind.purposes,
                consent_required=kind.consent_required,
                legal_basis=kind.legal_basis,
                descriptor_file=kind.file,
            )
        )
    groups = [
        GlobalGroup(
            f"all-{label.lower()}-members",
            f"Every {label.lower()}'s first subsystem",
            frozenset(
                member.id.subsystem(min(member.subsystems))
                for member in parts
                if member.id.member_class == code
            ),
        )
        for code, _, label in CLASSES
    ]
    return _Parts(parts, servers, offered, groups, files)


# -- keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Keys:
    """The federation's root, the registry's signing key and chain, a server's TLS identity."""

    root: x509.Certificate
    signing_key: pki.PrivateKey
    chain: tuple[x509.Certificate, ...]
    server_tls: pki.TlsIdentity


def _keys(now: dt.datetime) -> _Keys:
    """A root, an issuing CA under it, and the configuration-signing certificate it issues, as a
    federation's CA hands them to the registry (the chain ends with the issuing CA)."""
    lifetime = dt.timedelta(days=365)
    root = pki.CertificateAuthority.create(INSTANCE, now=now, lifetime=lifetime * 10)
    issuing_key = pki.generate_key()
    issuing = pki.CertificateAuthority(
        issuing_key,
        root.issue_intermediate(
            "Pintu issuing CA (bench)", issuing_key.public_key(), now=now, lifetime=lifetime * 5
        ),
    )
    signing_key = pki.generate_key()
    signing = issuing.issue_configuration_signing_certificate(
        RegistryId(INSTANCE), signing_key.public_key(), now=now, lifetime=lifetime
    )
    server_key = pki.generate_key()
    server = issuing.issue_server_certificate(
        MemberId(INSTANCE, "GOV", "BENCH").server("ss1"),
        server_key.public_key(),
        now=now,
        lifetime=lifetime,
    )
    return _Keys(
        root.certificate,
        signing_key,
        (signing, issuing.certificate),
        pki.TlsIdentity.build(server_key, [server, issuing.certificate], [root.certificate]),
    )


def _sign(
    keys: _Keys, configuration: GlobalConfiguration, version: int, built_at: dt.datetime
) -> bytes:
    content = to_content(
        configuration, version=version, built_at=built_at, expires_at=built_at + VALIDITY
    )
    return sign_snapshot(content, keys.signing_key, keys.chain)


def _say(text: str) -> None:
    print(f"registry: {text}", flush=True)


def _timed(figures: Figures, key: str, operation: Callable[[], T]) -> T:
    """Run ``operation`` once; record its seconds as this round's ``key``."""
    began = time.perf_counter()
    result = operation()
    figures.add(time.perf_counter() - began, key)
    return result


# -- 1. and 2. the registry side -------------------------------------------------------------


def _registry_round(
    parts: _Parts,
    keys: _Keys,
    version: int,
    now: dt.datetime,
    scratch: Path,
    figures: Figures,
) -> tuple[GlobalConfiguration, bytes, list[registry_pb2.RegistryChange]]:
    """One round on the registry's side: the configuration, its signed snapshot (``version``),
    and the import changes."""
    configuration = _timed(figures, "build", parts.build)
    changes = _timed(figures, "import_changes", lambda: import_changes(configuration))
    empty = GlobalConfiguration.build(INSTANCE, [], [], [])
    applied = _timed(figures, "apply_changes", lambda: apply_changes(empty, changes))
    if len(applied.services) != len(parts.services):
        raise SystemExit(f"bench: the import put {len(applied.services)} services in")
    content = _timed(
        figures,
        "to_content",
        lambda: to_content(configuration, version=version, built_at=now, expires_at=now + VALIDITY),
    )
    blob = _timed(
        figures, "sign_snapshot", lambda: sign_snapshot(content, keys.signing_key, keys.chain)
    )

    database = scratch / f"registry-{version}.db"
    store = RegistryStore(f"sqlite:///{database}", INSTANCE)  # migrations: not timed
    try:
        _timed(
            figures,
            "store_import",
            lambda: store.apply(changes, actor=ACTOR, reason="import", now=now),
        )
        loaded = _timed(figures, "store_load", store.load)
        if len(loaded[1].services) != len(parts.services):
            raise SystemExit(f"bench: the store loaded {len(loaded[1].services)} services")
        _timed(
            figures,
            "store_save",
            lambda: store.save_snapshot(version, blob, built_at=now, expires_at=now + VALIDITY),
        )
        # What a security server's certificate renewal asks of the registry: one server, one
        # new fingerprint (RegistryService's RegisterCertificate).
        server = parts.servers[len(parts.servers) // 2]
        renewal = registry_pb2.RegistryChange(
            put_security_server=registry_pb2.RegisteredServer(
                id=server.id.to_proto(),
                addresses=list(server.addresses),
                certificate_sha256=[hashlib.sha256(f"renewed {version}".encode()).digest()],
            )
        )
        _timed(
            figures,
            "store_change",
            lambda: store.apply([renewal], actor=ACTOR, reason="renewal", now=now),
        )
    finally:
        store.close()
        for leftover in scratch.glob(f"{database.name}*"):
            leftover.unlink()
    return configuration, blob, changes


# -- 3. the security server side -------------------------------------------------------------


class _Distribution:
    """Stands in for the registry's ``GET /global-configuration``: the latest blob, its ETag,
    and 304 for a matching ``If-None-Match``, as ``RegistryService.http_app`` answers."""

    def __init__(self) -> None:
        self.blob = b""

    def handle(self, request: httpx.Request) -> httpx.Response:
        tag = snapshot_tag(self.blob)
        headers = {"ETag": f'"{tag}"', "Cache-Control": "no-cache"}
        asked = request.headers.get("if-none-match", "")
        if tag in {value.strip().strip('"') for value in asked.split(",")}:
            return httpx.Response(304, headers=headers)
        return httpx.Response(
            200,
            content=self.blob,
            headers={**headers, "Content-Type": "application/x-protobuf"},
        )


@dataclass
class _Gateway:
    """A security server's configuration machinery, wired as ``SecurityServer.start`` wires it."""

    client: ConfigurationClient
    current: CurrentConfiguration
    peers: PeerChannels
    distribution: _Distribution


async def _gateway(keys: _Keys, first: bytes, now: dt.datetime, scratch: Path) -> _Gateway:
    distribution = _Distribution()
    distribution.blob = first
    anchor = Anchor(INSTANCE, (DISTRIBUTION,), "registry.bench.invalid:7400", (keys.root,))
    client = ConfigurationClient(
        anchor,
        scratch / "global-configuration.bin",
        clock=lambda: now,
        http=httpx.AsyncClient(transport=httpx.MockTransport(distribution.handle)),
    )
    if not await client.refresh():
        raise SystemExit("bench: the security server did not take its first configuration")
    current = CurrentConfiguration(client)
    peers = PeerChannels(current.configuration, keys.server_tls, Limits())

    async def reconfigured(configuration: GlobalConfiguration) -> None:
        peers.replace_configuration(configuration)

    current.subscribe(reconfigured)
    return _Gateway(client, current, peers, distribution)


async def _swap(gateway: _Gateway, blob: bytes, key: str, figures: Figures) -> None:
    gateway.distribution.blob = blob
    longest = 0.0
    running = True

    async def ticker() -> None:
        # What an exchange waiting on the event loop would see: the longest pause between two
        # wake-ups of a task that asks to run every millisecond.
        nonlocal longest
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.001)
            tick = time.perf_counter()
            longest = max(longest, tick - last)
            last = tick

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    began = time.perf_counter()
    changed = await gateway.client.refresh()
    figures.add(time.perf_counter() - began, key)
    running = False
    await ticking
    figures.add(longest, f"{key}_stall")
    if not changed or gateway.current.configuration is not gateway.client.configuration:
        raise SystemExit(f"bench: the security server did not swap ({key})")


async def _gateway_round(
    gateway: _Gateway,
    keys: _Keys,
    configuration: GlobalConfiguration,
    blob: bytes,
    now: dt.datetime,
    figures: Figures,
) -> None:
    """Verify the round's snapshot, swap to it (a new version), then to the same version
    re-signed at half its validity, as the registry re-signs."""
    verifier = SnapshotVerifier(INSTANCE, (keys.root,))
    _timed(figures, "verify", lambda: verifier.verify(blob, now=now))
    await _swap(gateway, blob, "swap_new", figures)
    version = gateway.client.configuration.version
    again = _sign(keys, configuration, version, now + VALIDITY / 2)
    await _swap(gateway, again, "swap_resigned", figures)


def _memory(keys: _Keys, blob: bytes, now: dt.datetime) -> tuple[float, float]:
    """(MiB the verified configuration keeps, MiB at the peak of verification), by tracemalloc."""
    verifier = SnapshotVerifier(INSTANCE, (keys.root,))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        verified = verifier.verify(blob, now=now)
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del verified
    return (kept - before) / 2**20, (peak - before) / 2**20


# -- 4. look-ups per exchange ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Exchange:
    """What one exchange looks up: identifiers made anew for each exchange (as the provider's
    ``from_proto`` makes them from the exchange header), so each look-up hashes them and
    compares them with the configuration's own."""

    provider: SubsystemId
    client: SubsystemId
    peer: SecurityServerId
    fingerprint: bytes
    service: ServiceId
    method: str


def _exchanges(
    configuration: GlobalConfiguration, count: int, seed: int, distinct: int | None
) -> list[_Exchange]:
    """``count`` exchanges between random registered parties, for random registered services:
    each drawn anew, or from ``distinct`` drawn once."""
    chooser = random.Random(seed)
    services = list(configuration.services.values())
    subsystems = configuration.subsystems()

    def draw() -> tuple[Service, SubsystemId, SecurityServer, str]:
        service = chooser.choice(services)
        client = chooser.choice(subsystems)
        peer = chooser.choice(configuration.servers_of(client.member))
        return service, client, peer, chooser.choice(service.methods)

    drawn = None if distinct is None else [draw() for _ in range(distinct)]
    exchanges = []
    for _ in range(count):
        service, client, peer, method = draw() if drawn is None else chooser.choice(drawn)
        exchanges.append(
            _Exchange(
                SubsystemId.from_proto(service.id.provider.to_proto()),
                SubsystemId.from_proto(client.to_proto()),
                SecurityServerId.from_proto(peer.id.to_proto()),
                bytes(bytearray(min(peer.certificates))),
                ServiceId.from_proto(service.id.to_proto()),
                method,
            )
        )
    return exchanges


LookUp = Callable[[CurrentConfiguration, float, Sequence[_Exchange]], None]


def _missing(what: object) -> SystemExit:
    return SystemExit(f"bench: a look-up found nothing for {what}")


def _iteration(current: CurrentConfiguration, now: float, exchanges: Sequence[_Exchange]) -> None:
    for exchange in exchanges:
        if not exchange.provider:
            raise _missing(exchange)


def _has_subsystem(
    current: CurrentConfiguration, now: float, exchanges: Sequence[_Exchange]
) -> None:
    conf = current.configuration
    for exchange in exchanges:
        if not conf.has_subsystem(exchange.provider):
            raise _missing(exchange.provider)


def _servers_for(current: CurrentConfiguration, now: float, exchanges: Sequence[_Exchange]) -> None:
    conf = current.configuration
    for exchange in exchanges:
        if not conf.servers_for(exchange.provider):
            raise _missing(exchange.provider)


def _peer(current: CurrentConfiguration, now: float, exchanges: Sequence[_Exchange]) -> None:
    conf = current.configuration
    for exchange in exchanges:
        registered = conf.security_servers.get(exchange.peer)
        if registered is None or exchange.fingerprint not in registered.certificates:
            raise _missing(exchange.peer)


def _service(current: CurrentConfiguration, now: float, exchanges: Sequence[_Exchange]) -> None:
    conf = current.configuration
    for exchange in exchanges:
        registered = conf.services.get(exchange.service)
        if registered is None or exchange.method not in registered.methods:
            raise _missing(exchange.service)


def _consumer(current: CurrentConfiguration, now: float, exchanges: Sequence[_Exchange]) -> None:
    for exchange in exchanges:
        conf = current.usable(now)
        if not conf.has_subsystem(exchange.provider):
            raise _missing(exchange.provider)


def _provider(current: CurrentConfiguration, now: float, exchanges: Sequence[_Exchange]) -> None:
    for exchange in exchanges:
        conf = current.usable(now)
        registered = conf.security_servers.get(exchange.peer)
        if registered is None or exchange.fingerprint not in registered.certificates:
            raise _missing(exchange.peer)
        if not conf.has_subsystem(exchange.client):
            raise _missing(exchange.client)
        service = conf.services.get(exchange.service)
        if service is None or exchange.method not in service.methods:
            raise _missing(exchange.service)


# (key, what the row says, the function)
LOOKUP_ROWS: tuple[tuple[str, str, LookUp], ...] = (
    (
        "iteration",
        "the loop alone: next exchange, one attribute (included in every row)",
        _iteration,
    ),
    (
        "has_subsystem",
        "`has_subsystem(provider)`: consumer, every exchange (and the provider, for the client)",
        _has_subsystem,
    ),
    (
        "servers_for",
        "`servers_for(provider)`: consumer, the first exchange to a provider after each swap "
        "(then `PeerChannels` routes from its own cache)",
        _servers_for,
    ),
    (
        "peer",
        "`security_servers.get(peer)` and its certificate's SHA-256 `in` the registered ones: "
        "provider",
        _peer,
    ),
    (
        "service",
        "`services.get(service)` and the method `in` its methods: provider",
        _service,
    ),
    (
        "consumer",
        "**consumer, per exchange**: `usable(now)`, `has_subsystem(provider)`",
        _consumer,
    ),
    (
        "provider",
        "**provider, per exchange**: `usable(now)`, peer and certificate, "
        "`has_subsystem(client)`, service and method",
        _provider,
    ),
)


@dataclass(frozen=True)
class _Sized:
    """A configuration in use by a security server, and exchanges to look up in it."""

    services: int
    members: int
    current: CurrentConfiguration
    runs: dict[str, list[list[_Exchange]]]  # by pattern


def _members_at(size: int, settings: RegistryBenchSettings) -> int:
    """The members of the federation scaled down (or up) to ``size`` services."""
    return max(1, round(size * settings.members / settings.services))


def _sized(
    size: int,
    settings: RegistryBenchSettings,
    keys: _Keys,
    full: GlobalConfiguration,
    now: dt.datetime,
) -> _Sized:
    """The configuration of ``size`` services as a security server holds it (signed and
    verified: the full one is the one the rounds verified)."""
    members = _members_at(size, settings)
    if size == settings.services:
        configuration = full
    else:
        blob = _sign(keys, _federation(members, size).build(), 1, now)
        configuration = SnapshotVerifier(INSTANCE, (keys.root,)).verify(blob, now=now).configuration
    per_run = LOOKUPS // LOOKUP_RUNS
    runs = {}
    for pattern, distinct in zip(PATTERNS, (None, WORKING_SET), strict=True):
        everything = _exchanges(configuration, per_run * LOOKUP_RUNS, size, distinct)
        runs[pattern] = [everything[i * per_run : (i + 1) * per_run] for i in range(LOOKUP_RUNS)]
    return _Sized(size, members, CurrentConfiguration(StaticConfiguration(configuration)), runs)


def _lookups(sizes: list[_Sized], rounds: int, now: float, figures: Figures) -> None:
    """Every look-up at every size in every round (sizes in turn, starting from a different one
    each round), each in LOOKUP_RUNS runs over different exchanges; timeit's way (no GC)."""
    for index in range(rounds):
        start = index % len(sizes)
        for sized in sizes[start:] + sizes[:start]:
            for pattern in PATTERNS:
                for key, _, lookup in LOOKUP_ROWS:
                    for exchanges in sized.runs[pattern]:
                        timer = timeit.Timer(
                            functools.partial(lookup, sized.current, now, exchanges)
                        )
                        figures.add(
                            timer.timeit(1) * 1e9 / len(exchanges),
                            "lookup",
                            pattern,
                            sized.services,
                            key,
                        )
        _say(
            f"round {index + 1}/{rounds} look-ups, provider per exchange: "
            + ", ".join(
                f"{s.services:,} services "
                + " / ".join(
                    f"{figures.median('lookup', pattern, s.services, 'provider'):,.0f}"
                    for pattern in PATTERNS
                )
                + " ns"
                for s in sizes
            )
        )


# -- the suite -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistryBenchSettings:
    """How large the registry suite's federation is, and how often it measures (not to be
    confused with ``registry.RegistrySettings``, the registry service's)."""

    rounds: int = 3
    members: int = 10_000
    services: int = 100_000
    lookup_services: tuple[int, ...] = (100, 1_000, 10_000, 100_000)


async def _measure(
    settings: RegistryBenchSettings, keys: _Keys, now: dt.datetime, scratch: Path, figures: Figures
) -> tuple[_Parts, GlobalConfiguration, bytes, list[registry_pb2.RegistryChange]]:
    began = time.perf_counter()
    parts = _federation(settings.members, settings.services)
    _say(
        f"{len(parts.members):,} members, {len(parts.servers):,} security servers and "
        f"{len(parts.services):,} services made in {time.perf_counter() - began:.1f} s"
    )
    # The security server starts with version 1; round r brings version r + 2.
    gateway = await _gateway(keys, _sign(keys, parts.build(), 1, now), now, scratch)
    try:
        for index in range(settings.rounds):
            configuration, blob, changes = _registry_round(
                parts, keys, index + 2, now, scratch, figures
            )
            await _gateway_round(gateway, keys, configuration, blob, now, figures)
            _say(
                f"round {index + 1}/{settings.rounds}: build to signed bytes "
                f"{figures.median('to_content') + figures.median('sign_snapshot'):.2f} s, "
                f"store import {figures.median('store_import'):.1f} s, "
                f"verify {figures.median('verify'):.2f} s, "
                f"swap {figures.median('swap_new'):.2f} s"
            )
        in_use = gateway.client.configuration
    finally:
        await gateway.client.stop()
        await gateway.peers.close()
    return parts, in_use, blob, changes


def run(settings: RegistryBenchSettings, command: str) -> str:
    """Measure, and return the suite's section of docs/benchmarks.md (``command`` reproduces it)."""
    if settings.services > _largest(settings.members):
        raise SystemExit(
            f"bench: {settings.members} members offer at most {_largest(settings.members)} "
            "services (every kind once per subsystem)"
        )
    sizes = sorted(set(settings.lookup_services))
    if any(size > _largest(_members_at(size, settings)) for size in sizes):
        raise SystemExit("bench: --lookup-services: too many services for the members at a size")
    figures = Figures()
    now = dt.datetime.now(dt.UTC)
    keys = _keys(now)
    with tempfile.TemporaryDirectory(prefix="pintu-bench-registry-") as folder:
        scratch = Path(folder)
        parts, in_use, blob, changes = asyncio.run(_measure(settings, keys, now, scratch, figures))
        filesystem = _filesystem(scratch)
    kept, peak = _memory(keys, blob, now)
    request = len(registry_pb2.ChangeRequest(changes=changes).SerializeToString())
    compressed = len(gzip.compress(blob, compresslevel=6))
    sized = [_sized(size, settings, keys, in_use, now) for size in sizes]
    _lookups(sized, settings.rounds, now.timestamp(), figures)
    return _report(
        settings,
        figures,
        parts,
        sized,
        _Sizes(len(blob), compressed, len(changes), request, kept, peak),
        filesystem,
        command,
    )


@dataclass(frozen=True)
class _Sizes:
    snapshot: int
    gzipped: int
    changes: int
    change_request: int
    kept_mib: float
    peak_mib: float


def _cache() -> str:
    """The data caches of the first CPU (from sysfs), e.g. "L1 32 KiB, L2 1 MiB, L3 32 MiB"."""
    found = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if kind == "Instruction" or not size.endswith("K"):
            continue
        kib = int(size[:-1])
        found.append((level, f"{kib // 1024} MiB" if kib >= 1024 else f"{kib} KiB"))
    if not found:
        return "cache sizes unknown"
    return "caches: " + ", ".join(f"L{level} {size}" for level, size in sorted(found))


def _ms(seconds: float) -> str:
    """Milliseconds, with a decimal below 100."""
    milliseconds = seconds * 1e3
    return f"{milliseconds:,.0f}" if milliseconds >= 100 else f"{milliseconds:.1f}"


def _report(
    settings: RegistryBenchSettings,
    figures: Figures,
    parts: _Parts,
    sized: list[_Sized],
    sizes: _Sizes,
    filesystem: str,
    command: str,
) -> str:
    f = figures
    rounds = settings.rounds
    subsystems = sum(len(m.subsystems) for m in parts.members)
    personal = sum(s.personal_data for s in parts.services)
    group_members = sum(len(g.members) for g in parts.groups)
    kinds = len(AREAS) * len(KINDS)
    snapshot = f.median("to_content") + f.median("sign_snapshot")
    lines = [
        f"## Registry: the global configuration at {settings.members:,} members and "
        f"{settings.services:,} services",
        "",
        *reproduce(command),
        "",
        f"- date: {today()}",
        "- machine: "
        + machine(
            f"protobuf {protobuf_version} ({api_implementation.Type()})",
            f"cryptography {cryptography.__version__}",
            f"SQLAlchemy {sqlalchemy.__version__}",
            f"SQLite {sqlite3.sqlite_version}",
        )
        + " (shared; figures are noisy, so read medians and ratios)",
        f"- federation: {len(parts.members):,} members ({subsystems:,} subsystems, one or two "
        f"each), {len(parts.servers):,} security servers (one per member, a second for every "
        f"tenth; one address and one certificate fingerprint each), {len(parts.services):,} "
        f"services spread evenly over the subsystems, {len(parts.groups)} global groups "
        f"({group_members:,} memberships). The services are {kinds} kinds "
        f"({len(AREAS)} areas, {len(KINDS)} in each: records, applications, payments, register, "
        f"statistics) with two or three methods each; {personal:,} handle personal data, with data "
        "categories, purposes, a legal basis and, for applications, consent. Their descriptors "
        f"come from {len(parts.descriptor_files)} shared proto files (one per area, each "
        "importing one common file), not one file per service. Names and facts repeat per "
        "kind, so the snapshot compresses better than a real one would.",
        "- method: the real code in one process; keys generated at run time (ECDSA P-256: a "
        "root, an issuing CA, the configuration-signing certificate; the snapshot carries the "
        f"signing certificate and the issuing CA). {rounds} round{'s' if rounds != 1 else ''}, "
        "each timing every step once on a new snapshot version (the SQLite store in a new "
        f"file on {filesystem}); every figure is the median over the rounds.",
        "",
        "### 1. Registry: from the configuration to signed bytes, and the store",
        "",
        "| step | ms |",
        "|---|---:|",
        f"| `GlobalConfiguration.build`: check and index the parts | {_ms(f.median('build'))} |",
        f"| `to_content`: the configuration as a `GlobalConfigurationContent` "
        f"| {_ms(f.median('to_content'))} |",
        f"| `sign_snapshot`: serialize (deterministic), sign, wrap "
        f"| {_ms(f.median('sign_snapshot'))} |",
        f"| **snapshot build: configuration → signed bytes** (`to_content` + `sign_snapshot`; "
        f"what the registry does after every change and at half the validity) "
        f"| **{_ms(snapshot)}** |",
        f"| `import_changes`: the federation as {sizes.changes:,} changes "
        "(`pintu registry import`'s side) "
        f"| {_ms(f.median('import_changes'))} |",
        f"| `apply_changes`: those changes onto an empty configuration, in memory "
        f"| {_ms(f.median('apply_changes'))} |",
        f"| `RegistryStore.apply`: the whole import as one batch into SQLite (loads, applies, "
        f"writes every row, journals) | {_ms(f.median('store_import'))} |",
        f"| `RegistryStore.load`: the whole registry back (a registry starting, or following "
        f"another's change) | {_ms(f.median('store_load'))} |",
        f"| `RegistryStore.save_snapshot` | {_ms(f.median('store_save'))} |",
        f"| `RegistryStore.apply` of one change on the full registry (a security server's "
        f"renewed certificate; the store keeps the content it last wrote, so it checks the "
        f"whole new content but reloads nothing) | {_ms(f.median('store_change'))} |",
        "",
        f"The import batch, serialized as one `ChangeRequest` (what `pintu registry import` "
        f"sends; every service registration carries its descriptor files): "
        f"{sizes.change_request:,} bytes ({sizes.change_request / 2**20:,.1f} MiB).",
        "",
        "### 2. Snapshot size",
        "",
        "| form | bytes | MiB | bytes per service |",
        "|---|---:|---:|---:|",
        f"| signed snapshot, as `GET /global-configuration` serves it (no content encoding) "
        f"| {sizes.snapshot:,} | {sizes.snapshot / 2**20:,.1f} "
        f"| {sizes.snapshot / len(parts.services):,.0f} |",
        f"| gzip (level 6), for reference: not served "
        f"| {sizes.gzipped:,} | {sizes.gzipped / 2**20:,.1f} "
        f"| {sizes.gzipped / len(parts.services):,.1f} |",
        "",
        "### 3. Security server: verify, load and swap",
        "",
        "The swaps run `ConfigurationClient.refresh` against a stand-in for the distribution "
        "point (httpx `MockTransport`, answering as `RegistryService` does), so no network time "
        "is included; the client, `CurrentConfiguration` and `PeerChannels` are wired as "
        "`SecurityServer.start` wires them (no peer channels open: `replace_configuration` "
        "then has nothing to close). Verification runs in a thread, so the security "
        "server's event loop keeps serving exchanges with the configuration in use (they share "
        "the CPU and Python's GIL meanwhile); the *longest event-loop pause* is the longest gap "
        "between two wake-ups of a task asking to run every millisecond during the swap.",
        "",
        "| step | ms |",
        "|---|---:|",
        f"| `SnapshotVerifier.verify`: parse, check the signer chain and the signature, build "
        f"the `GlobalConfiguration` | {_ms(f.median('verify'))} |",
        f"| swap to a new version: fetch, verify, `accept`, write the cache file, tell "
        f"`CurrentConfiguration` and `PeerChannels` | {_ms(f.median('swap_new'))} |",
        "| swap to the same version re-signed (every half validity, "
        f"{VALIDITY.total_seconds() / 120:g} min): as "
        f"above; `accept` compares the state hashes | {_ms(f.median('swap_resigned'))} |",
        "",
        "| swap | longest event-loop pause, ms |",
        "|---|---:|",
        f"| to a new version | {_ms(f.median('swap_new_stall'))} |",
        f"| to the same version re-signed | {_ms(f.median('swap_resigned_stall'))} |",
        "",
        f"Memory (tracemalloc, one verification): the configuration in use keeps "
        f"{sizes.kept_mib:,.1f} MiB; verification peaks at {sizes.peak_mib:,.1f} MiB.",
        "",
        "### 4. Look-ups per exchange",
        "",
        "What a security server looks up in the configuration in use for each exchange "
        "(`gateway/_consumer.py`, `gateway/_provider.py`), in the configuration as it "
        "verified it. Identifiers are made anew for each exchange, as the provider makes them "
        "from the exchange header (`from_proto`), so every look-up hashes them and compares "
        "them with the configuration's own (the consumer's `parse` may hand back a cached "
        "object, whose hash costs less). The smaller federations are the same "
        "generator scaled down, members in proportion. Per pattern, size, look-up and round: "
        f"{LOOKUPS:,} exchanges in {LOOKUP_RUNS} runs; ns per look-up, the loop included "
        "(first row). Two patterns:",
        "",
        "- **spread**: every exchange between random parties of the whole federation, for a "
        "random service: the larger the configuration, the more of it the look-ups touch, "
        "and the less of it the CPU's caches hold "
        f"({_cache()});",
        f"- **working set**: {WORKING_SET} such exchanges drawn once, then repeated in random "
        "order: a security server dealing with few parties. The same work at every size; "
        "only the configuration around it grows.",
        "",
    ]
    smallest, largest = sized[0], sized[-1]
    header = (
        "| look-up | "
        + " | ".join(f"{s.services:,} services ({s.members:,} members), ns" for s in sized)
        + f" | ratio {largest.services:,} / {smallest.services:,} |"
    )
    for pattern in PATTERNS:
        lines += [f"**{pattern}**:", "", header, "|---|" + "---:|" * (len(sized) + 1)]
        for key, label, _ in LOOKUP_ROWS:
            values = [f.median("lookup", pattern, s.services, key) for s in sized]
            lines.append(
                f"| {label} | "
                + " | ".join(f"{value:,.0f}" for value in values)
                + f" | {values[-1] / values[0]:.2f} |"
            )
        lines.append("")
    spread, working = (
        [f.median("lookup", pattern, s.services, "provider") for s in (smallest, largest)]
        for pattern in PATTERNS
    )
    lines.append(
        f"The provider's look-ups per exchange: {working[0]:,.0f} ns at {smallest.services:,} "
        f"services and {working[1]:,.0f} ns at {largest.services:,} for the same working set "
        f"(ratio {working[1] / working[0]:.2f}); {spread[1]:,.0f} ns at {largest.services:,} "
        f"when exchanges spread over the whole federation (ratio {spread[1] / spread[0]:.2f})."
    )
    if working[1] / working[0] <= FLAT:
        lines[-1] += (
            " Finding an entry costs the same at every size (dictionary and set look-ups); "
            "what grows with the federation is how much of the configuration a security "
            "server's exchanges touch, and so how often the CPU's caches miss."
        )
    return "\n".join(lines)
