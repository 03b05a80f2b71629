"""Suite "pki": what the federation's PKI costs, measured with the real code on a throwaway CA.

    python -m bench.run --suite pki [--rounds 5] [--seconds 1] [--enrollments 40]
                                    [--crl-sizes 0,1000,10000,100000] [--concurrency 1,8,32]

1. **Issuance**: ``Authority.enroll`` (two CSRs: proof of possession, key policy, identity,
   the ledger) and ``Authority.renew``, per second.
2. **OCSP**: ``Authority.ocsp`` in process, for cached answers (no nonce, as security servers
   ask) and fresh signatures (with a nonce); and ``POST /ocsp`` over HTTP (httpx) to
   ``pintu ca serve`` running in its own process, at a few concurrencies.
3. **Staple verification per exchange**: ``StatusVerifier.check`` for a staple already seen
   (the per-exchange case) and at first sight, in CPU µs per call, against a target.
4. **Peer-certificate checks as the CRL grows**: ``serial in RevokedSerials`` for a hit and a
   miss at each CRL size, the time to load each CRL (in the background, not per exchange), and
   the peer certificate's serial: parsing its PEM vs the gateway's cache by PEM bytes.

Everything but the HTTP rows runs in this process. Inputs (tokens, CSRs, OCSP requests, CRLs)
are made before the clock starts; paired figures (a baseline and its alternative) are measured
in the same round in alternating order, and every figure is the median over the rounds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cryptography
import httpx
from cryptography import x509
from cryptography.hazmat.backends.openssl import backend as openssl
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

import pintu
import pki
from bench._document import machine, reproduce, today
from bench._measure import cpu_seconds, quantile
from proto import MemberId

NAME = "pki"
TITLE = "PKI: issuance, OCSP, staple verification and CRL checks"
INSTANCE = "DEMO"
REGISTRAR = "registrar@bench"
# CRLs up to this size are made through the ledger (issue, then Authority.revoke, then
# Authority.crl); larger ones are built directly, with random serials.
LEDGER_LIMIT = 10_000
STAPLE_TARGET_US = 100.0
LOOKUPS = 200_000  # per CRL size and round, in LOOKUP_RUNS runs
LOOKUP_RUNS = 5
# OCSP requests name the issuer by SHA-1 hashes (RFC 6960), as the keepers' requests do.
SHA1 = hashes.SHA1()


@dataclass(frozen=True)
class PkiSettings:
    """How much the pki suite measures."""

    rounds: int = 5
    seconds: float = 1.0
    enrollments: int = 40
    crl_sizes: tuple[int, ...] = (0, 1_000, 10_000, 100_000)
    concurrencies: tuple[int, ...] = (1, 8, 32)


class Figures:
    """Values measured over the rounds, by name; read as medians."""

    def __init__(self) -> None:
        self._values: dict[tuple[object, ...], list[float]] = defaultdict(list)

    def add(self, value: float, *key: object) -> None:
        """Record one round's value of ``key``."""
        self._values[key].append(value)

    def median(self, *key: object) -> float:
        """The median of ``key`` over the rounds."""
        return statistics.median(self._values[key])


@dataclass
class _Ca:
    folder: pki.CaFolder
    authority: pki.Authority
    passphrase_file: Path
    now: dt.datetime

    @property
    def issuing(self) -> x509.Certificate:
        return self.authority.issuing.certificate


def _create_ca(scratch: Path, now: dt.datetime) -> _Ca:
    """A CA folder whose keys are encrypted, so that ``pintu ca serve`` can run it too."""
    passphrase = secrets.token_urlsafe(24).encode()
    passphrase_file = scratch / "passphrase"
    pki.write_private(passphrase_file, passphrase)
    path = scratch / "ca"
    # The HTTP port is chosen here, so that the benchmark knows it without reading the ready
    # file's list of ports; the gRPC listeners (unused here) take any free port.
    http = f"127.0.0.1:{pintu.free_port()}"
    settings = pki.CaSettings(
        INSTANCE,
        listen="127.0.0.1:0",
        http_listen=http,
        renewal_listen="127.0.0.1:0",
        public_url=f"http://{http}",
    )
    folder = pki.CaFolder.create(
        path, settings, pki.FileKeyStorage(path, passphrase), now=now, actor="bench"
    )
    return _Ca(folder, folder.authority(1, folder.ledger()), passphrase_file, now)


