"""``pintu consent ...``: the consent service's folder, the service, and operators' commands.

A consent folder (``pintu consent init``) holds::

    DIR/consent.toml      the settings below
    DIR/tls.key|pem       the service's TLS certificate (consent.pintu.invalid)
    DIR/signing.key|pem   the document-signing key that signs receipts; its certificate chain
    DIR/roots.pem         the federation's roots
    DIR/consent.db        the SQLite database (unless ``database`` names PostgreSQL)
    DIR/global-configuration.pb   the last good global configuration

``consent.toml``::

    database = "sqlite:////var/lib/pintu/consent/consent.db"   # or postgresql+psycopg://...
    listen = "127.0.0.1:7600"               # gRPC over mutual TLS
    address = "127.0.0.1:7600"              # as security servers and operators reach it
    anchor = "/var/lib/pintu/registry/anchor.json"   # the registry's anchor
    signer = "DEMO/GOV/PINTU"               # the member whose signing certificate signs receipts
    operators = ["admin", "portal"]         # operators that may grant and change consents
    heartbeat_seconds = 0.5
    pseudonym_key = "/var/lib/pintu/pseudonym.key"   # optional: the federation's key for
                                            # citizens' pseudonyms (at least 32 bytes), to read
                                            # access histories (relative: to the folder)

Operators use the credentials folder of ``pintu registry operator`` (``--operator DIR`` or
``$PINTU_OPERATOR``); its ``operator.toml`` names the consent service as ``consent`` (or give
``--service``).
"""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from consent import (
    AccessEvent,
    Change,
    Consent,
    ConsentClient,
    ConsentDetail,
    ConsentError,
    ConsentService,
    ConsentSettings,
    parse_provider,
    verify_receipt,
)
from pintu._errors import ConfigError
from pintu._registry import operator_credentials
from pki import (
    Authority,
    TlsIdentity,
    certificate_pem,
    certificate_request,
    generate_key,
    key_pem,
    load_certificates,
    load_private_key,
    write_private,
    write_public,
)
from proto import IdentifierError, MemberId, OperatorId, ServiceId, SubsystemId
from registry import Anchor, ConfigurationClient, RegistryError, parse_address

TLS_LIFETIME = dt.timedelta(days=365)
SIGNING_LIFETIME = dt.timedelta(days=365)
_KEYS = (
    "database",
    "listen",
    "address",
    "anchor",
    "signer",
    "operators",
    "heartbeat_seconds",
    "pseudonym_key",
)
MIN_PSEUDONYM_KEY = 32


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def read_pseudonym_key(path: Path, name: str) -> bytes:
    """The federation's pseudonym key in ``path`` (ConfigError, naming ``name``: unreadable or
    shorter than 32 bytes)."""
    try:
        key = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{name}: {path} cannot be read: {error.strerror}") from None
    if len(key) < MIN_PSEUDONYM_KEY:
        raise ConfigError(f"{name}: {path} must hold at least {MIN_PSEUDONYM_KEY} bytes")
    return key


