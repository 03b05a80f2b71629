"""The ``pintu`` command.

::

    pintu up [--dir DIR]                    start a whole local federation and keep it running
    pintu demo                              start one in a temporary folder and run the scenario
    pintu gateway run --config FILE         run one security server
    pintu gateway enroll --config F --token T   get a security server's first certificates
    pintu ca init|serve|token|revoke|list|rollover --dir DIR ...   operate the federation's CA
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

    enroll = gateway_commands.add_parser(
        "enroll", help="generate this server's keys and have the CA certify them"
    )
    enroll.add_argument("--config", type=Path, required=True, help="gateway.toml")
    enroll.add_argument("--token", required=True, help="the token `pintu ca token` printed")

    ca = commands.add_parser("ca", help="the federation's certificate authority")
    ca_commands = ca.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = ca_commands.add_parser("init", help="create a CA (root, issuing CA, OCSP responder)")
    init.add_argument("--dir", type=Path, required=True)
    init.add_argument("--instance", required=True, help="the federation instance, e.g. DEMO")
    init.add_argument("--listen", default="127.0.0.1:7400", help="CA service (gRPC over TLS)")
    init.add_argument("--http-listen", default="127.0.0.1:7401", help="CRLs and OCSP (HTTP)")
    init.add_argument(
        "--renewal-listen", default="127.0.0.1:7402", help="renewal (gRPC over mutual TLS)"
    )
    init.add_argument("--public-url", help="base URL of the HTTP side, as relying parties see it")
    init.add_argument(
        "--authentication-lifetime",
        type=int,
        default=86_400,
        help="seconds an authentication certificate is valid (default: a day)",
    )
    init.add_argument("--pkcs11-module", help="keep the CA keys in this PKCS#11 module's token")
    init.add_argument("--pkcs11-token", help="the token's label")
    serve_ca = ca_commands.add_parser("serve", help="run the CA service")
    serve_ca.add_argument("--ready-file", type=Path, help="written once the service listens")
    new_token = ca_commands.add_parser("token", help="a one-time enrollment token")
    new_token.add_argument("--server", required=True, help="INSTANCE/CLASS/MEMBER/SERVER")
    new_token.add_argument("--lifetime", type=int, help="seconds the token stays valid")
    revoke = ca_commands.add_parser("revoke", help="revoke a certificate")
    revoke.add_argument("serial", help="decimal, or hex with 0x")
    revoke.add_argument("--reason", required=True, help="key_compromise, superseded, ...")
    listing = ca_commands.add_parser("list", help="issued certificates, or the journal")
    listing.add_argument("--journal", action="store_true", help="the journal instead")
    rollover = ca_commands.add_parser("rollover", help="introduce, switch to, retire roots")
    rollover.add_argument("step", choices=["begin", "switch", "retire"])
    for sub in (init, serve_ca, new_token, revoke, listing, rollover):
        if sub is not init:
            sub.add_argument("--dir", type=Path, required=True, help="the CA's folder")
        sub.add_argument(
            "--passphrase-file",
            type=Path,
            help="the CA keys' passphrase (default: $PINTU_CA_PASSPHRASE); with a PKCS#11 "
            "token, its PIN (default: $PINTU_CA_PIN)",
        )

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


def _ca_command(options: argparse.Namespace) -> int:
    from pintu import _ca

    secret = options.passphrase_file
    if options.action == "init":
        folder = _ca.init(
            options.dir,
            instance=options.instance,
            listen=options.listen,
            http_listen=options.http_listen,
            renewal_listen=options.renewal_listen,
            public_url=options.public_url,
            secret_file=secret,
            pkcs11_module=options.pkcs11_module,
            pkcs11_token=options.pkcs11_token,
            authentication_lifetime=options.authentication_lifetime,
        )
        print(f"CA created in {folder.path}; root certificate: {folder.path}/G1/root.pem")
    elif options.action == "serve":
        asyncio.run(_ca.serve(options.dir, secret, options.ready_file))
    elif options.action == "token":
        print(_ca.token(options.dir, secret, options.server, options.lifetime))
    elif options.action == "revoke":
        _ca.revoke(options.dir, secret, options.serial, options.reason)
        print(f"revoked {options.serial} ({options.reason})")
    elif options.action == "list":
        for line in _ca.listing(options.dir, options.journal):
            print(line)
    else:
        print(_ca.rollover(options.dir, secret, options.step))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pintu`` command; returns the exit status."""
    options = _parser().parse_args(argv)
    quiet = options.command in ("up", "demo") or (
        options.command == "ca" and options.action != "serve"
    )
    configure_logging(logging.WARNING if quiet else logging.INFO)
    try:
        if options.command == "up":
            return _up(options.dir)
        if options.command == "demo":
            return _demo()
        if options.command == "gateway" and options.action == "enroll":
            from pintu import _ca

            print(_ca.enroll(options.config, options.token))
            return 0
        if options.command == "gateway":
            from pintu._processes import run_gateway

            asyncio.run(run_gateway(options.config, options.ready_file))
            return 0
        if options.command == "ca":
            return _ca_command(options)
        if options.command == "agency":
            from pintu._processes import run_agency

            asyncio.run(run_agency(options.name, options.listen, options.ready_file))
            return 0
    except (PintuError, PkiError, RegistryError, SettingsError) as error:
        print(f"pintu: error [{error.code}]: {error}", file=sys.stderr)
        return 2 if not isinstance(error, PintuError) or error.code != "federation_failed" else 1
    raise AssertionError(options.command)
