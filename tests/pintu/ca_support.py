"""Running ``pintu ca ...``, ``pintu registry ...`` and ``pintu gateway enroll|register`` as an
operator does: real subprocesses, real ports on 127.0.0.1, OpenSSL's command line to check what
they wrote and served."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import pki
from pintu import free_port

REPO = Path(__file__).resolve().parents[2]
OPENSSL = "/usr/bin/openssl"
INSTANCE = "DEMO"
# Every wait is bounded: a command, the service coming up, a change reaching the service.
COMMAND_TIMEOUT = 30.0
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# The service looks at the CA's database and generations.json about once a second.
PICK_UP = 5.0
SECRET_VARIABLES = ("PINTU_CA_PASSPHRASE", "PINTU_CA_PIN")
ERROR_LINE = re.compile(r"^pintu: error \[(?P<code>[a-z0-9_]+)\]: (?P<message>.+)$")
# An identity may hold spaces (the registry's TLS certificate is "Pintu registry DEMO").
LISTING_LINE = re.compile(
    r"^(?P<serial>\d+)\s+(?P<kind>\S+)\s+(?P<identity>\S.*?)\s+until \S+ \S+\s+(?P<state>.+)$"
)
JOURNAL_LINE = re.compile(
    r"^\s*(?P<sequence>\d+)\s+\S+ \S+\s+(?P<action>\S+)\s+(?P<identity>\S.*?)\s+"
    r"(?P<serial>\d+|-)\s+by (?P<actor>.+?)  (?P<detail>\{.*\})$"
)


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without the CA secrets (each test gives its own), plus
    ``extra`` (e.g. ``SOFTHSM2_CONF``)."""
    variables = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
    variables.update(extra)
    return variables