@dataclass(frozen=True)
class ConsentFolder:
    """A consent service's folder (see the module docstring)."""

    path: Path

    @property
    def settings_file(self) -> Path:
        return self.path / "consent.toml"

    def read(self) -> dict[str, Any]:
        """The settings file's content (ConfigError: missing or not TOML)."""
        try:
            return tomllib.loads(self.settings_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"{self.path} holds no consent service (run `pintu consent init --dir {self.path}`)"
            ) from None
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{self.settings_file}: {error}") from None

    def write(self, document: dict[str, Any]) -> None:
        """Write the settings file."""
        lines = ["# The consent service's settings (see `pintu consent --help`)."]
        lines += [f"{key} = {json.dumps(document[key])}" for key in _KEYS if key in document]
        write_public(self.settings_file, ("\n".join(lines) + "\n").encode())

    def settings(self) -> ConsentSettings:
        """The service's settings, with its keys and the global configuration loaded.

        Raises:
            ConfigError: naming the setting at fault.
        """
        document = self.read()
        where = self.settings_file
        unknown = sorted(set(document) - set(_KEYS))
        if unknown:
            raise ConfigError(f"{where}: {unknown[0]}: unknown setting")
        for key in ("database", "listen", "anchor"):
            if not isinstance(document.get(key), str) or not document[key]:
                raise ConfigError(f"{where}: {key}: expected a non-empty string")
        try:
            parse_address(document["listen"], "listen")
        except RegistryError as error:
            raise ConfigError(f"{where}: {error}") from None
        names = document.get("operators", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"{where}: operators: expected a list of operator names")
        try:
            operators = frozenset(OperatorId(name) for name in names)
        except IdentifierError as error:
            raise ConfigError(f"{where}: operators: {error}") from None
        heartbeat = document.get("heartbeat_seconds", 0.5)
        if not isinstance(heartbeat, (int, float)) or not 0.05 <= heartbeat <= 10:
            raise ConfigError(f"{where}: heartbeat_seconds: between 0.05 and 10")
        pseudonym_key = None
        if "pseudonym_key" in document:
            named = document["pseudonym_key"]
            if not isinstance(named, str) or not named:
                raise ConfigError(f"{where}: pseudonym_key: expected a non-empty path")
            pseudonym_key = read_pseudonym_key(self.path / named, f"{where}: pseudonym_key")
        try:
            anchor = Anchor.load(Path(document["anchor"]))
        except RegistryError as error:
            raise ConfigError(f"{where}: anchor: {error}") from None
        source = ConfigurationClient(
            anchor, self.path / "global-configuration.pb", poll=dt.timedelta(seconds=2)
        )
        try:
            source.bootstrap()
        except RegistryError as error:
            raise ConfigError(f"{where}: anchor: no global configuration: {error}") from None
        signing_key = load_private_key(self.path / "signing.key")
        if not isinstance(signing_key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{self.path / 'signing.key'}: receipts are signed with P-256 keys")
        return ConsentSettings(
            database=document["database"],
            listen=document["listen"],
            tls=self.tls(),
            signing_key=signing_key,
            signing_chain=tuple(load_certificates(self.path / "signing.pem")),
            registry=source,
            operators=operators,
            heartbeat_seconds=float(heartbeat),
            pseudonym_key=pseudonym_key,
        )

    def tls(self) -> TlsIdentity:
        """The service's TLS identity, trusting the federation's roots."""
        return TlsIdentity.build(
            load_private_key(self.path / "tls.key"),
            load_certificates(self.path / "tls.pem"),
            load_certificates(self.path / "roots.pem"),
        )


def init_consent(
    directory: Path,
    authority: Authority,
    roots: list[x509.Certificate],
    *,
    listen: str,
    anchor: Path,
    signer: str,
    operators: list[str],
    address: str | None = None,
    database: str | None = None,
    pseudonym_key: Path | None = None,
    actor: str,
) -> ConsentFolder:
    """Create a consent folder: settings, TLS and receipt-signing certificates, roots; with
    ``pseudonym_key`` (the federation's key file), operators may read access histories."""
    folder = ConsentFolder(directory)
    if folder.settings_file.exists():
        raise ConfigError(f"{directory} holds a consent service already")
    if pseudonym_key is not None:
        read_pseudonym_key(pseudonym_key, "--pseudonym-key")
    for option, value in (("--listen", listen), ("--address", address)):
        if value is not None:
            try:
                parse_address(value, option)
            except RegistryError as error:
                raise ConfigError(str(error)) from None
    try:
        member = MemberId.parse(signer)
        for name in operators:
            OperatorId(name)
    except IdentifierError as error:
        raise ConfigError(str(error)) from None
    directory.mkdir(parents=True, exist_ok=True)
    write_public(directory / "roots.pem", certificate_pem(*roots))
    host = (address or listen).rpartition(":")[0].strip("[]")
    tls_key, signing_key = generate_key(), generate_key()
    tls = authority.certify(
        "consent",
        "Pintu consent service",
        certificate_request(tls_key, "urn:pintu:consent-service"),
        names=tuple({host, "localhost"}),
        actor=actor,
        now=_now(),
        lifetime=TLS_LIFETIME,
    )
    signing = authority.certify(
        "document-signing",
        str(member),
        certificate_request(signing_key, member.uri),
        actor=actor,
        now=_now(),
        lifetime=SIGNING_LIFETIME,
    )
    write_private(directory / "tls.key", key_pem(tls_key))
    write_public(directory / "tls.pem", certificate_pem(tls.certificate, *tls.chain))
    write_private(directory / "signing.key", key_pem(signing_key))
    write_public(directory / "signing.pem", certificate_pem(signing.certificate, *signing.chain))
    document: dict[str, Any] = {
        "database": database or f"sqlite:///{(directory / 'consent.db').resolve()}",
        "listen": listen,
        "address": address or listen,
        "anchor": str(anchor.resolve()),
        "signer": str(member),
        "operators": sorted(set(operators)),
        "heartbeat_seconds": 0.5,
    }
    if pseudonym_key is not None:
        document["pseudonym_key"] = str(pseudonym_key.resolve())
    folder.write(document)
    return folder


def point_operator(out: Path, address: str) -> None:
    """Name the consent service (``consent = ...``) in an operator's ``operator.toml``."""
    path = out / "operator.toml"
    kept = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if not line.startswith("consent ")
    ]
    write_public(path, ("\n".join([*kept, f"consent = {json.dumps(address)}"]) + "\n").encode())


