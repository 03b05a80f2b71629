"""The audit suite: what the tamper-evident log (audit/_log.py) costs.

    python -m bench.run --suite audit [--rounds 3] [--appenders 1,50,200] [--appends 10000]
                        [--audit-records 10000000] [--checkpoints 300]

Measured, in alternating rounds where figures are compared:

* **appending**: ``appends`` records (realistic ones, ``ExchangeRecord.encode()``) written to a
  fresh log by 1, 50 or 200 coroutines awaiting ``AuditLog.append`` one record after another,
  so that records appended meanwhile share a transaction and a sync (group commit); beside it,
  the same records as plain SQLite rows, one row per transaction (``synchronous=FULL``, WAL,
  like the log): what a sync per record would cost;
* **exchanges**: what a provider security server does per exchange: the request record with
  ``append`` (durable before the call goes on) and the outcome with ``append_soon`` (riding
  along with the next durable write);
* **checkpoints**: ``AuditLog.checkpoint`` (ES256 signature, stored and synced) at the large
  log (the same tree size each time, so the row is replaced), the signature alone, and a
  checkpoint's check (``Checkpoint.verified``);
* **proofs**: ``AuditLog.inclusion`` and ``AuditLog.consistency`` at 1 %, 10 % and 100 % of a
  log of ``audit_records`` records (10 million by default), their size, and their check
  (``verify_record``, ``verify_extension``);
* **verification**: ``verify_log`` over the whole large log, in a process of its own (as
  ``pintu audit verify`` runs), with that process's peak memory.

The large log is a real one: its records go through ``AuditLog._write`` (leaf hashes, the
frontier, one transaction each) in batches of :data:`FILL_BATCH`, a checkpoint signed after
each batch, then the log is closed and opened again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Coroutine
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

import pki
from audit import (
    OUTCOME,
    REQUEST,
    AuditLog,
    Checkpoint,
    ExchangeRecord,
    pseudonym,
    verify_extension,
    verify_log,
    verify_record,
)
from bench._document import machine, reproduce, today
from bench._measure import peak_rss_mib
from bench.pki import Figures, _filesystem
from proto import MemberId

NAME = "audit"
TITLE = "Audit log: appends, checkpoints, proofs and verification"
EXCHANGE_TARGET_US = 30.0
FILL_BATCH = 50_000  # records per transaction while filling the large log; a checkpoint after each
FILL_WARNING_S = 600.0
PROOF_CHECKS = 2_000  # proof checks timed per round
ENCODINGS = 2_000  # records encoded per round, to time ExchangeRecord.encode
PROVIDER = MemberId.parse("DEMO/PUB/NHIS")
CONSUMER = MemberId.parse("DEMO/GOV/WELFARE")
LOG_NAME = f"{PROVIDER}/ss1"
PSEUDONYM_KEY = b"bench pseudonym key, 32 bytes..."
CITIZENS = 10_000  # distinct pseudonyms in the records
DAY = dt.timedelta(days=1)
# Stand-ins, exactly as long as the real values, cut out of an encoded record to make others.
MESSAGE_MARK = "M" * 32
SUBJECT_MARK = "S" * 32

T = TypeVar("T")


@dataclass(frozen=True)
class AuditBenchSettings:
    """How much the audit suite measures."""

    rounds: int = 3
    appenders: tuple[int, ...] = (1, 50, 200)
    appends: int = 10_000
    audit_records: int = 10_000_000
    checkpoints: int = 300


@dataclass(frozen=True)
class _Signer:
    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]
    roots: tuple[x509.Certificate, ...]


def _signer(now: dt.datetime) -> _Signer:
    """A throwaway CA and the provider's document-signing key and certificate under it."""
    ca = pki.CertificateAuthority.create("DEMO", now=now - DAY, lifetime=DAY * 30)
    key = pki.generate_key()
    certificate = ca.issue_signing_certificate(PROVIDER, key.public_key(), now=now, lifetime=DAY)
    return _Signer(key, (certificate,), (ca.certificate,))


def _say(text: str) -> None:
    print(f"audit: {text}", flush=True)


def _ordered(items: list[T], index: int) -> list[T]:
    return items if index % 2 == 0 else items[::-1]