def _window(operation: Callable[[], object], seconds: float, batch: int) -> tuple[float, float]:
    """Run ``operation`` in batches for ``seconds``: (calls per wall second, CPU µs per call)."""
    clock, cpu = time.perf_counter, time.process_time
    count = 0
    began, cpu_began = clock(), cpu()
    deadline = began + seconds
    while True:
        for _ in range(batch):
            operation()
        count += batch
        if clock() >= deadline:
            break
    elapsed, used = clock() - began, cpu() - cpu_began
    return count / elapsed, used * 1e6 / count


def _cycle(values: Sequence[bytes]) -> Callable[[], bytes]:
    """A function returning ``values`` one after another, round and round."""
    return itertools.cycle(values).__next__


def _ordered(pair: tuple[str, str], index: int) -> tuple[str, ...]:
    return pair if index % 2 == 0 else pair[::-1]


def _say(text: str) -> None:
    print(f"pki: {text}", flush=True)


# -- 1. issuance -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Applicant:
    """What a new security server brings to the CA: a token and three CSRs (two to enroll, one
    to renew its authentication certificate later), its keys generated beforehand."""

    token: str
    authentication_csr: bytes
    signing_csr: bytes
    renewal_csr: bytes


def _applicants(ca: _Ca, prefix: str, count: int) -> list[_Applicant]:
    applicants = []
    for number in range(count):
        # One server per member, as most members run: renewal checks every key the server and
        # its member were ever certified for, so a shared member would grow that list.
        server = MemberId(INSTANCE, "GOV", f"{prefix}M{number}").server("ss1")
        applicants.append(
            _Applicant(
                ca.authority.create_token(server, actor=REGISTRAR, now=ca.now),
                pki.certificate_request(pki.generate_key(), server.uri),
                pki.certificate_request(pki.generate_key(), server.owner.uri),
                pki.certificate_request(pki.generate_key(), server.uri),
            )
        )
    return applicants


def _issuance(ca: _Ca, settings: PkiSettings, figures: Figures) -> list[x509.Certificate]:
    """Enroll and renew; the authentication certificates issued (for the other measurements)."""
    authority, now = ca.authority, ca.now
    issued: list[x509.Certificate] = []
    for warm in _applicants(ca, "WARM", 3):  # first calls: SQLite's cache, lazy imports
        authentication, _ = authority.enroll(
            warm.token, warm.authentication_csr, warm.signing_csr, now=now
        )
        authority.renew(authentication.certificate, pki.AUTHENTICATION, warm.renewal_csr, now=now)
    for index in range(settings.rounds):
        applicants = _applicants(ca, f"R{index}", settings.enrollments)
        began, cpu_began = time.perf_counter(), time.process_time()
        enrolled = [
            authority.enroll(a.token, a.authentication_csr, a.signing_csr, now=now)
            for a in applicants
        ]
        elapsed, used = time.perf_counter() - began, time.process_time() - cpu_began
        figures.add(len(enrolled) / elapsed, "enroll", "rate")
        figures.add(used * 1e3 / len(enrolled), "enroll", "cpu_ms")
        began, cpu_began = time.perf_counter(), time.process_time()
        renewed = [
            authority.renew(authentication.certificate, pki.AUTHENTICATION, a.renewal_csr, now=now)
            for a, (authentication, _) in zip(applicants, enrolled, strict=True)
        ]
        elapsed, used = time.perf_counter() - began, time.process_time() - cpu_began
        figures.add(len(renewed) / elapsed, "renew", "rate")
        figures.add(used * 1e3 / len(renewed), "renew", "cpu_ms")
        issued += [authentication.certificate for authentication, _ in enrolled]
        issued += [r.certificate for r in renewed]
        _say(
            f"round {index + 1}/{settings.rounds} issuance: "
            f"{figures.median('enroll', 'rate'):.0f} enrollments/s, "
            f"{figures.median('renew', 'rate'):.0f} renewals/s"
        )
    return issued


