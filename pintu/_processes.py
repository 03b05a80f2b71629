"""Long-running processes: a security server, or a sample agency's backend."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

from demo import AGENCIES, serve_agency
from gateway import security_server
from pintu._config import load_gateway_settings
from pintu._errors import ConfigError


def write_ready(path: Path | None, ports: list[int]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps({"pid": os.getpid(), "ports": ports}), encoding="utf-8")
    os.replace(scratch, path)


def remove_ready(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


async def until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    try:
        await stop.wait()
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)


async def run_gateway(config: Path, ready_file: Path | None) -> None:
    """Serve a security server until SIGINT or SIGTERM, then drain in-flight calls and stop."""
    settings = load_gateway_settings(config)
    server = security_server(settings)
    await server.start()
    try:
        write_ready(ready_file, [*server.agency_ports, server.peer_port])
        await until_signalled()
    finally:
        await server.stop()
        remove_ready(ready_file)


async def run_agency(key: str, address: str, ready_file: Path | None) -> None:
    """Serve a sample agency's backend until SIGINT or SIGTERM."""
    agency = next((a for a in AGENCIES if a.key == key), None)
    if agency is None:
        known = ", ".join(a.key for a in AGENCIES)
        raise ConfigError(f"agency: unknown sample agency {key!r} (known: {known})")
    backend = await serve_agency(agency, address)
    try:
        write_ready(ready_file, [backend.port])
        await until_signalled()
    finally:
        await backend.server.stop(5)