def _bounded(measurement: Coroutine[Any, Any, T]) -> T:
    """Run ``measurement`` in a loop of its own; tasks left behind get five seconds to end, and
    the worker threads of ``asyncio.to_thread`` are joined before the next measurement."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(measurement)
    finally:
        left = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=5))
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


# -- records ---------------------------------------------------------------------------------


def _request(message_id: str, subject: str, now: dt.datetime) -> ExchangeRecord:
    """What the provider records before an allowed exchange goes to its backend."""
    return ExchangeRecord(
        kind=REQUEST,
        message_id=message_id,
        role="provider",
        at=now,
        method="/nhis.v1.Eligibility/GetCoverage",
        client=str(CONSUMER.subsystem("birthsupport")),
        client_server=str(CONSUMER.server("ss1")),
        provider=str(PROVIDER.subsystem("eligibility")),
        purpose="birth-support",
        subject=subject,
        decision_id="5f0c6a52-1c7e-4d1e-9d7a-3b9f2b6c8e41",
        consent_id="0d9e4c1b-7a55-4f0e-8c2b-6e1f3a9d2c77",
    )


def _outcome(message_id: str, now: dt.datetime) -> ExchangeRecord:
    """What the provider records of how that exchange ended."""
    return ExchangeRecord(
        kind=OUTCOME,
        message_id=message_id,
        role="provider",
        at=now,
        method="/nhis.v1.Eligibility/GetCoverage",
        status="OK",
        duration_ms=12.345,
    )


def _citizens() -> list[str]:
    return [pseudonym(PSEUDONYM_KEY, f"NIK:{n:016d}") for n in range(CITIZENS)]


def _exchanges(count: int, now: dt.datetime) -> list[tuple[bytes, bytes]]:
    """``count`` exchanges' records, each encoded by ``ExchangeRecord.encode``."""
    subjects = _citizens()
    offset = random.randrange(1 << 64)
    return [
        (
            _request(f"{offset + n:032x}", subjects[n % CITIZENS], now).encode(),
            _outcome(f"{offset + n:032x}", now).encode(),
        )
        for n in range(count)
    ]


class _Filler:
    """Records for the large log, made fast: the encoded request and outcome records of one
    exchange with its message id and pseudonym cut out, put back per exchange (byte for byte
    what ``ExchangeRecord.encode`` gives, checked at the start)."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.subjects = [subject.encode() for subject in _citizens()]
        before, after = _request(MESSAGE_MARK, SUBJECT_MARK, now).encode().split(b"M" * 32)
        middle, end = after.split(b"S" * 32)
        self.request = (before, middle, end)
        self.outcome = tuple(_outcome(MESSAGE_MARK, now).encode().split(b"M" * 32))
        for n in (0, 1, 2 * CITIZENS + 1):
            if self.body(n) != self.encoded(n):
                raise SystemExit(f"bench: filler record {n} differs from its encoding")

    def body(self, n: int) -> bytes:
        """Record ``n``: exchange n // 2's request (n even) or outcome (n odd)."""
        exchange = n >> 1
        message_id = b"%032x" % exchange
        if n & 1:
            return message_id.join(self.outcome)
        before, middle, end = self.request
        return before + message_id + middle + self.subjects[exchange % CITIZENS] + end

    def encoded(self, n: int) -> bytes:
        exchange = n >> 1
        if n & 1:
            return _outcome(f"{exchange:032x}", self.now).encode()
        subject = self.subjects[exchange % CITIZENS].decode()
        return _request(f"{exchange:032x}", subject, self.now).encode()


# -- appending -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Appended:
    seconds: float
    cpu: float
    records: int
    syncs: int