# -- 2. OCSP ---------------------------------------------------------------------------------


def _ocsp_request(
    certificate: x509.Certificate, issuer: x509.Certificate, nonce: bytes | None = None
) -> bytes:
    """A request as a security server's keeper makes it (SHA-1 CertID), with an optional nonce."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, SHA1)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class _OcspRequests:
    cached: list[bytes]  # no nonce: one per certificate, answered from the responder's cache
    fresh: list[bytes]  # each with its own nonce: signed for every request


def _ocsp_requests(ca: _Ca, certificates: list[x509.Certificate]) -> _OcspRequests:
    return _OcspRequests(
        [_ocsp_request(c, ca.issuing) for c in certificates],
        [
            _ocsp_request(certificates[i % len(certificates)], ca.issuing, os.urandom(16))
            for i in range(256)
        ],
    )


def _check_answer(der: bytes) -> None:
    response = ocsp.load_der_ocsp_response(der)
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise SystemExit(f"bench: the OCSP responder answered {response.response_status.name}")
    if response.certificate_status is not ocsp.OCSPCertStatus.GOOD:
        raise SystemExit(f"bench: the OCSP responder answered {response.certificate_status.name}")


def _ocsp_in_process(
    ca: _Ca, requests: _OcspRequests, settings: PkiSettings, figures: Figures
) -> None:
    authority, now = ca.authority, ca.now
    for request in requests.cached:  # fill the responder's cache; check what it answers
        _check_answer(authority.ocsp(request, now))
    _check_answer(authority.ocsp(requests.fresh[0], now))
    cached, fresh = _cycle(requests.cached), _cycle(requests.fresh)

    def answer_cached() -> None:
        authority.ocsp(cached(), now)

    def answer_fresh() -> None:
        authority.ocsp(fresh(), now)

    operations = {"cached": answer_cached, "fresh": answer_fresh}
    for index in range(settings.rounds):
        for kind in _ordered(("cached", "fresh"), index):
            rate, cpu_us = _window(operations[kind], settings.seconds, 50)
            figures.add(rate, "ocsp", kind, "rate")
            figures.add(cpu_us, "ocsp", kind, "cpu_us")
        _say(
            f"round {index + 1}/{settings.rounds} OCSP in process: "
            f"cached {figures.median('ocsp', 'cached', 'rate'):,.0f}/s, "
            f"signed {figures.median('ocsp', 'fresh', 'rate'):,.0f}/s"
        )


@contextmanager
def _ca_service(ca: _Ca, scratch: Path) -> Iterator[tuple[int, int]]:
    """``pintu ca serve`` on the CA folder, in its own process: (pid, HTTP port), once ready."""
    ready = scratch / "ca.ready"
    log = scratch / "ca.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pintu",
                "ca",
                "serve",
                "--dir",
                str(ca.folder.path),
                "--passphrase-file",
                str(ca.passphrase_file),
                "--ready-file",
                str(ready),
            ],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"bench: the CA service did not start:\n{log.read_text()}")
            time.sleep(0.05)
        try:
            yield process.pid, int(ca.folder.settings.http_listen.rpartition(":")[2])
        except BaseException:
            print(f"bench: the CA service's log:\n{log.read_text()}", file=sys.stderr)
            raise
    finally:
        process.terminate()
        process.wait(10)


async def _http_window(
    client: httpx.AsyncClient,
    url: str,
    requests: Sequence[bytes],
    concurrency: int,
    seconds: float,
    server_pid: int,
) -> tuple[float, float, float, float, float]:
    """(responses/s, p50 ms, p99 ms, CA CPU µs per response, client CPU µs per response)."""
    latencies: list[float] = []
    clock = time.perf_counter
    next_request = _cycle(requests)
    headers = {"Content-Type": "application/ocsp-request"}
    stop_at = clock() + seconds

    async def worker() -> None:
        while (started := clock()) < stop_at:
            response = await client.post(url, content=next_request(), headers=headers)
            if response.status_code != 200:
                raise SystemExit(f"bench: the OCSP responder answered HTTP {response.status_code}")
            latencies.append(clock() - started)

    server_before, client_before = cpu_seconds(server_pid), time.process_time()
    began = clock()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = clock() - began
    count = len(latencies)
    return (
        count / elapsed,
        quantile(latencies, 0.5) * 1e3,
        quantile(latencies, 0.99) * 1e3,
        (cpu_seconds(server_pid) - server_before) * 1e6 / count,
        (time.process_time() - client_before) * 1e6 / count,
    )


async def _ocsp_http(
    port: int, server_pid: int, requests: _OcspRequests, settings: PkiSettings, figures: Figures
) -> None:
    url = f"http://127.0.0.1:{port}/ocsp"
    pools = {"cached": requests.cached, "fresh": requests.fresh}
    widest = max(settings.concurrencies)
    limits = httpx.Limits(max_connections=widest, max_keepalive_connections=widest)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        headers = {"Content-Type": "application/ocsp-request"}
        for request in [*requests.cached, requests.fresh[0]]:  # the responder's cache, checked
            _check_answer((await client.post(url, content=request, headers=headers)).content)
        for concurrency in settings.concurrencies:  # open the connections, warm the code paths
            await _http_window(client, url, requests.cached, concurrency, 0.2, server_pid)
        for index in range(settings.rounds):
            for concurrency in settings.concurrencies:
                for kind in _ordered(("cached", "fresh"), index):
                    window = await _http_window(
                        client, url, pools[kind], concurrency, settings.seconds, server_pid
                    )
                    for name, value in zip(
                        ("rate", "p50", "p99", "ca_cpu", "client_cpu"), window, strict=True
                    ):
                        figures.add(value, "http", kind, concurrency, name)
                    _say(
                        f"round {index + 1}/{settings.rounds} OCSP over HTTP {kind:6} "
                        f"x{concurrency}: {window[0]:,.0f}/s, p50 {window[1]:.2f} ms"
                    )


# -- 3. staple verification ------------------------------------------------------------------


def _staples(
    ca: _Ca, certificates: list[x509.Certificate], requests: _OcspRequests
) -> list[tuple[int, bytes]]:
    """(serial, staple) of every certificate: the responder's cached answers, as keepers staple."""
    return [
        (certificate.serial_number, ca.authority.ocsp(request, ca.now))
        for certificate, request in zip(certificates, requests.cached, strict=True)
    ]