def move(
    folder: ConsentFolder,
    listen: str,
    roots: list[x509.Certificate],
    *,
    pseudonym_key: Path | None = None,
) -> None:
    """Point an existing consent folder at a new address and the CA's current roots (and at
    ``pseudonym_key``, when given)."""
    document = folder.read()
    document.update(listen=listen, address=listen)
    if pseudonym_key is not None:
        read_pseudonym_key(pseudonym_key, "pseudonym_key")
        document["pseudonym_key"] = str(pseudonym_key.resolve())
    folder.write(document)
    write_public(folder.path / "roots.pem", certificate_pem(*roots))


async def serve(directory: Path, ready_file: Path | None) -> None:
    """Run the consent service until SIGINT or SIGTERM."""
    from pintu._processes import remove_ready, until_signalled, write_ready

    service = ConsentService(ConsentFolder(directory).settings())
    await service.start()
    try:
        write_ready(ready_file, [service.port])
        await until_signalled()
    finally:
        await service.stop()
        remove_ready(ready_file)


# -- operators' commands ------------------------------------------------------------------------


def operator_client(directory: Path | None, service: str | None) -> ConsentClient:
    """The consent client of the operator whose credentials are in ``directory`` (default:
    ``$PINTU_OPERATOR``), calling ``service`` (default: the credentials' ``consent``)."""
    document, identity, path = operator_credentials(directory)
    address = service or document.get("consent")
    if not isinstance(address, str) or not address:
        raise ConfigError(f"{path}: consent: missing (give --consent-service host:port)")
    return ConsentClient(address, identity)


class OperatorDesk:
    """Grants and revokes consents through the consent service as an operator (for the demo:
    what the citizen portal does for a citizen). Implements ``demo.ConsentDesk``."""

    def __init__(self, operator: Path, address: str, *, days: float = 90.0) -> None:
        self._operator = operator
        self._address = address
        self._days = days

    async def grant(
        self, subject: str, provider: str, consumer: str, service: str, purpose: str, text: str
    ) -> str:
        """Record a consent as the citizen's; its id."""
        detail = detail_from_options(
            subject=subject,
            provider=provider,
            consumer=consumer,
            services=[service],
            categories=[],
            purpose=purpose,
            text=text,
            days=self._days,
        )
        async with operator_client(self._operator, self._address) as client:
            granted, _ = await client.grant(detail, actor=f"citizen {subject}")
        return granted.id

    async def revoke(self, subject: str, consent_id: str) -> None:
        """Revoke a consent as the citizen."""
        async with operator_client(self._operator, self._address) as client:
            await client.change(
                consent_id, Change.REVOKE, subject=subject, actor=f"citizen {subject}"
            )


