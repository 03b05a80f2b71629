"""``pintu ca ...`` and ``pintu gateway enroll``: operating the federation's CA from the shell."""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import os
import socket
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pintu._errors import ConfigError
from pki import (
    CaClient,
    CaFolder,
    CaService,
    CaSettings,
    FileKeyStorage,
    IssuancePolicy,
    KeyStorage,
    Pkcs11Token,
    PkiError,
    TlsIdentity,
    TokenKeyStorage,
    accepted_roots,
    load_certificates,
    load_private_key,
    write_private,
    write_public,
)
from pki._keys import certificate_pem, key_pem
from proto import IdentifierError, SecurityServerId
from registry import Anchor, RegistryClient, RegistryError

PASSPHRASE_ENV = "PINTU_CA_PASSPHRASE"  # noqa: S105 - the variable name, not a secret
PIN_ENV = "PINTU_CA_PIN"


def actor() -> str:
    """Who runs this command, for the CA journal."""
    return f"{getpass.getuser()}@{socket.gethostname()} (pintu ca)"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _secret(file: Path | None, variable: str, what: str) -> bytes:
    if file is not None:
        try:
            value = file.read_bytes().strip()
        except OSError as error:
            raise ConfigError(f"{what} file {file}: {error.strerror}") from None
    else:
        value = os.environ.get(variable, "").encode()
    if not value:
        raise ConfigError(f"the CA's {what} is needed: give --passphrase-file or set {variable}")
    return value


@contextmanager
def key_storage(
    directory: Path, settings: CaSettings, secret_file: Path | None
) -> Iterator[KeyStorage]:
    """The CA's key storage, opened with its secret (passphrase or token PIN)."""
    if settings.key_storage == "pkcs11":
        pin = _secret(secret_file, PIN_ENV, "pin").decode()
        with Pkcs11Token(Path(settings.pkcs11_module), settings.pkcs11_token, pin) as token:
            yield TokenKeyStorage(token)
        return
    yield FileKeyStorage(directory, _secret(secret_file, PASSPHRASE_ENV, "passphrase"))


@contextmanager
def open_folder(directory: Path, secret_file: Path | None) -> Iterator[CaFolder]:
    """An existing CA folder with its keys available."""
    if not (directory / "ca.toml").is_file():
        raise ConfigError(f"{directory} holds no CA (run `pintu ca init --dir {directory}`)")
    settings = CaSettings.load(directory / "ca.toml")
    with key_storage(directory, settings, secret_file) as storage:
        yield CaFolder(directory, storage)


def init(
    directory: Path,
    *,
    instance: str,
    listen: str,
    http_listen: str,
    renewal_listen: str,
    public_url: str | None,
    secret_file: Path | None,
    pkcs11_module: str | None,
    pkcs11_token: str | None,
    authentication_lifetime: int,
) -> CaFolder:
    """Create a CA folder: root, issuing CA, responder and service certificates (generation 1)."""
    settings = CaSettings(
        instance=instance,
        listen=listen,
        http_listen=http_listen,
        renewal_listen=renewal_listen,
        public_url=public_url or f"http://{http_listen}",
        policy=IssuancePolicy(
            authentication_lifetime=dt.timedelta(seconds=authentication_lifetime)
        ),
        key_storage="pkcs11" if pkcs11_module else "file",
        pkcs11_module=pkcs11_module or "",
        pkcs11_token=pkcs11_token or "",
    )
    with key_storage(directory, settings, secret_file) as storage:
        return CaFolder.create(directory, settings, storage, now=_now(), actor=actor())


async def serve(directory: Path, secret_file: Path | None, ready_file: Path | None) -> None:
    """Run the CA service until SIGINT or SIGTERM."""
    from pintu._processes import remove_ready, until_signalled, write_ready

    with open_folder(directory, secret_file) as folder:
        service = CaService(folder)
        await service.start()
        try:
            write_ready(ready_file, [service.port, service.renewal_port, service.http_port])
            await until_signalled()
        finally:
            await service.stop()
            remove_ready(ready_file)


def token(directory: Path, secret_file: Path | None, server: str, lifetime: int | None) -> str:
    """A one-time enrollment token for ``server``."""
    try:
        server_id = SecurityServerId.parse(server)
    except IdentifierError as error:
        raise ConfigError(f"--server: {error}") from None
    with open_folder(directory, secret_file) as folder:
        ledger = folder.ledger()
        try:
            return folder.authority(folder.active, ledger).create_token(
                server_id,
                actor=actor(),
                now=_now(),
                lifetime=dt.timedelta(seconds=lifetime) if lifetime else None,
            )
        finally:
            ledger.close()


def revoke(directory: Path, secret_file: Path | None, serial: str, reason: str) -> None:
    """Revoke a certificate by its serial (decimal, or hex with 0x)."""
    try:
        number = int(serial, 16) if serial.lower().startswith("0x") else int(serial)
    except ValueError:
        raise ConfigError(
            f"serial {serial!r}: expected a decimal number or 0x-prefixed hex"
        ) from None
    with open_folder(directory, secret_file) as folder:
        ledger = folder.ledger()
        try:
            folder.authority(folder.active, ledger).revoke(
                number, reason, actor=actor(), now=_now()
            )
        finally:
            ledger.close()