def _staple_checks(
    ca: _Ca, staples: list[tuple[int, bytes]], settings: PkiSettings, figures: Figures
) -> None:
    issuers = [ca.issuing]
    now = ca.now + dt.timedelta(seconds=1)
    verifier = pki.StatusVerifier(issuers, pki.DEFAULT_MAX_AGE)
    serial, staple = staples[0]
    # gRPC hands the gateway a new bytes object with every exchange: copy the staple each call,
    # so that the cache's dictionary hashes it every time as it does in production.
    raw = bytearray(staple)
    verifier.check(bytes(raw), now=now, serial=serial)

    def seen() -> None:
        verifier.check(bytes(raw), now=now, serial=serial)

    def first_sight() -> None:
        fresh = pki.StatusVerifier(issuers, pki.DEFAULT_MAX_AGE)
        for number, der in staples:
            fresh.check(der, now=now, serial=number)

    operations = {"seen": (seen, 1000, 1), "first": (first_sight, 1, len(staples))}
    for index in range(settings.rounds):
        for kind in _ordered(("seen", "first"), index):
            operation, batch, calls = operations[kind]
            _, cpu_us = _window(operation, settings.seconds, batch)
            figures.add(cpu_us / calls, "staple", kind)
        _say(
            f"round {index + 1}/{settings.rounds} staple check: "
            f"seen {figures.median('staple', 'seen'):.2f} µs, "
            f"first sight {figures.median('staple', 'first'):.0f} µs"
        )


