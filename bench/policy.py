"""The policy suite: what a decision costs a security server as the access rights grow.

Per exchange a security server looks up the rights that apply (``policy.AccessRights``), builds
the input (``policy.PolicyInput``) and asks the engine, through the decision cache
(``policy.CachedEngine``). Measured at each number of rights, in process:

* **miss**: look-up, input, and the embedded engine (rego-cpp) deciding; every question new to
  the cache (a different purpose each time, so the cache is asked and misses);
* **hit**: the same, answered from the cache;
* **engine alone**: ``EmbeddedEngine.decide_now`` on a prepared input;
* **remote OPA round trip**: ``RemoteOpaEngine`` asking a sidecar on 127.0.0.1, one decision
  after another. The OPA binary cannot be installed here, so the sidecar is a stand-in
  (``bench.opa_standin``, its own process) that answers a fixed decision at once: the figure is
  the remote engine's own cost (HTTP, JSON, the adapter), to which OPA's evaluation adds.

The rights are spread over 1,000 services and as many holders; the exchange's caller holds one
right through a global group. Targets: a hit within 20 µs, a miss within 500 µs, both flat in
the number of rights.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import regopy

import policy
from bench._document import machine, reproduce, today
from bench.pki import Figures
from pintu import free_port

NAME = "policy"
TITLE = "Policy: decisions as the access rights grow"
HIT_TARGET_US = 20.0
MISS_TARGET_US = 500.0
CLIENT = "DEMO/GOV/WELFARE/birthsupport"
SERVER = "DEMO/GOV/WELFARE/ss1"
PROVIDER = "DEMO/GOV/POPREG/civilregistry"
SERVICE = "popreg.v1.CivilRegistry"
GROUPS = ("social-services",)
FACTS = policy.ServiceFacts(True, ("identity",), (), False, "Population Act art. 5")


@dataclass(frozen=True)
class PolicyBenchSettings:
    """How much the policy suite measures."""

    rounds: int = 5
    decisions: int = 2_000
    rights: tuple[int, ...] = (100, 1_000, 10_000, 100_000)


def _rights(count: int) -> policy.AccessRights:
    grants = [
        policy.Grant(f"svc{i % 1_000}.v1.Service", f"subsystem:DEMO/GOV/M{i}/app", ("Get",))
        for i in range(count - 1)
    ]
    grants.append(policy.Grant(SERVICE, "group:social-services", ("GetPerson",)))
    return policy.AccessRights(grants)


def _input(rights: policy.AccessRights, purpose: str) -> policy.PolicyInput:
    return policy.PolicyInput(
        CLIENT,
        SERVER,
        PROVIDER,
        SERVICE,
        "GetPerson",
        dt.datetime.now(dt.UTC),
        purpose,
        GROUPS,
        True,
        "active",
        FACTS,
        rights.applicable(CLIENT, GROUPS, SERVICE),
    )


async def _per_decision(
    cache: policy.CachedEngine, rights: policy.AccessRights, purposes: list[str]
) -> float:
    """Seconds per decision: look-up, input and the cached engine, for each purpose in turn."""
    started = time.perf_counter()
    for purpose in purposes:
        decision = await cache.decide(_input(rights, purpose))
        if not decision.allow:
            raise SystemExit(f"bench: the exchange was denied: {decision.reasons}")
    return (time.perf_counter() - started) / len(purposes)


async def _round(
    engine: policy.EmbeddedEngine, settings: PolicyBenchSettings, figures: Figures, index: int
) -> None:
    for count in settings.rights:
        rights = _rights(count)
        cache = policy.CachedEngine(engine, size=settings.decisions * 2)
        fresh = [f"purpose-{index}-{count}-{n}" for n in range(settings.decisions)]
        figures.add(await _per_decision(cache, rights, fresh), "miss", count)
        if cache.misses != settings.decisions:
            raise SystemExit("bench: the cache answered questions it was never asked")
        figures.add(await _per_decision(cache, rights, fresh), "hit", count)
        if cache.hits != settings.decisions:
            raise SystemExit("bench: the cache missed questions it was asked before")
        prepared = _input(rights, "prepared")
        started = time.perf_counter()
        for _ in range(settings.decisions):
            engine.decide_now(prepared)
        figures.add((time.perf_counter() - started) / settings.decisions, "engine", count)
        print(
            f"policy: round {index + 1}/{settings.rounds} {count:,} rights:"
            f" miss {figures.median('miss', count) * 1e6:,.0f} µs,"
            f" hit {figures.median('hit', count) * 1e6:,.1f} µs",
            flush=True,
        )


@contextmanager
def _sidecar() -> Iterator[int]:
    """A running OPA stand-in (bench.opa_standin) on a free loopback port."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="pintu-bench-opa-") as folder:
        ready = Path(folder) / "ready"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.opa_standin",
                "--port",
                str(port),
                "--ready-file",
                str(ready),
            ],
        )
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("bench: the OPA stand-in did not start")
                time.sleep(0.05)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=10)