def pintu(
    *arguments: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m pintu ARGUMENTS``, waited for (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "pintu", *map(str, arguments)],
        cwd=REPO,
        env=environment() if env is None else env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def openssl(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    """``openssl ARGUMENTS``, waited for (bounded)."""
    return subprocess.run(
        [OPENSSL, *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    """The command's output, after checking that it exited 0."""
    assert result.returncode == 0, (
        f"{result.args} exited {result.returncode}\nstdout: {result.stdout}\n"
        f"stderr: {result.stderr}"
    )
    return result.stdout


@dataclass(frozen=True, slots=True)
class Refusal:
    """What ``pintu: error [code]: message`` said."""

    code: str
    message: str


def refused(result: subprocess.CompletedProcess[str]) -> Refusal:
    """The error a command reported, after checking it exited 2 with exactly one error line."""
    assert result.returncode == 2, (
        f"{result.args} exited {result.returncode}, not 2\nstdout: {result.stdout}\n"
        f"stderr: {result.stderr}"
    )
    errors = [m for line in result.stderr.splitlines() if (m := ERROR_LINE.match(line))]
    assert len(errors) == 1, f"expected one `pintu: error [code]: ...` line:\n{result.stderr}"
    return Refusal(errors[0]["code"], errors[0]["message"])


def certificates(path: Path) -> list[x509.Certificate]:
    """The PEM certificates in ``path``."""
    return x509.load_pem_x509_certificates(path.read_bytes())


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return path.stat().st_mode & 0o777


def wait_until(check: Callable[[], bool], what: str, timeout: float = PICK_UP) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.2)


@dataclass(frozen=True, slots=True)
class CaDirectory:
    """A CA folder made by ``pintu ca init``, with the secret file its commands are given."""

    path: Path
    secret: Path
    listen: str
    http_listen: str
    env: dict[str, str]

    @staticmethod
    def of(path: Path, secret: Path, env: dict[str, str]) -> CaDirectory:
        """An existing CA folder; its addresses as its ca.toml gives them."""
        settings = tomllib.loads((path / "ca.toml").read_text(encoding="utf-8"))
        return CaDirectory(path, secret, settings["listen"], settings["http_listen"], env)

    def run(self, action: str, *arguments: str | Path) -> subprocess.CompletedProcess[str]:
        """``pintu ca ACTION --dir DIR --passphrase-file SECRET ARGUMENTS``."""
        return pintu(
            "ca",
            action,
            "--dir",
            self.path,
            "--passphrase-file",
            self.secret,
            *arguments,
            env=self.env,
        )

    def token(self, server: str) -> str:
        """A token for ``server`` from ``pintu ca token``."""
        lines = succeeded(self.run("token", "--server", server)).splitlines()
        assert len(lines) == 1, lines
        assert lines[0].strip(), "ca token printed an empty token"
        return lines[0].strip()

    def listing(self) -> dict[int, dict[str, str]]:
        """``pintu ca list``, by serial."""
        rows: dict[int, dict[str, str]] = {}
        for line in succeeded(pintu("ca", "list", "--dir", self.path, env=self.env)).splitlines():
            match = LISTING_LINE.match(line)
            assert match, f"unexpected ca list line: {line!r}"
            rows[int(match["serial"])] = match.groupdict()
        return rows

    def journal(self) -> list[dict[str, str]]:
        """``pintu ca list --journal``, in order."""
        result = pintu("ca", "list", "--dir", self.path, "--journal", env=self.env)
        entries = []
        for line in succeeded(result).splitlines():
            match = JOURNAL_LINE.match(line)
            assert match, f"unexpected journal line: {line!r}"
            entries.append(match.groupdict())
        return entries

    def pem(self, generation: int, name: str) -> Path:
        """``G<generation>/<name>.pem``."""
        return self.path / f"G{generation}" / f"{name}.pem"

    @property
    def ocsp_url(self) -> str:
        return f"http://{self.http_listen}/ocsp"

    def ocsp(
        self, certificate: Path, generation: int = 1, *more: str | Path
    ) -> subprocess.CompletedProcess[str]:
        """``openssl ocsp`` about ``certificate``, at this CA's responder, trusting its root."""
        return openssl(
            "ocsp",
            "-sha256",
            "-issuer",
            self.pem(generation, "issuing"),
            "-cert",
            certificate,
            "-url",
            self.ocsp_url,
            "-CAfile",
            self.pem(generation, "root"),
            *more,
        )


def init_ca(
    path: Path, secret: Path, env: dict[str, str] | None = None, *options: str
) -> CaDirectory:
    """``pintu ca init`` on fresh ports; fails the test if it does not succeed."""
    listen, http_listen = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = environment() if env is None else env
    succeeded(
        pintu(
            "ca",
            "init",
            "--dir",
            path,
            "--instance",
            INSTANCE,
            "--listen",
            listen,
            "--http-listen",
            http_listen,
            "--renewal-listen",
            f"127.0.0.1:{free_port()}",
            "--passphrase-file",
            secret,
            *options,
            env=env,
        )
    )
    return CaDirectory(path, secret, listen, http_listen, env)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, wait (bounded), then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)


@contextmanager
def background(
    arguments: list[str | Path], ready: Path, log_path: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m pintu ARGUMENTS --ready-file READY`` in the background until the block ends;
    waits (bounded) for the ready file; stopped by SIGTERM (then SIGKILL) whatever happens."""
    ready.parent.mkdir(parents=True, exist_ok=True)
    ready.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pintu", *map(str, arguments), "--ready-file", str(ready)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready.exists():
            if process.poll() is not None:
                pytest.fail(f"{command} exited {process.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{command} not ready within {READY_TIMEOUT} s:\n{log_path.read_text()}"
                )
            time.sleep(0.05)
        yield process
    finally:
        stop(process)


@contextmanager
def serving(ca: CaDirectory, scratch: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``pintu ca serve`` in the background until the block ends; waits for its ready file."""
    with background(
        ["ca", "serve", "--dir", ca.path, "--passphrase-file", ca.secret],
        scratch / "ca.ready",
        scratch / "ca-serve.log",
        ca.env,
    ) as process:
        yield process


# --- the registry ---------------------------------------------------------------------------------

MEMBER = "DEMO/GOV/X"
# What every registry of these tests starts with (``pintu registry import``): the member whose
# security servers the tests enroll, and those servers (without certificates: enrollment
# registers them).
FEDERATION: dict[str, object] = {
    "version": 1,
    "instance": INSTANCE,
    "members": [{"id": MEMBER, "name": "Agency X", "subsystems": ["app"]}],
    "security_servers": [
        {"id": f"{MEMBER}/ss1", "address": "127.0.0.1:17103"},
        {"id": f"{MEMBER}/ss2", "address": "127.0.0.1:17203"},
    ],
}


@dataclass(frozen=True, slots=True)
class RegistryDirectory:
    """A registry folder made by ``pintu registry init`` with a CA, and the credentials folder
    of its admin operator (``pintu registry operator``)."""

    path: Path
    ca: CaDirectory
    admin: Path

    @property
    def anchor(self) -> Path:
        return self.path / "anchor.json"

    def run(self, *arguments: str | Path) -> subprocess.CompletedProcess[str]:
        """``pintu registry ARGUMENTS --operator ADMIN``."""
        return pintu("registry", *arguments, "--operator", self.admin, env=self.ca.env)

    def state(self) -> dict[str, Any]:
        """``pintu registry state``, parsed."""
        parsed: dict[str, Any] = json.loads(succeeded(self.run("state")))
        return parsed

    def rotate(self) -> None:
        """``pintu registry rotate-signing-key`` (new keys from the CA's active generation, and
        its current roots); fails the test if it does not succeed."""
        succeeded(
            pintu(
                "registry",
                "rotate-signing-key",
                "--dir",
                self.path,
                "--ca-dir",
                self.ca.path,
                "--passphrase-file",
                self.ca.secret,
                env=self.ca.env,
            )
        )

    def certificates_of(self, server: str) -> list[str]:
        """The SHA-256 (hex) of the certificates registered for ``server``."""
        for entry in self.state()["security_servers"]:
            if entry["id"] == server:
                found: list[str] = entry["certificates_sha256"]
                return found
        raise AssertionError(f"{server} is not in the registry")


def init_registry(ca: CaDirectory, path: Path) -> RegistryDirectory:
    """``pintu registry init`` on fresh ports and ``pintu registry operator`` of ``admin``;
    fails the test if either does not succeed."""
    with_ca: list[str | Path] = ["--dir", path, "--ca-dir", ca.path, "--passphrase-file", ca.secret]
    succeeded(
        pintu(
            "registry",
            "init",
            *with_ca,
            "--instance",
            INSTANCE,
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--http-listen",
            f"127.0.0.1:{free_port()}",
            env=ca.env,
        )
    )
    admin = path.parent / f"{path.name}-admin"
    succeeded(
        pintu(
            "registry",
            "operator",
            *with_ca,
            "--name",
            "admin",
            "--role",
            "admin",
            "--out",
            admin,
            env=ca.env,
        )
    )
    return RegistryDirectory(path, ca, admin)


@contextmanager
def serving_registry(
    registry: RegistryDirectory, scratch: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``pintu registry serve`` in the background until the block ends."""
    with background(
        ["registry", "serve", "--dir", registry.path],
        scratch / "registry.ready",
        scratch / "registry-serve.log",
        registry.ca.env,
    ) as process:
        yield process


def import_federation(registry: RegistryDirectory) -> None:
    """``pintu registry import`` of :data:`FEDERATION` (the registry must be running)."""
    document = registry.path.parent / f"{registry.path.name}-federation.json"
    document.write_text(json.dumps(FEDERATION), encoding="utf-8")
    succeeded(registry.run("import", document, "--reason", "the test federation"))


def fingerprint(path: Path) -> str:
    """SHA-256 (hex) of the first certificate in a PEM file, as the registry names it."""
    der = certificates(path)[0].public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True, slots=True)
class GatewayFiles:
    """A security server's gateway.toml for enrollment, and where enrollment writes."""

    config: Path
    server: str

    @property
    def key(self) -> Path:
        return self.config.parent / "auth.key"

    @property
    def certificate(self) -> Path:
        return self.config.parent / "auth.pem"

    @property
    def signing_key(self) -> Path:
        return self.config.parent / "signing.key"

    @property
    def signing_certificate(self) -> Path:
        return self.config.parent / "signing.pem"


def gateway_files(
    directory: Path, server: str, ca: CaDirectory, *roots: Path, anchor: Path
) -> GatewayFiles:
    """A minimal gateway.toml in ``directory`` (no ``pki.signing_*``: enrollment's defaults,
    signing.key and signing.pem beside it, apply); its trust anchors are ``roots`` (default:
    G1's root) and its registry anchor a copy of ``anchor``, both copied there beforehand as
    enrollment requires."""
    directory.mkdir(parents=True)
    anchors = directory / "anchors.pem"
    anchors.write_bytes(b"".join(r.read_bytes() for r in roots or (ca.pem(1, "root"),)))
    (directory / "anchor.json").write_bytes(anchor.read_bytes())
    config = directory / "gateway.toml"
    config.write_text(
        f'server = "{server}"\n\n'
        "[registry]\n"
        'anchor = "anchor.json"\n\n'
        "[peer]\n"
        'key = "auth.key"\n'
        'certificate = "auth.pem"\n'
        'trust_anchors = "anchors.pem"\n\n'
        "[pki]\n"
        f'ca = "{ca.listen}"\n',
        encoding="utf-8",
    )
    return GatewayFiles(config, server)


def enroll(
    gateway: GatewayFiles, token: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``pintu gateway enroll --config gateway.toml --token TOKEN``."""
    return pintu("gateway", "enroll", "--config", gateway.config, "--token", token, env=env)


def register(gateway: GatewayFiles) -> subprocess.CompletedProcess[str]:
    """``pintu gateway register --config gateway.toml``."""
    return pintu("gateway", "register", "--config", gateway.config)


def trust_bundle(ca: CaDirectory, *anchors: Path) -> pki.TrustUpdate:
    """The running service's trust bundle, fetched over TLS trusting ``anchors``."""
    client = pki.CaClient(ca.listen, b"".join(a.read_bytes() for a in anchors))
    return asyncio.run(client.trust_bundle())