def detail_from_options(
    *,
    subject: str,
    provider: str,
    consumer: str,
    services: list[str],
    categories: list[str],
    purpose: str,
    text: str,
    days: float,
) -> ConsentDetail:
    """A consent detail from the command line (ConsentError or ConfigError: malformed)."""
    try:
        now = _now()
        return ConsentDetail(
            subject=subject,
            provider=parse_provider(provider),
            consumer=SubsystemId.parse(consumer),
            purpose=purpose,
            purpose_text=text,
            valid_from=now,
            valid_until=now + dt.timedelta(days=days),
            services=tuple(ServiceId.parse(s) for s in services),
            data_categories=tuple(categories),
        )
    except (IdentifierError, OverflowError) as error:
        raise ConfigError(str(error)) from None


def consent_lines(consent: Consent, now: dt.datetime | None = None) -> list[str]:
    """A consent, for people: one summary line, then its history."""
    detail = consent.detail
    covered = ", ".join([*(str(s) for s in detail.services), *detail.data_categories])
    lines = [
        f"{consent.id}  {consent.status_at(now or _now()).value:<8} {detail.subject}"
        f"  {detail.consumer} <- {detail.provider} ({covered}) for {detail.purpose},"
        f" {detail.valid_from.date()} to {detail.valid_until.date()}"
    ]
    for change in consent.history:
        reason = f" ({change.reason})" if change.reason else ""
        lines.append(
            f"    {change.at.isoformat()}  {change.status.value:<8} {change.actor}{reason}"
        )
    return lines


def access_lines(events: list[AccessEvent]) -> list[str]:
    """A citizen's access history, for people: one line per exchange."""
    lines = []
    for event in events:
        outcome = "allowed" if event.allowed else f"refused ({event.code})"
        via = f" via {event.consumer_server}" if event.consumer_server else ""
        purpose = f" for {event.purpose}" if event.purpose else ""
        checkpoint = (
            f"  checkpoint {event.checkpoint_size}" if event.checkpoint_size else "  no checkpoint"
        )
        lines.append(
            f"{event.at.isoformat()}  {outcome}  {event.consumer or '?'}{via}"
            f" -> {event.provider or '?'} {event.method or '?'}{purpose}"
            f"  message {event.message_id}  {event.log} #{event.seq}{checkpoint}"
        )
    return lines


def verify(receipt_file: Path, roots_file: Path, signer: str) -> str:
    """Check a receipt offline; what it says (ConsentError: invalid)."""
    try:
        token = receipt_file.read_text(encoding="utf-8")
        roots = load_certificates(roots_file)
        expected = MemberId.parse(signer)
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{error}") from None
    except IdentifierError as error:
        raise ConfigError(f"--signer: {error}") from None
    receipt = verify_receipt(token, roots, signer=expected)
    detail = receipt.detail
    return (
        f"{receipt_file}: valid receipt of consent {receipt.consent_id}, signed by"
        f" {receipt.signer} on {receipt.issued_at.isoformat()}: {detail.subject} lets"
        f" {detail.consumer} obtain {', '.join(str(s) for s in detail.services) or ''}"
        f"{', '.join(detail.data_categories)} from {detail.provider} for {detail.purpose}"
        f" until {detail.valid_until.isoformat()}"
    )


__all__ = [
    "Change",
    "ConsentError",
    "ConsentFolder",
    "OperatorDesk",
    "access_lines",
    "consent_lines",
    "detail_from_options",
    "init_consent",
    "move",
    "operator_client",
    "point_operator",
    "serve",
    "verify",
]
