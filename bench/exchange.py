"""Suite "exchange": throughput, latency, CPU and memory of an exchange, directly and through
two security servers.

    python -m bench.run --suite exchange [--rounds 5] [--seconds 3]

One run starts an echo backend and two security servers (``pintu gateway run`` processes, as in
production: mTLS between them, the federation's CA), then measures, in alternating rounds so that
the shared machine's noise falls on every target alike:

* **direct**: the client calls the backend itself (the baseline);
* **pintu**: the client calls its own security server, which forwards over mTLS to the
  provider's security server, which calls the backend.

Figures are medians over the rounds. The client runs in this process (grpc.aio), with
``concurrency`` calls in flight on one channel.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from bench._document import machine, reproduce, today
from bench._measure import cpu_seconds, peak_rss_mib, quantile
from bench.echo import METHOD, SERVICE
from demo import Agency, AgencyService
from pintu import LocalFederation
from proto import MemberId

CLIENT_MEMBER = MemberId("DEMO", "GOV", "CLIENT")
SERVER_MEMBER = MemberId("DEMO", "GOV", "SERVER")
AGENCIES = (
    Agency("client", CLIENT_MEMBER, "Benchmark client", CLIENT_MEMBER.subsystem("app"), (), None),
    Agency(
        "server",
        SERVER_MEMBER,
        "Benchmark server",
        SERVER_MEMBER.subsystem("echo"),
        (
            AgencyService(
                SERVICE,
                ("Call",),
                "Echoes its request",
                clients=(f"subsystem:{CLIENT_MEMBER.subsystem('app')}",),
            ),
        ),
        # The echo backend runs as its own process (bench.echo); nothing to register here.
        lambda server: None,
    ),
)
METADATA = (
    ("pintu-client", str(CLIENT_MEMBER.subsystem("app"))),
    ("pintu-provider", str(SERVER_MEMBER.subsystem("echo"))),
    ("pintu-purpose", "benchmark"),
)


@dataclass(frozen=True)
class Workload:
    name: str
    size: int
    concurrency: int


WORKLOADS = (Workload("unary 1 KiB", 1024, 1), Workload("unary 1 KiB", 1024, 50))
TARGETS = ("direct", "pintu")
NAME = "exchange"
TITLE = "Exchange: directly and through two security servers"


@dataclass(frozen=True)
class ExchangeSettings:
    """How long the exchange suite measures."""

    rounds: int = 5
    seconds: float = 3.0


@dataclass
class Window:
    """One measured window of one target under one workload."""

    throughput: float
    p50: float
    p99: float
    p999: float
    cpu_us: dict[str, float]


@dataclass
class Series:
    windows: list[Window] = field(default_factory=list)

    def median(self, pick: Callable[[Window], float]) -> float:
        return statistics.median(pick(w) for w in self.windows)


async def _window(
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes],
    payload: bytes,
    metadata: tuple[tuple[str, str], ...] | None,
    concurrency: int,
    seconds: float,
    pids: dict[str, int],
) -> Window:
    latencies: list[float] = []
    clock = time.perf_counter
    stop_at = clock() + seconds

    async def worker() -> None:
        while (started := clock()) < stop_at:
            await call(payload, metadata=metadata, timeout=30)
            latencies.append(clock() - started)

    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    client_before = time.process_time()
    began = clock()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = clock() - began
    count = len(latencies)
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    cpu["client"] = time.process_time() - client_before
    return Window(
        throughput=count / elapsed,
        p50=quantile(latencies, 0.5) * 1e3,
        p99=quantile(latencies, 0.99) * 1e3,
        p999=quantile(latencies, 0.999) * 1e3,
        cpu_us={name: seconds * 1e6 / count for name, seconds in cpu.items()},
    )


async def _measure(
    federation: dict[str, Any], pids: dict[str, int], rounds: int, seconds: float
) -> dict[tuple[Workload, str], Series]:
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    backend = federation["agencies"]["server"]["backend_address"]
    gateway = federation["gateways"]["client"]["agency_address"]
    channels = {
        "direct": grpc.aio.insecure_channel(backend, options=options),
        "pintu": grpc.aio.insecure_channel(gateway, options=options),
    }
    watched = {
        "direct": {"backend": pids["backend"]},
        "pintu": {
            "consumer gateway": pids["gateway-client"],
            "provider gateway": pids["gateway-server"],
            "backend": pids["backend"],
        },
    }
    calls = {name: channel.unary_unary(METHOD, None, None) for name, channel in channels.items()}
    results: dict[tuple[Workload, str], Series] = {
        (w, t): Series() for w in WORKLOADS for t in TARGETS
    }
    for workload in WORKLOADS:  # warm up connections and code paths
        payload = os.urandom(workload.size)
        for target in TARGETS:
            await _window(calls[target], payload, METADATA, workload.concurrency, 0.5, {})
    for index in range(rounds):
        for workload in WORKLOADS:
            payload = os.urandom(workload.size)
            order = TARGETS if index % 2 == 0 else TARGETS[::-1]
            for target in order:
                metadata = METADATA if target == "pintu" else None
                window = await _window(
                    calls[target],
                    payload,
                    metadata,
                    workload.concurrency,
                    seconds,
                    watched[target],
                )
                results[(workload, target)].windows.append(window)
                print(
                    f"round {index + 1}/{rounds} {workload.name} x{workload.concurrency} "
                    f"{target:6}: {window.throughput:8.0f} req/s  p50 {window.p50:.3f} ms",
                    flush=True,
                )
    for channel in channels.values():
        await channel.close(None)
    return results


def _report(
    results: dict[tuple[Workload, str], Series],
    rss: dict[str, float],
    rounds: int,
    seconds: float,
    command: str,
) -> str:
    lines = [
        f"## {TITLE}",
        "",
        *reproduce(command),
        "",
        f"- date: {today()}",
        f"- machine: {machine(f'grpcio {grpc.__version__}')} "
        "(shared; figures are noisy, so read medians and ratios)",
        f"- method: {rounds} alternating rounds of {seconds:g} s per target and workload; "
        "medians over rounds. Every process on one machine, over loopback.",
        "- targets: **direct** = client → backend; **Pintu** = client → consumer security "
        "server → (mTLS, TLS 1.3) → provider security server → backend, each gateway its own "
        "`pintu gateway run` process.",
        "",
        "### Throughput and latency",
        "",
        "| workload | in flight | direct req/s | Pintu req/s | Pintu / direct "
        "| p50 direct ms | p50 Pintu ms | p50 added ms | p99 direct ms | p99 Pintu ms "
        "| p99.9 Pintu ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workload in WORKLOADS:
        direct, pintu = results[(workload, "direct")], results[(workload, "pintu")]
        d_rps, p_rps = direct.median(lambda w: w.throughput), pintu.median(lambda w: w.throughput)
        d50, p50 = direct.median(lambda w: w.p50), pintu.median(lambda w: w.p50)
        lines.append(
            f"| {workload.name} | {workload.concurrency} | {d_rps:,.0f} | {p_rps:,.0f} "
            f"| {p_rps / d_rps:.2f} | {d50:.3f} | {p50:.3f} | {p50 - d50:.3f} "
            f"| {direct.median(lambda w: w.p99):.3f} | {pintu.median(lambda w: w.p99):.3f} "
            f"| {pintu.median(lambda w: w.p999):.3f} |"
        )
    processes = ("client", "consumer gateway", "provider gateway", "backend")
    lines += [
        "",
        "### CPU time per exchange (µs, median over rounds)",
        "",
        "| workload | in flight | target | " + " | ".join(processes) + " | total |",
        "|---|---:|---|" + "---:|" * (len(processes) + 1),
    ]
    for workload in WORKLOADS:
        for target in TARGETS:
            series = results[(workload, target)]
            cells = []
            total = 0.0
            for name in processes:
                if name in series.windows[0].cpu_us:
                    value = series.median(lambda w, n=name: w.cpu_us[n])  # type: ignore[misc]
                    total += value
                    cells.append(f"{value:,.0f}")
                else:
                    cells.append("—")
            label = "Pintu" if target == "pintu" else "direct"
            lines.append(
                f"| {workload.name} | {workload.concurrency} | {label} | "
                + " | ".join(cells)
                + f" | {total:,.0f} |"
            )
    lines += [
        "",
        "### Peak memory (RSS, MiB, whole run)",
        "",
        "| process | peak RSS |",
        "|---|---:|",
        *(f"| {name} | {value:.0f} |" for name, value in rss.items()),
    ]
    return "\n".join(lines)


def run(settings: ExchangeSettings, command: str) -> str:
    """Measure, and return the suite's section of docs/benchmarks.md (``command`` reproduces it)."""
    rounds, seconds = settings.rounds, settings.seconds
    with tempfile.TemporaryDirectory(prefix="pintu-bench-") as scratch:
        state = Path(scratch)
        federation = LocalFederation(state, agencies=AGENCIES, start_backends=False)
        federation.prepare()
        address = federation.document["agencies"]["server"]["backend_address"]
        ready = state / "echo.ready"
        echo = subprocess.Popen(
            [sys.executable, "-m", "bench.echo", "--listen", address, "--ready-file", str(ready)],
            stdin=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():
                if echo.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("bench: the echo backend did not start")
                time.sleep(0.05)
            with federation:
                pids = {**federation.pids, "backend": echo.pid}
                results = asyncio.run(_measure(federation.document, pids, rounds, seconds))
                rss = {
                    "consumer gateway": peak_rss_mib(pids["gateway-client"]),
                    "provider gateway": peak_rss_mib(pids["gateway-server"]),
                    "backend": peak_rss_mib(pids["backend"]),
                }
        finally:
            echo.terminate()
            echo.wait(10)
    print(
        json.dumps(
            {
                f"{w.name} x{w.concurrency} {t}": round(
                    results[(w, t)].median(lambda x: x.throughput)
                )
                for w in WORKLOADS
                for t in TARGETS
            }
        )
    )
    return _report(results, rss, rounds, seconds, command)