def listing(directory: Path, journal: bool) -> list[str]:
    """The CA's certificates (or its journal) as lines of text. Needs no key."""
    if not (directory / "ca.toml").is_file():
        raise ConfigError(f"{directory} holds no CA")
    folder = CaFolder(directory, FileKeyStorage(directory, None))
    ledger = folder.ledger()
    try:
        if journal:
            return [
                f"{e.sequence:6d}  {e.at:%Y-%m-%d %H:%M:%S}  {e.action:15s} "
                f"{e.identity or '-':35s} {e.serial or '-'}  by {e.actor}  {e.detail}"
                for e in ledger.journal()
            ]
        lines = []
        now = _now()
        for record in ledger.certificates():
            if record.revoked_at is not None:
                state = f"revoked {record.revoked_at:%Y-%m-%d %H:%M} ({record.reason})"
            elif record.not_after <= now:
                state = "expired"
            else:
                state = "valid"
            lines.append(
                f"{record.serial}  {record.kind:14s} {record.identity:35s} "
                f"until {record.not_after:%Y-%m-%d %H:%M}  {state}"
            )
        return lines
    finally:
        ledger.close()


def rollover(directory: Path, secret_file: Path | None, step: str) -> str:
    """One step of a root rollover; returns what happened, in words."""
    with open_folder(directory, secret_file) as folder:
        if step == "begin":
            number = folder.rollover_begin(now=_now(), actor=actor())
            return f"root generation G{number} introduced: trusted beside the current one"
        if step == "switch":
            number = folder.rollover_switch(now=_now(), actor=actor())
            return f"generation G{number} issues from now on"
        retired = folder.rollover_retire(now=_now(), actor=actor())
        return f"retired generation(s) {', '.join(f'G{n}' for n in retired)}"


def _read_config(config: Path) -> tuple[dict[str, Any], Callable[..., Path]]:
    """The TOML document of ``config`` and a function resolving ``table.key`` paths in it."""
    try:
        document = tomllib.loads(config.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{config}: {error}") from None
    base = config.parent

    def path(table: str, key: str, default: str | None = None) -> Path:
        section = document.get(table, {})
        value = section.get(key, default) if isinstance(section, dict) else None
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{config}: {table}.{key}: required")
        return (base / value).resolve()

    return document, path


def _anchor(config: Path, path: Callable[..., Path]) -> Anchor:
    try:
        return Anchor.load(path("registry", "anchor"))
    except RegistryError as error:
        raise ConfigError(f"{config}: registry.anchor: {error}") from None


def enroll(config: Path, token_text: str) -> str:
    """Enroll the security server that ``config`` describes: generate its keys here, have the CA
    certify them, write key, certificate and trust anchors where the config says, and register
    the new authentication certificate with the registry."""
    document, path = _read_config(config)
    try:
        server = SecurityServerId.parse(document.get("server"))
    except IdentifierError as error:
        raise ConfigError(f"{config}: server: {error}") from None
    ca = document.get("pki", {}).get("ca")
    if not isinstance(ca, str) or not ca:
        raise ConfigError(f"{config}: pki.ca: required for enrollment")
    anchors_path = path("peer", "trust_anchors")
    _anchor(config, path)  # checked before the one-time token is spent
    roots = load_certificates(anchors_path)
    client = CaClient(ca, certificate_pem(*roots))
    authentication, signing, trust = asyncio.run(client.enroll(token_text, server))
    # The anchors obtained out of band, plus a newer root only if one of them cross-certifies it.
    write_public(anchors_path, certificate_pem(*accepted_roots(roots, trust, _now())))
    write_private(path("peer", "key"), key_pem(authentication.key))
    write_public(
        path("peer", "certificate"),
        certificate_pem(authentication.certificate, *authentication.chain),
    )
    write_private(path("pki", "signing_key", "signing.key"), key_pem(signing.key))
    write_public(
        path("pki", "signing_certificate", "signing.pem"),
        certificate_pem(signing.certificate, *signing.chain),
    )
    enrolled = (
        f"enrolled {server}: authentication certificate {authentication.certificate.serial_number}"
        f" until {authentication.certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    )
    try:
        return f"{enrolled}\n{register(config)}"
    except RegistryError as error:
        raise RegistrationFailed(
            f"{enrolled}, but registering the certificate failed ({error}); run"
            f" `pintu gateway register --config {config}` once the registry is reachable"
        ) from None


class RegistrationFailed(RegistryError):
    """The certificate was issued but the registry did not take it."""

    code = "registration_failed"


def register(config: Path) -> str:
    """Register the security server's current authentication certificate with the registry (the
    one the anchor named in ``config`` points at), dropping its other certificates."""
    _, path = _read_config(config)
    anchor = _anchor(config, path)
    try:
        identity = TlsIdentity.build(
            load_private_key(path("peer", "key")),
            load_certificates(path("peer", "certificate")),
            load_certificates(path("peer", "trust_anchors")),
        )
    except PkiError as error:
        raise ConfigError(f"{config}: peer: {error}") from None
    version = asyncio.run(RegistryClient(anchor.registry, identity).register_certificate())
    return f"registered the certificate with the registry (version {version})"
