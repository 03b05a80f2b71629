"""A whole local federation in one folder: the CA, security servers and sample agencies.

``pintu up --dir DIR`` and ``pintu demo`` use :class:`LocalFederation`. The folder holds::

    DIR/federation.json              every endpoint, written once everything is serving
    DIR/global-configuration.json    members, security servers and services
    DIR/pki/                         the federation root CA (key readable by its owner only)
    DIR/gateways/<agency>/           gateway.toml, authentication, signing and listener keys
    DIR/clients/<agency>/            an agency client certificate for the mTLS agency listener
    DIR/logs/<process>.log           each child process's JSON log lines
    DIR/run/                         readiness files of the child processes

The CA and every private key are created on the first run and reused afterwards; certificates
are issued afresh and listening ports chosen anew at every start.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from demo import AGENCIES, Agency
from pintu._errors import FederationError
from pki import (
    CertificateAuthority,
    PrivateKey,
    certificate_pem,
    generate_key,
    key_pem,
    load_private_key,
    write_private,
    write_public,
)
from registry import GlobalConfiguration, Member, SecurityServer, Service

INSTANCE = "DEMO"
CA_LIFETIME = dt.timedelta(days=3650)
LEAF_LIFETIME = dt.timedelta(days=30)
SERVER_CODE = "ss1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _toml_string(value: object) -> str:
    return json.dumps(str(value), ensure_ascii=True)


@dataclass(frozen=True)
class _Ports:
    agency: int
    agency_tls: int
    peer: int
    backend: int | None


@dataclass
class _Child:
    name: str
    command: list[str]
    ready_file: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None


class LocalFederation:
    """Prepares ``state``, starts every process, and stops them all again.

    With ``start_backends=False`` only the security servers are started; the caller runs the
    agencies' backends at the addresses ``document["agencies"][key]["backend_address"]``.
    """

    def __init__(
        self,
        state: Path,
        *,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        agencies: tuple[Agency, ...] = AGENCIES,
        start_backends: bool = True,
    ) -> None:
        self.state = state.resolve()
        self._now = now
        self._agencies = agencies
        self._start_backends = start_backends
        self._children: list[_Child] = []
        self.document: dict[str, Any] = {}

    # -- preparing the folder ----------------------------------------------------------------

    def _key(self, path: Path) -> PrivateKey:
        if path.exists():
            return load_private_key(path)
        key = generate_key()
        write_private(path, key_pem(key))
        return key

    def _authority(self) -> CertificateAuthority:
        key, certificate = self.state / "pki/federation-root-ca.key", self.ca_bundle
        if key.exists() and certificate.exists():
            return CertificateAuthority.load(key, certificate)
        authority = CertificateAuthority.create(INSTANCE, now=self._now(), lifetime=CA_LIFETIME)
        authority.save(key, certificate)
        return authority

    @property
    def ca_bundle(self) -> Path:
        """The federation root CA certificate (PEM)."""
        return self.state / "pki/federation-root-ca.pem"

    @property
    def federation_file(self) -> Path:
        """Where the endpoint list is written once everything serves."""
        return self.state / "federation.json"

    def prepare(self) -> None:
        """Create or reuse keys and the CA, issue certificates, choose ports, write configs."""
        self.federation_file.unlink(missing_ok=True)
        authority = self._authority()
        now = self._now()
        ports = {
            agency.key: _Ports(
                free_port(), free_port(), free_port(), free_port() if agency.services else None
            )
            for agency in self._agencies
        }
        configuration = GlobalConfiguration.build(
            INSTANCE,
            [
                Member(a.member, a.member_name, frozenset({a.subsystem.subsystem_code}))
                for a in self._agencies
            ],
            [
                SecurityServer(a.member.server(SERVER_CODE), f"127.0.0.1:{ports[a.key].peer}")
                for a in self._agencies
            ],
            [
                Service(a.subsystem.service(s.name), s.methods, s.description)
                for a in self._agencies
                for s in a.services
            ],
        )
        global_file = self.state / "global-configuration.json"
        write_public(global_file, json.dumps(configuration.to_json(), indent=2).encode() + b"\n")

        gateways: dict[str, Any] = {}
        agencies: dict[str, Any] = {}
        self._children = []
        for agency in self._agencies:
            port = ports[agency.key]
            folder = self.state / "gateways" / agency.key
            server = agency.member.server(SERVER_CODE)
            auth_key = self._key(folder / "auth.key")
            write_public(
                folder / "auth.pem",
                certificate_pem(
                    authority.issue_server_certificate(
                        server, auth_key.public_key(), now=now, lifetime=LEAF_LIFETIME
                    )
                ),
            )
            signing_key = self._key(folder / "signing.key")
            write_public(
                folder / "signing.pem",
                certificate_pem(
                    authority.issue_signing_certificate(
                        agency.member, signing_key.public_key(), now=now, lifetime=LEAF_LIFETIME
                    )
                ),
            )
            listener_key = self._key(folder / "agency-tls.key")
            write_public(
                folder / "agency-tls.pem",
                certificate_pem(
                    authority.issue_listener_certificate(
                        server,
                        ["localhost", "127.0.0.1"],
                        listener_key.public_key(),
                        now=now,
                        lifetime=LEAF_LIFETIME,
                    )
                ),
            )
            clients = self.state / "clients" / agency.key
            client_key = self._key(clients / "key.pem")
            write_public(
                clients / "cert.pem",
                certificate_pem(
                    authority.issue_client_certificate(
                        agency.subsystem, client_key.public_key(), now=now, lifetime=LEAF_LIFETIME
                    )
                ),
            )
            config = folder / "gateway.toml"
            write_public(config, self._gateway_toml(agency, port, global_file).encode())
            gateways[agency.key] = {
                "server": str(server),
                "agency_address": f"127.0.0.1:{port.agency}",
                "agency_tls_address": f"127.0.0.1:{port.agency_tls}",
                "peer_address": f"127.0.0.1:{port.peer}",
                "config": str(config),
                "log": str(self.state / "logs" / f"gateway-{agency.key}.log"),
            }
            agencies[agency.key] = {
                "member": str(agency.member),
                "name": agency.member_name,
                "subsystem": str(agency.subsystem),
                "gateway": agency.key,
                "backend_address": f"127.0.0.1:{port.backend}" if port.backend else None,
                "services": [service.name for service in agency.services],
                "client_certificate": str(clients / "cert.pem"),
                "client_key": str(clients / "key.pem"),
            }
            if port.backend and self._start_backends:
                self._children.append(
                    self._child(
                        f"agency-{agency.key}",
                        ["agency", "run", agency.key, "--listen", f"127.0.0.1:{port.backend}"],
                    )
                )
        for agency in self._agencies:
            self._children.append(
                self._child(
                    f"gateway-{agency.key}",
                    ["gateway", "run", "--config", gateways[agency.key]["config"]],
                )
            )
        self.document = {
            "instance": INSTANCE,
            "ca_bundle": str(self.ca_bundle),
            "global_configuration": str(global_file),
            "gateways": gateways,
            "agencies": agencies,
        }

    def _gateway_toml(self, agency: Agency, port: _Ports, global_file: Path) -> str:
        folder = self.state / "gateways" / agency.key
        lines = [
            "# Written by `pintu up`; rewritten at every start.",
            f"server = {_toml_string(agency.member.server(SERVER_CODE))}",
            f"global_configuration = {_toml_string(global_file)}",
            "",
            "[peer]",
            f'listen = "127.0.0.1:{port.peer}"',
            f"key = {_toml_string(folder / 'auth.key')}",
            f"certificate = {_toml_string(folder / 'auth.pem')}",
            f"trust_anchors = {_toml_string(self.ca_bundle)}",
            "",
            "[agency]",
            f'listen = "127.0.0.1:{port.agency}"',
            f'tls_listen = "127.0.0.1:{port.agency_tls}"',
            f"tls_key = {_toml_string(folder / 'agency-tls.key')}",
            f"tls_certificate = {_toml_string(folder / 'agency-tls.pem')}",
            f"tls_client_trust_anchors = {_toml_string(self.ca_bundle)}",
            "",
            "[limits]",
            "shutdown_grace_seconds = 5",
            "",
            "[[clients]]",
            f"id = {_toml_string(agency.subsystem)}",
        ]
        for service in agency.services:
            lines += [
                "",
                "[[services]]",
                f"id = {_toml_string(agency.subsystem.service(service.name))}",
                f'backend = "127.0.0.1:{port.backend}"',
                "timeout_seconds = 30",
            ]
        return "\n".join(lines) + "\n"

    def _child(self, name: str, arguments: list[str]) -> _Child:
        ready = self.state / "run" / f"{name}.ready"
        command = [sys.executable, "-m", "pintu", *arguments, "--ready-file", str(ready)]
        return _Child(name, command, ready, self.state / "logs" / f"{name}.log")

    # -- running ------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        """Start every process, wait until all serve, then write ``federation.json``.

        Raises:
            FederationError: a process exited or did not become ready in time (all are stopped).
        """
        if not self.document:
            self.prepare()
        try:
            for child in self._children:
                child.ready_file.parent.mkdir(parents=True, exist_ok=True)
                child.ready_file.unlink(missing_ok=True)
                child.log.parent.mkdir(parents=True, exist_ok=True)
                with child.log.open("ab") as log:
                    child.process = subprocess.Popen(
                        child.command,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        start_new_session=True,
                    )
            deadline = time.monotonic() + timeout
            for child in self._children:
                while not child.ready_file.exists():
                    self.check()
                    if time.monotonic() > deadline:
                        raise FederationError(
                            f"{child.name} did not become ready within {timeout:.0f} s "
                            f"(see {child.log})"
                        )
                    time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        scratch = self.federation_file.with_suffix(".tmp")
        scratch.write_text(json.dumps(self.document, indent=2) + "\n", encoding="utf-8")
        os.replace(scratch, self.federation_file)
        return self.document

    @property
    def pids(self) -> dict[str, int]:
        """The process id of every started child, by name (``gateway-<agency>``, ...)."""
        return {c.name: c.process.pid for c in self._children if c.process is not None}

    def check(self) -> None:
        """Raise if any started process has exited.

        Raises:
            FederationError: naming the process, its exit status and its log.
        """
        for child in self._children:
            if child.process is not None and child.process.poll() is not None:
                raise FederationError(
                    f"{child.name} exited with status {child.process.returncode} (see {child.log})"
                )

    def stop(self, timeout: float = 15.0) -> None:
        """Ask every process to stop (SIGTERM), wait for them, and kill what is left."""
        running = [c for c in self._children if c.process and c.process.poll() is None]
        for child in reversed(running):
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        self.federation_file.unlink(missing_ok=True)

    def __enter__(self) -> LocalFederation:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
