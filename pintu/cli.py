"""The ``pintu`` command.

::

    pintu up [--dir DIR]                    start a whole local federation and keep it running
    pintu demo                              start one in a temporary folder and run the scenario
    pintu gateway run --config FILE         run one security server
    pintu agency run NAME --listen ADDR     run a sample agency's backend

Exit status: 0 on success, 1 when a run or the scenario failed, 2 on invalid input (the message
names the stable error code).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from gateway import SettingsError
from pintu._errors import PintuError
from pintu._federation import LocalFederation
from pintu._logging import configure_logging
from pki import PkiError
from registry import RegistryError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pintu", description="Pintu: secure data exchange between agencies."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start a local federation and keep it running")
    up.add_argument(
        "--dir",
        type=Path,
        default=Path("pintu-state"),
        help="state folder (default: ./pintu-state)",
    )

    commands.add_parser("demo", help="run the one-stop birth-support scenario end to end")

    gateway = commands.add_parser("gateway", help="security server commands")
    gateway_commands = gateway.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = gateway_commands.add_parser("run", help="run one security server")
    run.add_argument("--config", type=Path, required=True, help="gateway.toml")
    run.add_argument("--ready-file", type=Path, help="written once the server listens")

    agency = commands.add_parser("agency", help="sample agency commands")
    agency_commands = agency.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = agency_commands.add_parser("run", help="run a sample agency's backend")
    serve.add_argument("name", help="welfare, popreg, nhis or tax")
    serve.add_argument("--listen", required=True, help="host:port")
    serve.add_argument("--ready-file", type=Path, help="written once the backend listens")
    return parser


def _print_endpoints(federation: LocalFederation) -> None:
    document = federation.document
    print(f"Pintu federation {document['instance']} is running from {federation.state}")
    print(f"  CA bundle:  {document['ca_bundle']}")
    for key, gateway in document["gateways"].items():
        agency = document["agencies"][key]
        print(f"  {agency['name']} ({agency['subsystem']})")
        print(f"    security server {gateway['server']}")
        print(
            f"      agency (h2c) {gateway['agency_address']}   agency (mTLS) "
            f"{gateway['agency_tls_address']}   peer (mTLS) {gateway['peer_address']}"
        )
        if agency["backend_address"]:
            print(f"    backend {agency['backend_address']}: {', '.join(agency['services'])}")
    print(f"  endpoints:  {federation.federation_file}")
    print("Press Ctrl+C to stop.", flush=True)


def _up(state: Path) -> int:
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    federation = LocalFederation(state)
    federation.prepare()
    with federation:
        _print_endpoints(federation)
        while not stop.wait(0.5):
            federation.check()
    print("Pintu federation stopped.", flush=True)
    return 0


def _demo() -> int:
    from demo import run_scenario

    with tempfile.TemporaryDirectory(prefix="pintu-demo-") as scratch:
        print("Starting a local federation: a CA, four security servers, three agency backends...")
        with LocalFederation(Path(scratch)) as federation:
            print(f"Federation up ({len(federation.document['gateways'])} security servers).\n")
            ok = asyncio.run(
                run_scenario(federation.document, lambda line: print(line, flush=True))
            )
    print("\nDemo finished: every step did what it should." if ok else "\nDemo FAILED.")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pintu`` command; returns the exit status."""
    options = _parser().parse_args(argv)
    configure_logging(logging.INFO if options.command in ("gateway", "agency") else logging.WARNING)
    try:
        if options.command == "up":
            return _up(options.dir)
        if options.command == "demo":
            return _demo()
        if options.command == "gateway":
            from pintu._processes import run_gateway

            asyncio.run(run_gateway(options.config, options.ready_file))
            return 0
        if options.command == "agency":
            from pintu._processes import run_agency

            asyncio.run(run_agency(options.name, options.listen, options.ready_file))
            return 0
    except (PintuError, PkiError, RegistryError, SettingsError) as error:
        print(f"pintu: error [{error.code}]: {error}", file=sys.stderr)
        return 2 if not isinstance(error, PintuError) or error.code != "federation_failed" else 1
    raise AssertionError(options.command)