def _baseline(path: Path, bodies: list[bytes]) -> _Appended:
    """The same records as plain rows, one insert and commit (and sync) each."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        wall, cpu = time.perf_counter(), time.process_time()
        for seq, body in enumerate(bodies):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO records (seq, body) VALUES (?, ?)", (seq, body))
            db.execute("COMMIT")
        seconds, used = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        db.close()
    return _Appended(seconds, used, len(bodies), len(bodies))


async def _appending(log: AuditLog, bodies: list[bytes], appenders: int) -> _Appended:
    """``appenders`` coroutines appending their share of ``bodies``, each awaiting each."""
    share = max(1, len(bodies) // appenders)

    async def appender(first: int) -> None:
        for body in bodies[first : first + share]:
            await log.append(body)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(appender(k * share) for k in range(appenders)))
    await log.aclose()
    seconds, used = time.perf_counter() - wall, time.process_time() - cpu
    return _Appended(seconds, used, share * appenders, log.writes)


async def _exchanging(
    log: AuditLog, exchanges: list[tuple[bytes, bytes]], in_flight: int
) -> _Appended:
    """``in_flight`` exchanges at a time: each appends its request durably and its outcome
    with the next write; the clock stops when every record is on disk."""
    share = max(1, len(exchanges) // in_flight)
    outcomes: list[asyncio.Future[int]] = []

    async def exchange(first: int) -> None:
        for request, outcome in exchanges[first : first + share]:
            await log.append(request)
            outcomes.append(log.append_soon(outcome))

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(exchange(k * share) for k in range(in_flight)))
    await log.aclose()  # writes the outcomes still waiting for a write to ride along with
    seconds, used = time.perf_counter() - wall, time.process_time() - cpu
    if not all(done.done() and done.exception() is None for done in outcomes):
        raise SystemExit("bench: an outcome record was not written")
    return _Appended(seconds, used, share * in_flight, log.writes)


def _append_round(
    folder: Path,
    signer: _Signer,
    settings: AuditBenchSettings,
    exchanges: list[tuple[bytes, bytes]],
    figures: Figures,
    index: int,
) -> None:
    bodies = [body for pair in exchanges for body in pair][: settings.appends]
    runs: list[tuple[str, int]] = [("baseline", 1)]
    runs += [("append", n) for n in settings.appenders]
    runs += [("exchange", n) for n in settings.appenders]
    walls: dict[tuple[str, int], float] = {}
    for kind, in_flight in _ordered(runs, index):
        path = folder / f"append-{index}-{kind}-{in_flight}.db"
        if kind == "baseline":
            result = _baseline(path, bodies)
            written = result.records
        else:
            log = AuditLog(path, LOG_NAME, signer.key, signer.chain)
            if kind == "append":
                result = _bounded(_appending(log, bodies, in_flight))
                written = result.records
            else:
                result = _bounded(_exchanging(log, exchanges, in_flight))
                written = 2 * result.records
            reopened = AuditLog(path, LOG_NAME, signer.key, signer.chain)
            if reopened.size != written:
                raise SystemExit(f"bench: {reopened.size} records in the log, not {written}")
            reopened.close()
        walls[kind, in_flight] = result.seconds / result.records
        figures.add(result.seconds / result.records, kind, in_flight, "wall")
        figures.add(result.cpu / result.records, kind, in_flight, "cpu")
        figures.add(written / result.syncs, kind, in_flight, "per sync")
        path.unlink()
    for n in settings.appenders:
        figures.add(walls["baseline", 1] / walls["append", n], "append", n, "speed-up")
    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    for n in range(ENCODINGS // 2):
        _request(f"{n:032x}", "0" * 32, now).encode()
        _outcome(f"{n:032x}", now).encode()
    figures.add((time.perf_counter() - started) / ENCODINGS, "encode")


# -- the large log ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _LargeLog:
    path: Path
    older: Checkpoint  # signed while filling, at about three quarters
    fill_seconds: float
    open_seconds: float


def _fill(folder: Path, signer: _Signer, count: int, now: dt.datetime) -> _LargeLog:
    """A log of ``count`` records, written batch by batch, then closed and opened again."""
    path = folder / "large.db"
    filler = _Filler(now)
    log = AuditLog(path, LOG_NAME, signer.key, signer.chain)
    older_size = count * 3 // 4 + 1
    ends = sorted({*range(FILL_BATCH, count, FILL_BATCH), older_size, count})
    older: Checkpoint | None = None
    started = time.monotonic()
    reported = started
    try:
        for end in ends:
            log._write([filler.body(n) for n in range(log.size, end)])
            checkpoint = log.checkpoint(now)
            if end == older_size:
                older = checkpoint
            if time.monotonic() - reported > 30:
                reported = time.monotonic()
                _say(f"  {log.size:,} records after {reported - started:,.0f} s")
    finally:
        log.close()
    filled = time.monotonic() - started
    assert older is not None
    started = time.monotonic()
    AuditLog(path, LOG_NAME, signer.key, signer.chain).close()
    return _LargeLog(path, older, filled, time.monotonic() - started)


def _checkpoint_round(
    log: AuditLog, signer: _Signer, settings: AuditBenchSettings, figures: Figures, index: int
) -> None:
    latest = log.latest_checkpoint()
    assert latest is not None
    count = settings.checkpoints

    def stored() -> None:
        for n in range(count):
            log.checkpoint(dt.datetime.now(dt.UTC) + dt.timedelta(microseconds=n))

    def signed() -> None:
        for _ in range(count):
            Checkpoint.sign(
                LOG_NAME,
                latest.size,
                latest.root,
                dt.datetime.now(dt.UTC),
                signer.key,
                signer.chain,
            )

    def checked() -> None:
        for _ in range(count):
            Checkpoint.verified(latest.token, signer.roots, PROVIDER)

    for kind, operation in _ordered(
        [("stored", stored), ("signed", signed), ("checked", checked)], index
    ):
        started = time.perf_counter()
        operation()
        figures.add((time.perf_counter() - started) / count, "checkpoint", kind)


def _proof_sizes(records: int) -> list[int]:
    return sorted({size for size in (records // 100, records // 10, records) if size >= 2})


def _proof_round(
    log: AuditLog,
    large: _LargeLog,
    newer: Checkpoint,
    settings: AuditBenchSettings,
    figures: Figures,
    index: int,
) -> None:
    records = settings.audit_records
    for size in _ordered(_proof_sizes(records), index):
        seq = random.randrange(size)
        first = large.older.size if size == records else size * 3 // 4 + 1
        started = time.perf_counter()
        inclusion = log.inclusion(seq, size)
        figures.add(time.perf_counter() - started, "inclusion", size)
        started = time.perf_counter()
        consistency = log.consistency(first, size)
        figures.add(time.perf_counter() - started, "consistency", size)
        if size != records:
            continue
        figures.add(len(inclusion), "inclusion", "hashes")
        figures.add(len(consistency), "consistency", "hashes")
        body = log.record(seq)
        started = time.perf_counter()
        for _ in range(PROOF_CHECKS):
            verify_record(body, seq, inclusion, newer)
        figures.add((time.perf_counter() - started) / PROOF_CHECKS, "inclusion", "check")
        started = time.perf_counter()
        for _ in range(PROOF_CHECKS):
            verify_extension(large.older, newer, consistency)
        figures.add((time.perf_counter() - started) / PROOF_CHECKS, "consistency", "check")


def _verify_file(path: str, roots_pem: bytes, signer: str) -> tuple[float, float, int, float]:
    """In a process of its own: verify_log over the file (seconds, CPU seconds, records, peak
    memory in MiB)."""
    roots = x509.load_pem_x509_certificates(roots_pem)
    wall, cpu = time.perf_counter(), time.process_time()
    verified = verify_log(Path(path), roots, MemberId.parse(signer), name=LOG_NAME)
    seconds, used = time.perf_counter() - wall, time.process_time() - cpu
    return seconds, used, verified.records, peak_rss_mib(os.getpid())


def _verify_round(large: _LargeLog, signer: _Signer, records: int, figures: Figures) -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        seconds, cpu, verified, peak = pool.submit(
            _verify_file, str(large.path), pki.certificate_pem(*signer.roots), str(PROVIDER)
        ).result()
    if verified != records:
        raise SystemExit(f"bench: verify_log saw {verified:,} records, not {records:,}")
    figures.add(seconds, "verify", "seconds")
    figures.add(cpu, "verify", "cpu")
    figures.add(peak, "verify", "peak")


# -- the suite -------------------------------------------------------------------------------


def run(settings: AuditBenchSettings, command: str) -> str:
    """Measure, and return the suite's section of docs/benchmarks.md."""
    if settings.audit_records < 100:
        raise SystemExit("bench: --audit-records must be 100 or more")
    figures = Figures()
    now = dt.datetime.now(dt.UTC)
    signer = _signer(now)
    exchanges = _exchanges(max(1, settings.appends // 2), now)
    with tempfile.TemporaryDirectory(prefix="pintu-bench-audit-") as scratch:
        folder = Path(scratch)
        _say(f"filling a log with {settings.audit_records:,} records")
        large = _fill(folder, signer, settings.audit_records, now)
        _say(
            f"filled in {large.fill_seconds:,.0f} s; opened again (every record re-read) in"
            f" {large.open_seconds:,.0f} s"
        )
        if large.fill_seconds > FILL_WARNING_S:
            _say(
                f"filling took more than {FILL_WARNING_S:,.0f} s: choose a smaller --audit-records"
            )
        size = large.path.stat().st_size
        log = AuditLog(large.path, LOG_NAME, signer.key, signer.chain)
        try:
            newer = log.checkpoint(dt.datetime.now(dt.UTC))
            for index in range(settings.rounds):
                _append_round(folder, signer, settings, exchanges, figures, index)
                _checkpoint_round(log, signer, settings, figures, index)
                _proof_round(log, large, newer, settings, figures, index)
                _verify_round(large, signer, settings.audit_records, figures)
                most = settings.appenders[-1]
                _say(
                    f"round {index + 1}/{settings.rounds}: append"
                    f" {figures.median('append', most, 'wall') * 1e6:.1f} µs/record at {most}"
                    f" in flight (plain SQLite {figures.median('baseline', 1, 'wall') * 1e6:.0f}),"
                    f" checkpoint {figures.median('checkpoint', 'stored') * 1e6:.0f} µs,"
                    " inclusion proof"
                    f" {figures.median('inclusion', settings.audit_records):.2f} s, verify_log"
                    f" {figures.median('verify', 'seconds'):.1f} s"
                )
        finally:
            log.close()
        place = _filesystem(folder)
    return _report(settings, figures, command, large, size, place)


def _report(
    settings: AuditBenchSettings,
    figures: Figures,
    command: str,
    large: _LargeLog,
    size: int,
    place: str,
) -> str:
    f = figures
    records = settings.audit_records
    appends = [
        "| SQLite, a row per transaction (baseline) | 1"
        f" | {1 / f.median('baseline', 1, 'wall'):,.0f}"
        f" | {f.median('baseline', 1, 'wall') * 1e6:,.1f}"
        f" | {f.median('baseline', 1, 'cpu') * 1e6:,.1f} | 1.0 | 1.0 |"
    ]
    appends += [
        f"| `AuditLog.append` | {n} | {1 / f.median('append', n, 'wall'):,.0f}"
        f" | {f.median('append', n, 'wall') * 1e6:,.1f}"
        f" | {f.median('append', n, 'cpu') * 1e6:,.1f}"
        f" | {f.median('append', n, 'per sync'):,.1f}"
        f" | {f.median('append', n, 'speed-up'):,.1f} |"
        for n in settings.appenders
    ]
    exchanges = [
        f"| {n} | {1 / f.median('exchange', n, 'wall'):,.0f}"
        f" | {f.median('exchange', n, 'wall') * 1e6:,.1f}"
        f" | {f.median('exchange', n, 'cpu') * 1e6:,.1f}"
        f" | {f.median('exchange', n, 'per sync'):,.1f} |"
        for n in settings.appenders
    ]
    most = settings.appenders[-1]
    per_exchange = f.median("exchange", most, "wall") * 1e6
    cpu_exchange = f.median("exchange", most, "cpu") * 1e6
    verdict = "within" if per_exchange <= EXCHANGE_TARGET_US else "over"
    checkpoints = [
        f"| {what} | {1 / f.median('checkpoint', kind):,.0f}"
        f" | {f.median('checkpoint', kind) * 1e6:,.0f} |"
        for what, kind in (
            ("`AuditLog.checkpoint`: signed (ES256), stored and synced", "stored"),
            ("the signature alone (`Checkpoint.sign`)", "signed"),
            ("a checkpoint's check (`Checkpoint.verified`)", "checked"),
        )
    ]
    proofs = [
        f"| {n:,} | {f.median('inclusion', n) * 1e3:,.1f}"
        f" | {f.median('consistency', n) * 1e3:,.1f} |"
        for n in _proof_sizes(records)
    ]
    inclusion_hashes = round(f.median("inclusion", "hashes"))
    consistency_hashes = round(f.median("consistency", "hashes"))
    verify = f.median("verify", "seconds")
    rounds = "1 round" if settings.rounds == 1 else f"{settings.rounds} rounds"
    return "\n".join(
        [
            f"## {TITLE}",
            "",
            *reproduce(command),
            "",
            f"- date: {today()}",
            "- machine: "
            + machine(f"SQLite {sqlite3.sqlite_version}")
            + f", log files on {place} (shared; figures are noisy, so read medians and ratios)",
            f"- method: `bench/audit.py` says what each figure covers; {rounds},"
            " the measurements within a round in alternating order, every figure the median"
            " over the rounds. Records are `ExchangeRecord.encode()` bytes (a request and an"
            " outcome per exchange, 350 to 500 bytes).",
            "",
            "### Appending, with group commit",
            "",
            f"{settings.appends:,} records per measurement, each appender awaiting each of its"
            " records (durable, `synchronous=FULL`) before the next; a fresh log each time. The"
            " baseline writes the same records into a plain SQLite table (WAL, like the log), one"
            " insert and commit per record. CPU time is the whole process's (worker threads"
            " included).",
            "",
            "| writer | appenders | records/s | µs per record | CPU µs per record |"
            " records per sync | speed-up over the baseline |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *appends,
            "",
            "A provider's exchange: the request record appended durably (`append`, awaited),"
            " the outcome with the next write (`append_soon`); the clock stops once every"
            " record is on disk.",
            "",
            "| exchanges in flight | exchanges/s | µs per exchange | CPU µs per exchange |"
            " records per sync |",
            "|---:|---:|---:|---:|---:|",
            *exchanges,
            "",
            f"The audit log costs {per_exchange:,.1f} µs per exchange, amortised, at {most}"
            f" exchanges in flight ({cpu_exchange:,.1f} µs of CPU): {verdict} the target of"
            f" {EXCHANGE_TARGET_US:g} µs. Not counted: encoding the records, which the gateway"
            f" does too ({f.median('encode') * 1e6:,.1f} µs per record with"
            " `ExchangeRecord.encode`).",
            "",
            f"### A log of {records:,} records",
            "",
            f"Filled in {large.fill_seconds:,.0f} s ({records / large.fill_seconds:,.0f}"
            f" records/s: `AuditLog._write` batches of {FILL_BATCH:,} records, a checkpoint"
            f" after each); {size / 1e6:,.0f} MB on disk. Opening it again took"
            f" {large.open_seconds:,.1f} s: `AuditLog` re-reads every record to rebuild its"
            " frontier and check it against the last checkpoint.",
            "",
            f"| checkpoints at {records:,} records | per second | µs each |",
            "|---|---:|---:|",
            *checkpoints,
            "",
            "| tree size (records) | inclusion proof (ms) | consistency proof (ms) |",
            "|---:|---:|---:|",
            *proofs,
            "",
            f"| proof at {records:,} records | hashes | bytes | made in (ms) | checked in (µs) |",
            "|---|---:|---:|---:|---:|",
            f"| inclusion (`AuditLog.inclusion`, `verify_record`) | {inclusion_hashes}"
            f" | {inclusion_hashes * 32:,} | {f.median('inclusion', records) * 1e3:,.1f}"
            f" | {f.median('inclusion', 'check') * 1e6:,.1f} |",
            f"| consistency from {large.older.size:,} records (`AuditLog.consistency`,"
            f" `verify_extension`) | {consistency_hashes} | {consistency_hashes * 32:,}"
            f" | {f.median('consistency', records) * 1e3:,.1f}"
            f" | {f.median('consistency', 'check') * 1e6:,.1f} |",
            "",
            "Proofs are small, quick to make and quick to check: `AuditLog.inclusion` and"
            " `AuditLog.consistency` read the stored hashes of perfect subtrees of 256 records"
            " and more (O(log n) of them) and a few hundred leaf hashes, whatever the log's size"
            " (see the table above).",
            "",
            f"| `verify_log` over {records:,} records | s | records/s | MB/s | CPU s |"
            " peak memory (MiB) |",
            "|---|---:|---:|---:|---:|---:|",
            f"| file in the page cache, {size / 1e6:,.0f} MB | {verify:,.2f}"
            f" | {records / verify:,.0f} | {size / 1e6 / verify:,.1f}"
            f" | {f.median('verify', 'cpu'):,.2f} | {f.median('verify', 'peak'):,.0f} |",
            "",
            "`verify_log` runs in a process of its own, as `pintu audit verify` does; it reads"
            " every record (and checks every checkpoint) in one pass, checking the records as"
            " it reads them (its memory does not grow with the log).",
        ]
    )