# -- 4. CRLs and the peer certificate's serial -----------------------------------------------


@dataclass(frozen=True)
class _Crl:
    size: int
    der: bytes
    through_ledger: bool
    hit: int  # a revoked serial (0 when none)


def _revoke_through_ledger(ca: _Ca, count: int) -> None:
    """Issue ``count`` agency client certificates and revoke them, as an operator would."""
    authority = ca.authority
    key = pki.generate_key().public_key()
    subsystem = MemberId(INSTANCE, "GOV", "REVOKED").subsystem("app")
    for _ in range(count):
        issued = authority.issue_agency_certificate(
            "client",
            subsystem,
            key,
            actor=REGISTRAR,
            now=ca.now,
            lifetime=dt.timedelta(days=1),
        )
        authority.revoke(issued.serial, "superseded", actor=REGISTRAR, now=ca.now)


def _direct_crl(ca: _Ca, size: int) -> bytes:
    """A CRL of ``size`` random serials signed by the issuing CA, with the authority's fields."""
    issuing = ca.authority.issuing
    reason = x509.CRLReason(x509.ReasonFlags.superseded)
    entries = [
        x509.RevokedCertificateBuilder()
        .serial_number(x509.random_serial_number())
        .revocation_date(ca.now)
        .add_extension(reason, critical=False)
        .build()
        for _ in range(size)
    ]
    builder = (
        x509.CertificateRevocationListBuilder(revoked_certificates=entries)
        .issuer_name(issuing.certificate.subject)
        .last_update(ca.now)
        .next_update(ca.now + dt.timedelta(hours=1))
        .add_extension(x509.CRLNumber(int(ca.now.timestamp() * 1000)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuing.key.public_key()),
            critical=False,
        )
    )
    return builder.sign(issuing.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _crls(ca: _Ca, settings: PkiSettings, figures: Figures) -> list[_Crl]:
    """Each CRL size, made through the ledger up to LEDGER_LIMIT and directly beyond; the time
    the CA takes to build and sign it, median over the rounds."""
    crls = []
    revoked = 0
    for size in sorted(set(settings.crl_sizes)):
        through_ledger = size <= LEDGER_LIMIT
        if through_ledger:
            _say(f"revoking {size - revoked} certificates through the ledger")
            _revoke_through_ledger(ca, size - revoked)
            revoked = size
        for _ in range(settings.rounds):
            began = time.perf_counter()
            if through_ledger:
                ca.authority.forget_cached_status()
                der = ca.authority.crl(ca.now)
            else:
                der = _direct_crl(ca, size)
            figures.add((time.perf_counter() - began) * 1e3, "crl", size, "build_ms")
        entries = x509.load_der_x509_crl(der)
        crls.append(_Crl(size, der, through_ledger, entries[0].serial_number if size else 0))
        _say(f"CRL of {size:,} entries: built in {figures.median('crl', size, 'build_ms'):.1f} ms")
    return crls


def _crl_checks(ca: _Ca, crls: list[_Crl], settings: PkiSettings, figures: Figures) -> None:
    """Load each CRL into RevokedSerials, and look serials up in it. Every round visits every
    size (in turn, starting from a different one each round), so that a noisy moment of the
    shared machine does not fall on one size only; look-ups are taken in several short runs."""
    issuers = [ca.issuing]
    miss = x509.random_serial_number()
    lookups: dict[tuple[int, str], timeit.Timer] = {}
    for crl in crls:
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        revoked = pki.RevokedSerials()
        revoked.load([crl.der], issuers, now=ca.now)
        figures.add((tracemalloc.get_traced_memory()[0] - before) / 2**20, "crl", crl.size, "mib")
        tracemalloc.stop()
        if len(revoked) != crl.size or miss in revoked:
            raise SystemExit(f"bench: the CRL of {crl.size} entries loaded {len(revoked)}")
        for kind, serial in (("hit", crl.hit), ("miss", miss)):
            lookups[(crl.size, kind)] = timeit.Timer(
                "serial in revoked", globals={"serial": serial, "revoked": revoked}
            )
    runs = LOOKUP_RUNS
    for index in range(settings.rounds):
        start = index % len(crls)
        for crl in crls[start:] + crls[:start]:
            began = time.perf_counter()
            pki.RevokedSerials().load([crl.der], issuers, now=ca.now)
            figures.add((time.perf_counter() - began) * 1e3, "crl", crl.size, "load_ms")
            for _ in range(runs):
                for kind in _ordered(("hit", "miss"), index):
                    seconds = lookups[(crl.size, kind)].timeit(LOOKUPS // runs)
                    figures.add(seconds * 1e9 / (LOOKUPS // runs), "crl", crl.size, kind)
    for crl in crls:
        _say(
            f"CRL of {crl.size:,}: load {figures.median('crl', crl.size, 'load_ms'):.1f} ms, "
            f"hit {figures.median('crl', crl.size, 'hit'):.0f} ns, "
            f"miss {figures.median('crl', crl.size, 'miss'):.0f} ns"
        )


def _peer_serial(certificate: x509.Certificate, settings: PkiSettings, figures: Figures) -> None:
    """The provider's per-exchange serial of the peer's certificate: parse its PEM, or look it
    up in a dictionary by the PEM's bytes (gateway/_provider.py ``_serial``)."""
    # gRPC's auth context gives a new bytes object per call: copy, so the look-up hashes it.
    raw = bytearray(certificate.public_bytes(serialization.Encoding.PEM))
    serials: dict[bytes, int] = {bytes(raw): certificate.serial_number}

    def parse() -> None:
        x509.load_pem_x509_certificate(bytes(raw)).serial_number  # noqa: B018 - what is measured

    def cached() -> None:
        if serials.get(bytes(raw)) is None:
            raise SystemExit("bench: the peer certificate's serial is not cached")

    operations = {"parse": (parse, 200), "cached": (cached, 5000)}
    for index in range(settings.rounds):
        for kind in _ordered(("parse", "cached"), index):
            operation, batch = operations[kind]
            _, cpu_us = _window(operation, settings.seconds / 2, batch)
            figures.add(cpu_us * 1e3, "peer", kind)
    _say(
        f"peer serial: parse {figures.median('peer', 'parse'):,.0f} ns, "
        f"cached {figures.median('peer', 'cached'):,.0f} ns"
    )


# -- the section -----------------------------------------------------------------------------


def _filesystem(path: Path) -> str:
    """The type of the file system ``path`` is on (from /proc/mounts)."""
    best, kind = "", "unknown"
    resolved = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and resolved.startswith(fields[1]) and len(fields[1]) > len(best):
            best, kind = fields[1], fields[2]
    return kind


def _per_cpu_second(micros: float) -> str:
    """Responses per CPU-second from CPU µs per response ("n/a" when none was measured)."""
    return f"{1e6 / micros:,.0f}" if micros > 0 else "n/a"


def _report(
    settings: PkiSettings, figures: Figures, crls: list[_Crl], filesystem: str, command: str
) -> str:
    f = figures
    rounds, seconds = settings.rounds, settings.seconds
    lines = [
        f"## {TITLE}",
        "",
        *reproduce(command),
        "",
        f"- date: {today()}",
        "- machine: "
        + machine(f"cryptography {cryptography.__version__}", openssl.openssl_version_text())
        + " (shared; figures are noisy, so read medians and ratios)",
        "- method: the real code (`pki.Authority`, `pki.StatusVerifier`, `pki.RevokedSerials`) "
        f"on a throwaway CA folder: ECDSA P-256 keys, the ledger in SQLite (WAL, "
        f"synchronous=FULL) on {filesystem}. In process, except the HTTP rows. "
        f"{rounds} round{'s' if rounds != 1 else ''}; windows of {seconds:g} s; paired rows "
        "alternate their order each "
        "round; every figure is the median over the rounds.",
        "",
        "### 1. Issuance",
        "",
        "Tokens and CSRs are made before the clock starts (keys are generated on the security "
        f"servers); {settings.enrollments} enrollments, then their renewals, per round, "
        "each server of its own member.",
        "",
        "| operation | per second | certificates per second | ms per operation "
        "| CPU ms per operation |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, label, certificates in (
        ("enroll", "`Authority.enroll`: token, 2 CSRs → authentication + signing", 2),
        ("renew", "`Authority.renew`: current certificate, 1 CSR → authentication", 1),
    ):
        rate = f.median(name, "rate")
        lines.append(
            f"| {label} | {rate:,.0f} | {rate * certificates:,.0f} | {1e3 / rate:.2f} "
            f"| {f.median(name, 'cpu_ms'):.2f} |"
        )
    lines += [
        "",
        "### 2. OCSP responses",
        "",
        "Requests name the certificate with a SHA-1 CertID, as security servers' keepers do. "
        "**cached**: no nonce, answered from the responder's cache (a signed answer is reused "
        "for `ocsp_refresh`, 60 s); **signed**: a nonce in each request, so each answer is "
        "looked up in the ledger and signed.",
        "",
        "In process, `Authority.ocsp(request, now)`:",
        "",
        "| request | responses per second | µs per response (CPU) |",
        "|---|---:|---:|",
    ]
    for kind, label in (("cached", "cached (no nonce)"), ("fresh", "signed (nonce)")):
        lines.append(
            f"| {label} | {f.median('ocsp', kind, 'rate'):,.0f} "
            f"| {f.median('ocsp', kind, 'cpu_us'):,.1f} |"
        )
    lines += [
        "",
        "Over HTTP, `POST /ocsp` to `pintu ca serve` (its own process; the httpx client, in "
        "this process, opens up to one connection per request in flight). Client and CA share "
        "the machine's cores; *CA responses per CPU-second* (1 s divided by the CA's CPU per "
        "response) is what one core of the CA could answer with the client elsewhere.",
        "",
        "| request | in flight | responses per second | p50 ms | p99 ms "
        "| CA CPU µs per response | CA responses per CPU-second "
        "| client CPU µs per response |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for concurrency in settings.concurrencies:
        for kind, label in (("cached", "cached (no nonce)"), ("fresh", "signed (nonce)")):
            key = ("http", kind, concurrency)
            lines.append(
                f"| {label} | {concurrency} | {f.median(*key, 'rate'):,.0f} "
                f"| {f.median(*key, 'p50'):.2f} | {f.median(*key, 'p99'):.2f} "
                f"| {f.median(*key, 'ca_cpu'):,.0f} | {_per_cpu_second(f.median(*key, 'ca_cpu'))} "
                f"| {f.median(*key, 'client_cpu'):,.0f} |"
            )
    # A window too short for the CPU clock's resolution measures no CA time: no ratio then.
    ratios = [
        f.median("http", kind, concurrency, "client_cpu")
        / f.median("http", kind, concurrency, "ca_cpu")
        for concurrency in settings.concurrencies
        for kind in ("cached", "fresh")
        if f.median("http", kind, concurrency, "ca_cpu") > 0
    ]
    if ratios and min(ratios) > 1:
        lines += [
            "",
            f"The client spent {min(ratios):.1f} to {max(ratios):.1f} times the CA's CPU per "
            "response (one Python event loop): these rates say more about the client than "
            "about the CA.",
        ]
    seen, first = f.median("staple", "seen"), f.median("staple", "first")
    verdict = "met" if seen < STAPLE_TARGET_US else "**not met**"
    lines += [
        "",
        "### 3. Staple verification per exchange",
        "",
        f"Target: under {STAPLE_TARGET_US:g} µs of CPU per exchange for "
        "`StatusVerifier.check(staple, now=..., serial=...)`. "
        f"**Target {verdict}**: {seen:.2f} µs for a staple already seen, the per-exchange case. "
        "A first sight costs more; it happens once per staple and verifier (a keeper fetches "
        "a new staple every 30 s; the responder signs a new one at most every 60 s).",
        "",
        "| case | CPU µs per call | under the target |",
        "|---|---:|---|",
        f"| already seen: cached by its bytes (a new bytes object per call, as gRPC hands it "
        f"over) | {seen:.2f} | {'yes' if seen < STAPLE_TARGET_US else 'no'} |",
        "| first sight: parse, find the issuer, check the responder certificate and the "
        f"response's signature (two ECDSA verifications) | {first:.1f} "
        f"| {'yes' if first < STAPLE_TARGET_US else 'no (once per staple)'} |",
        "",
        "### 4. Peer-certificate checks as the CRL grows",
        "",
        f"CRLs of up to {LEDGER_LIMIT:,} entries are made through the ledger: client "
        "certificates issued with `Authority.issue_agency_certificate`, revoked with "
        "`Authority.revoke`, the CRL built and signed by `Authority.crl`. Larger ones are built "
        "directly with `CertificateRevocationListBuilder` (random serials, the same fields, "
        "signed by the issuing CA), because issuing and revoking 100,000 certificates through "
        "the ledger would take most of the run. Loading (verify the signature, collect the "
        "serials into `RevokedSerials`) "
        "happens in the background when a keeper fetches a CRL; the membership test "
        f"(`serial in revoked`, {LOOKUPS:,} look-ups per round in {LOOKUP_RUNS} runs, every "
        "size visited in each round) is what each exchange pays.",
        "",
        "| revoked entries | made | CRL KiB | CA builds and signs, ms | load, ms | set, MiB "
        "| hit, ns per look-up | miss, ns per look-up |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for crl in crls:
        sized = ("crl", crl.size)
        hit = f"{f.median(*sized, 'hit'):.0f}" if crl.size else "—"
        made = "ledger, `Authority.crl`" if crl.through_ledger else "directly"
        lines.append(
            f"| {crl.size:,} | {made} | {len(crl.der) / 1024:,.1f} "
            f"| {f.median(*sized, 'build_ms'):,.1f} | {f.median(*sized, 'load_ms'):,.1f} "
            f"| {f.median(*sized, 'mib'):.2f} | {hit} | {f.median(*sized, 'miss'):.0f} |"
        )
    parse, cached = f.median("peer", "parse"), f.median("peer", "cached")
    lines += [
        "",
        "The provider's serial of the peer's certificate, per exchange (CPU; a new bytes "
        "object per call, as gRPC's auth context hands over):",
        "",
        "| how | ns per exchange |",
        "|---|---:|",
        f"| parse the PEM: `x509.load_pem_x509_certificate(pem).serial_number` | {parse:,.0f} |",
        f"| the gateway's cache: a dict by PEM bytes (`ProviderSide._serial`) | {cached:,.0f} |",
    ]
    return "\n".join(lines)


def run(settings: PkiSettings, command: str) -> str:
    """Measure, and return the suite's section of docs/benchmarks.md (``command`` reproduces it)."""
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="pintu-bench-pki-") as folder:
        scratch = Path(folder)
        now = dt.datetime.now(dt.UTC)
        ca = _create_ca(scratch, now)
        try:
            certificates = _issuance(ca, settings, figures)
            crls = _crls(ca, settings, figures)
            _crl_checks(ca, crls, settings, figures)
            _peer_serial(certificates[0], settings, figures)
            requests = _ocsp_requests(ca, certificates)
            staples = _staples(ca, certificates, requests)
            _ocsp_in_process(ca, requests, settings, figures)
            _staple_checks(ca, staples, settings, figures)
            # Last: the service shares the ledger, and forgets its cached answers when another
            # connection writes to it.
            with _ca_service(ca, scratch) as (pid, port):
                asyncio.run(_ocsp_http(port, pid, requests, settings, figures))
        finally:
            ca.authority.ledger.close()
        return _report(settings, figures, crls, _filesystem(scratch), command)