async def _remote_round(port: int, settings: PolicyBenchSettings, figures: Figures) -> None:
    engine = policy.RemoteOpaEngine("127.0.0.1", port, timeout=5.0)
    prepared = _input(_rights(settings.rights[0]), "remote")
    try:
        await engine.decide(prepared)  # the connection is opened outside the measurement
        count = max(settings.decisions // 4, 1)
        started = time.perf_counter()
        for _ in range(count):
            decision = await engine.decide(prepared)
            if not decision.allow:
                raise SystemExit("bench: the OPA stand-in denied")
        figures.add((time.perf_counter() - started) / count, "remote", 0)
    finally:
        await engine.close()


def run(settings: PolicyBenchSettings, command: str) -> str:
    """Measure, and return the suite's section of docs/benchmarks.md."""
    figures = Figures()
    # Purposes must be allowed by the service: it names none, so every purpose is.
    engine = policy.EmbeddedEngine(policy.PolicySet.load(policy.DEFAULT_POLICIES))
    with _sidecar() as port:
        for index in range(settings.rounds):
            asyncio.run(_round(engine, settings, figures, index))
            asyncio.run(_remote_round(port, settings, figures))
            print(
                f"policy: round {index + 1}/{settings.rounds} remote OPA round trip"
                f" {figures.median('remote', 0) * 1e6:,.0f} µs",
                flush=True,
            )
    return _report(settings, figures, command)


def _report(settings: PolicyBenchSettings, figures: Figures, command: str) -> str:
    f = figures
    smallest, largest = settings.rights[0], settings.rights[-1]
    rows = []
    for count in settings.rights:
        rows.append(
            f"| {count:,} | {f.median('miss', count) * 1e6:,.0f} "
            f"| {f.median('hit', count) * 1e6:,.1f} | {f.median('engine', count) * 1e6:,.0f} |"
        )
    hit, miss = f.median("hit", largest) * 1e6, f.median("miss", largest) * 1e6
    lines = [
        f"## {TITLE}",
        "",
        *reproduce(command),
        "",
        f"- date: {today()}",
        "- machine: "
        + machine(f"regopy {_regopy_version()}")
        + " (shared; figures are noisy, so read medians and ratios)",
        "- method: the policies Pintu ships (`policy/rego`), the embedded engine and the "
        "decision cache, in process (`bench/policy.py` says what each row covers). "
        f"{settings.decisions:,} decisions per row and round, {settings.rounds} rounds; every "
        "figure is the median over the rounds.",
        "",
        "| access rights | miss: look-up, input, engine (µs per decision) "
        "| hit: look-up, input, cache (µs) | engine alone (µs) |",
        "|---:|---:|---:|---:|",
        *rows,
        "",
        f"At {largest:,} rights: a hit costs {hit:,.1f} µs (target {HIT_TARGET_US:g} µs), a "
        f"miss {miss:,.0f} µs (target {MISS_TARGET_US:g} µs); from {smallest:,} to "
        f"{largest:,} rights the miss changes {miss / (f.median('miss', smallest) * 1e6):.2f} times"
        f" and the hit {hit / (f.median('hit', smallest) * 1e6):.2f} times.",
        "",
        f"Remote OPA round trip: {f.median('remote', 0) * 1e6:,.0f} µs per decision "
        f"({f.median('remote', 0) / f.median('miss', smallest):.1f} times an embedded miss), "
        f"{max(settings.decisions // 4, 1):,} decisions one after another per round through "
        "`RemoteOpaEngine` to a stand-in sidecar on 127.0.0.1 (`bench/opa_standin.py`, its own "
        "process, answering a fixed decision at once: OPA's own evaluation comes on top). The "
        "remote engine is never cached, so every exchange pays this.",
    ]
    return "\n".join(lines)


def _regopy_version() -> str:
    return str(getattr(regopy, "__version__", "1.5"))
