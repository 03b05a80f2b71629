"""``pintu registry ...``: a registry's folder, its service, and operators' changes.

A registry folder (``pintu registry init``) holds::

    DIR/registry.toml     the settings below
    DIR/signing.key|pem   the configuration-signing key; its certificate and the issuing CA
    DIR/tls.key|pem       the management service's TLS certificate (registry.pintu.invalid)
    DIR/roots.pem         the federation's roots: operators' and servers' certificates chain here
    DIR/anchor.json       what every security server needs, handed out out of band
    DIR/registry.db       the SQLite database (unless ``database`` names PostgreSQL)

``registry.toml``::

    instance = "DEMO"
    database = "sqlite:////var/lib/pintu/registry/registry.db"   # or postgresql+psycopg://...
    listen = "127.0.0.1:7500"                # management: gRPC over mutual TLS
    http_listen = "127.0.0.1:7501"           # distribution: GET /global-configuration
    address = "127.0.0.1:7500"               # management address as servers reach it
    distribution = ["http://127.0.0.1:7501/global-configuration"]
    validity_seconds = 3600                  # a snapshot's lifetime; re-signed at half
    [operators]                              # operator name = role (admin or viewer)
    admin = "admin"

An operator's credentials folder (``pintu registry operator``) holds ``operator.toml``
(``registry`` address, ``key``, ``certificate``, ``trust_anchors``) and the files it names;
``pintu registry <change> --operator DIR`` (or ``$PINTU_OPERATOR``) uses it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

from pintu._errors import ConfigError
from pki import (
    Authority,
    PkiError,
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
from proto import (
    IdentifierError,
    MemberId,
    OperatorId,
    RegistryId,
    SecurityServerId,
    ServiceId,
    SubsystemId,
)
from proto.pintu.v1 import registry_pb2
from registry import (
    ROLES,
    Anchor,
    GlobalConfiguration,
    RegistryClient,
    RegistryError,
    RegistryService,
    RegistrySettings,
    import_changes,
    parse_address,
)

LOGGER = logging.getLogger("pintu.registry")
_DER = Encoding.DER
SIGNING_LIFETIME = dt.timedelta(days=365)
TLS_LIFETIME = dt.timedelta(days=365)
OPERATOR_LIFETIME = dt.timedelta(days=90)
OPERATOR_ENV = "PINTU_OPERATOR"
# How often `serve` looks for rotated keys and changed operators.
_SIGNER_CHECK = 1.0
# A snapshot's lifetime, seconds: at least a minute, at most 30 days.
_VALIDITY = (60, 30 * 86_400)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _toml_value(value: object) -> str:
    return json.dumps(value, ensure_ascii=True)


@dataclass(frozen=True)
class RegistryFolder:
    """A registry's folder (see the module docstring)."""

    path: Path

    @property
    def settings_file(self) -> Path:
        return self.path / "registry.toml"

    @property
    def anchor_file(self) -> Path:
        return self.path / "anchor.json"

    def read(self) -> dict[str, Any]:
        """The settings file's content.

        Raises:
            ConfigError: missing or not TOML.
        """
        try:
            return tomllib.loads(self.settings_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"{self.path} holds no registry (run `pintu registry init --dir {self.path}`)"
            ) from None
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{self.settings_file}: {error}") from None

    def write(self, document: dict[str, Any]) -> None:
        """Write the settings file."""
        lines = [
            "# The registry's settings (see `pintu registry --help`).",
            *(
                f"{key} = {_toml_value(document[key])}"
                for key in (
                    "instance",
                    "database",
                    "listen",
                    "http_listen",
                    "address",
                    "distribution",
                    "validity_seconds",
                )
            ),
            "",
            "[operators]",
            *(
                f"{_toml_value(name)} = {_toml_value(role)}"
                for name, role in sorted(document.get("operators", {}).items())
            ),
        ]
        write_public(self.settings_file, ("\n".join(lines) + "\n").encode())

    def settings(self) -> RegistrySettings:
        """The service's settings, with its keys loaded.

        Raises:
            ConfigError: naming the setting at fault.
        """
        document = self.read()

        def text(key: str) -> str:
            value = document.get(key)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{self.settings_file}: {key}: expected a non-empty string")
            return value

        validity = document.get("validity_seconds", 3600)
        if not isinstance(validity, int) or not _VALIDITY[0] <= validity <= _VALIDITY[1]:
            raise ConfigError(
                f"{self.settings_file}: validity_seconds: {_VALIDITY[0]} to {_VALIDITY[1]}"
            )
        operators: dict[OperatorId, str] = {}
        for name, role in dict(document.get("operators", {})).items():
            try:
                operator = OperatorId(name)
            except IdentifierError as error:
                raise ConfigError(f"{self.settings_file}: operators.{name}: {error}") from None
            if role not in ROLES:
                raise ConfigError(
                    f"{self.settings_file}: operators.{name}: role must be one of"
                    f" {', '.join(ROLES)}"
                )
            operators[operator] = role
        key, chain = self.signer()
        return RegistrySettings(
            instance=text("instance"),
            database=text("database"),
            listen=text("listen"),
            http_listen=text("http_listen"),
            tls=self.tls(),
            signing_key=key,
            signing_chain=tuple(chain),
            operators=operators,
            validity=dt.timedelta(seconds=validity),
        )

    def tls(self) -> TlsIdentity:
        """The management service's TLS identity, trusting the federation's roots."""
        return TlsIdentity.build(
            load_private_key(self.path / "tls.key"),
            load_certificates(self.path / "tls.pem"),
            load_certificates(self.path / "roots.pem"),
        )

    def signer(self) -> tuple[Any, list[x509.Certificate]]:
        """The configuration-signing key and its certificate chain."""
        return load_private_key(self.path / "signing.key"), load_certificates(
            self.path / "signing.pem"
        )

    def anchor(self) -> Anchor:
        """The anchor security servers need."""
        document = self.read()
        return Anchor(
            document["instance"],
            tuple(document["distribution"]),
            document["address"],
            tuple(load_certificates(self.path / "roots.pem")),
        )

    # -- certificates from the CA ---------------------------------------------------------------

    def issue_signer(
        self,
        authority: Authority,
        instance: str,
        *,
        actor: str,
        cross: Sequence[x509.Certificate] = (),
    ) -> None:
        """A new configuration-signing key and certificate (creation and rotation); ``cross``
        (the issuing root certified by the previous one, during a rollover) ends its chain."""
        key = generate_key()
        issued = authority.certify(
            "configuration-signing",
            instance,
            certificate_request(key, RegistryId(instance).uri),
            actor=actor,
            now=_now(),
            lifetime=SIGNING_LIFETIME,
        )
        # The certificate first, so a reader never pairs the new key with the old certificate
        # for long; `serve` reloads once both have changed.
        write_private(self.path / "signing.key.new", key_pem(key))
        write_public(
            self.path / "signing.pem.new",
            certificate_pem(issued.certificate, *issued.chain, *cross),
        )
        os.replace(self.path / "signing.key.new", self.path / "signing.key")
        os.replace(self.path / "signing.pem.new", self.path / "signing.pem")

    def issue_tls(
        self,
        authority: Authority,
        instance: str,
        names: Iterable[str],
        *,
        actor: str,
        cross: Sequence[x509.Certificate] = (),
    ) -> None:
        """The management service's TLS certificate; ``cross`` ends its chain, so that clients
        still trusting only the previous root reach the service during a rollover."""
        key = generate_key()
        issued = authority.certify(
            "registry",
            f"Pintu registry {instance}",
            certificate_request(key, RegistryId(instance).uri),
            names=tuple(names),
            actor=actor,
            now=_now(),
            lifetime=TLS_LIFETIME,
        )
        write_private(self.path / "tls.key", key_pem(key))
        write_public(
            self.path / "tls.pem", certificate_pem(issued.certificate, *issued.chain, *cross)
        )


def init_registry(
    directory: Path,
    authority: Authority,
    roots: list[x509.Certificate],
    *,
    instance: str,
    listen: str,
    http_listen: str,
    address: str | None = None,
    distribution: list[str] | None = None,
    database: str | None = None,
    validity_seconds: int = 3600,
    actor: str,
) -> RegistryFolder:
    """Create a registry folder: settings, signing and TLS certificates, roots and anchor."""
    folder = RegistryFolder(directory)
    if folder.settings_file.exists():
        raise ConfigError(f"{directory} holds a registry already")
    try:
        RegistryId(instance)
    except IdentifierError as error:
        raise ConfigError(f"--instance: {error}") from None
    for option, value in (
        ("--listen", listen),
        ("--http-listen", http_listen),
        ("--address", address),
    ):
        if value is not None:
            try:
                parse_address(value, option)
            except RegistryError as error:
                raise ConfigError(str(error)) from None
    for url in distribution or []:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--distribution: {url!r} is not an http:// or https:// URL")
    if not _VALIDITY[0] <= validity_seconds <= _VALIDITY[1]:
        raise ConfigError(
            f"--validity: {validity_seconds} is not between {_VALIDITY[0]} and {_VALIDITY[1]}"
            " seconds"
        )
    directory.mkdir(parents=True, exist_ok=True)
    host = (address or listen).rpartition(":")[0].strip("[]")
    write_public(directory / "roots.pem", certificate_pem(*roots))
    folder.issue_signer(authority, instance, actor=actor)
    folder.issue_tls(authority, instance, {host, "localhost"}, actor=actor)
    folder.write(
        {
            "instance": instance,
            "database": database or f"sqlite:///{(directory / 'registry.db').resolve()}",
            "listen": listen,
            "http_listen": http_listen,
            "address": address or listen,
            "distribution": distribution or [f"http://{http_listen}/global-configuration"],
            "validity_seconds": validity_seconds,
            "operators": {},
        }
    )
    folder.anchor().save(folder.anchor_file)
    return folder


def add_operator(
    folder: RegistryFolder,
    authority: Authority,
    name: str,
    role: str,
    out: Path,
    *,
    actor: str,
) -> Path:
    """Issue an operator's certificate into ``out`` (with ``operator.toml``) and grant ``role``
    in the registry's settings (a running registry takes it at its next start)."""
    try:
        operator = OperatorId(name)
    except IdentifierError as error:
        raise ConfigError(f"--name: {error}") from None
    if role not in ROLES:
        raise ConfigError(f"--role: one of {', '.join(ROLES)}")
    document = folder.read()
    key = generate_key()
    issued = authority.certify(
        "operator",
        str(operator),
        certificate_request(key, operator.uri),
        actor=actor,
        now=_now(),
        lifetime=OPERATOR_LIFETIME,
    )
    write_private(out / "key.pem", key_pem(key))
    write_public(out / "cert.pem", certificate_pem(issued.certificate, *issued.chain))
    write_operator_file(out, folder)
    operators = dict(document.get("operators", {}))
    operators[str(operator)] = role
    document["operators"] = operators
    folder.write(document)
    return out


def write_operator_file(out: Path, folder: RegistryFolder) -> None:
    """Point an operator's credentials folder at the registry (its address and roots)."""
    write_public(out / "roots.pem", (folder.path / "roots.pem").read_bytes())
    write_public(
        out / "operator.toml",
        (
            f"registry = {_toml_value(folder.read()['address'])}\n"
            'key = "key.pem"\ncertificate = "cert.pem"\ntrust_anchors = "roots.pem"\n'
        ).encode(),
    )


async def serve(directory: Path, ready_file: Path | None) -> None:
    """Run the registry until SIGINT or SIGTERM; rotated keys and roots, and operators added
    to its settings, are taken within a second."""
    from pintu._processes import remove_ready, until_signalled, write_ready

    folder = RegistryFolder(directory)
    service = RegistryService(folder.settings())
    await service.start()

    async def follow_signer() -> None:
        signing = (directory / "signing.key", directory / "signing.pem")
        tls = (directory / "tls.key", directory / "tls.pem", directory / "roots.pem")
        watched = (signing, tls, (folder.settings_file,))
        seen = [[f.stat().st_mtime_ns for f in files] for files in watched]
        while True:
            await asyncio.sleep(_SIGNER_CHECK)
            try:
                now = [[f.stat().st_mtime_ns for f in files] for files in watched]
                if now[2] != seen[2]:
                    service.replace_operators(folder.settings().operators)
                    LOGGER.info(
                        "took the operators of %s",
                        folder.settings_file,
                        extra={"pintu_event": {"event": "registry_operators_replaced"}},
                    )
                if now[1] != seen[1]:
                    service.replace_tls(folder.tls())
                    LOGGER.info(
                        "took the new TLS certificate and roots",
                        extra={"pintu_event": {"event": "registry_tls_replaced"}},
                    )
                if now[0] != seen[0]:
                    key, chain = folder.signer()
                    await service.replace_signer(key, tuple(chain))
                    LOGGER.info(
                        "took the new configuration-signing key",
                        extra={"pintu_event": {"event": "registry_signer_replaced"}},
                    )
                seen = now
            except (ConfigError, OSError, PkiError, RegistryError, ValueError) as error:
                # A half-written rotation or settings file: tried again next time.
                LOGGER.warning("new registry keys or settings not (yet) usable: %s", error)

    watcher = asyncio.create_task(follow_signer())
    try:
        write_ready(ready_file, [service.port, service.http_port])
        await until_signalled()
    finally:
        watcher.cancel()
        await service.stop()
        remove_ready(ready_file)


# -- operators' commands ------------------------------------------------------------------------


def operator_credentials(directory: Path | None) -> tuple[dict[str, Any], TlsIdentity, Path]:
    """The ``operator.toml`` of the operator whose credentials are in ``directory`` (default:
    ``$PINTU_OPERATOR``), the identity it names, and its path.

    Raises:
        ConfigError: no folder given, or unreadable credentials.
    """
    if directory is None:
        value = os.environ.get(OPERATOR_ENV, "")
        if not value:
            raise ConfigError(f"give --operator DIR or set {OPERATOR_ENV}")
        directory = Path(value)
    path = directory / "operator.toml"
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
        identity = TlsIdentity.build(
            load_private_key(directory / document["key"]),
            load_certificates(directory / document["certificate"]),
            load_certificates(directory / document["trust_anchors"]),
        )
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: {error}") from None
    return document, identity, path


def operator_client(directory: Path | None) -> RegistryClient:
    """The management client of the operator whose credentials are in ``directory`` (default:
    ``$PINTU_OPERATOR``)."""
    document, identity, path = operator_credentials(directory)
    address = document.get("registry")
    if not isinstance(address, str):
        raise ConfigError(f"{path}: registry: missing")
    return RegistryClient(address, identity)


def _parsed(parse: Any, text: str, option: str) -> Any:
    try:
        return parse(text)
    except IdentifierError as error:
        raise ConfigError(f"{option}: {error}") from None


def member_change(action: str, identifier: str, name: str | None) -> registry_pb2.RegistryChange:
    """``member put|remove``."""
    member = _parsed(MemberId.parse, identifier, "member")
    if action == "remove":
        return registry_pb2.RegistryChange(remove_member=member.to_proto())
    if not name:
        raise ConfigError("--name: a member needs a display name")
    return registry_pb2.RegistryChange(
        put_member=registry_pb2.RegisteredMember(id=member.to_proto(), name=name)
    )


def subsystem_change(action: str, identifier: str) -> registry_pb2.RegistryChange:
    """``subsystem add|remove``."""
    subsystem = _parsed(SubsystemId.parse, identifier, "subsystem").to_proto()
    if action == "add":
        return registry_pb2.RegistryChange(add_subsystem=subsystem)
    return registry_pb2.RegistryChange(remove_subsystem=subsystem)


def server_change(
    action: str,
    identifier: str,
    *,
    addresses: list[str] | None = None,
    serves: list[str] | None = None,
    certificate: Path | None = None,
    sha256: str | None = None,
) -> registry_pb2.RegistryChange:
    """``server put|remove|add-certificate|remove-certificate``."""
    server = _parsed(SecurityServerId.parse, identifier, "server").to_proto()
    if action == "remove":
        return registry_pb2.RegistryChange(remove_security_server=server)
    if action == "add-certificate":
        if certificate is None:
            raise ConfigError("--certificate: the PEM file of the certificate to register")
        der = load_certificates(certificate)[0].public_bytes(_DER)
        return registry_pb2.RegistryChange(
            add_certificate=registry_pb2.CertificateChange(server=server, certificate=der)
        )
    if action == "remove-certificate":
        try:
            fingerprint = bytes.fromhex(sha256 or "")
        except ValueError:
            fingerprint = b""
        if len(fingerprint) != 32:
            raise ConfigError("--sha256: the certificate's SHA-256, 64 hex digits")
        return registry_pb2.RegistryChange(
            remove_certificate=registry_pb2.CertificateChange(server=server, sha256=fingerprint)
        )
    if not addresses:
        raise ConfigError("--address: at least one host:port of the server's peer listener")
    return registry_pb2.RegistryChange(
        put_security_server=registry_pb2.RegisteredServer(
            id=server, addresses=addresses, subsystems=serves or []
        )
    )


def service_change(
    action: str,
    identifier: str,
    *,
    descriptors: Path | None = None,
    methods: list[str] | None = None,
    description: str = "",
    personal_data: bool = False,
    categories: list[str] | None = None,
    purposes: list[str] | None = None,
    consent_required: bool = False,
    legal_basis: str = "",
) -> registry_pb2.RegistryChange:
    """``service put|remove``; ``descriptors`` is a FileDescriptorSet file (``protoc
    --include_imports --descriptor_set_out``)."""
    service = _parsed(ServiceId.parse, identifier, "service").to_proto()
    if action == "remove":
        return registry_pb2.RegistryChange(remove_service=service)
    registration = registry_pb2.ServiceRegistration(
        service=registry_pb2.RegisteredService(
            id=service,
            description=description,
            methods=methods or [],
            personal_data=personal_data,
            data_categories=categories or [],
            purposes=purposes or [],
            consent_required=consent_required,
            legal_basis=legal_basis,
        )
    )
    if descriptors is not None:
        try:
            registration.descriptors.ParseFromString(descriptors.read_bytes())
        except OSError as error:
            raise ConfigError(f"--descriptors: {descriptors}: {error.strerror}") from None
        except DecodeError:
            raise ConfigError(f"--descriptors: {descriptors} is not a FileDescriptorSet") from None
    elif not methods:
        raise ConfigError("--descriptors or --method: what the service offers")
    return registry_pb2.RegistryChange(put_service=registration)


def group_change(
    action: str, code: str, description: str = "", members: list[str] | None = None
) -> registry_pb2.RegistryChange:
    """``group put|remove``."""
    if action == "remove":
        return registry_pb2.RegistryChange(remove_global_group=code)
    return registry_pb2.RegistryChange(
        put_global_group=registry_pb2.GlobalGroup(
            code=code,
            description=description,
            members=[_parsed(SubsystemId.parse, m, "--member").to_proto() for m in members or []],
        )
    )


def import_file(path: Path, descriptor_sets: list[Path]) -> list[registry_pb2.RegistryChange]:
    """The changes that put a JSON global configuration's content into the registry; each
    FileDescriptorSet in ``descriptor_sets`` describes the services it defines."""
    try:
        configuration = GlobalConfiguration.load(path)
    except RegistryError as error:
        raise ConfigError(str(error)) from None
    changes = import_changes(configuration)
    files: list[descriptor_pb2.FileDescriptorProto] = []
    for set_path in descriptor_sets:
        parsed = descriptor_pb2.FileDescriptorSet()
        try:
            parsed.ParseFromString(set_path.read_bytes())
        except (OSError, DecodeError) as error:
            raise ConfigError(f"--descriptors: {set_path}: {error}") from None
        files.extend(parsed.file)
    for change in changes:
        if change.WhichOneof("change") != "put_service":
            continue
        name = ServiceId.from_proto(change.put_service.service.id).service_name
        package, _, short = name.rpartition(".")
        if any(f.package == package and any(s.name == short for s in f.service) for f in files):
            change.put_service.descriptors.file.extend(files)
    return changes


def state_text(content: registry_pb2.GlobalConfigurationContent) -> str:
    """The registry's content as indented JSON."""
    from registry import from_content

    configuration = from_content(content)
    document = configuration.to_json()
    document["registry_version"] = content.version
    document["expires_at"] = content.expires_at.ToDatetime(dt.UTC).isoformat()
    return json.dumps(document, indent=2)


def journal_lines(entries: list[registry_pb2.JournalEntry]) -> list[str]:
    """The journal as lines of text."""
    lines = []
    for entry in entries:
        at = entry.at.ToDatetime(dt.UTC)
        lines.append(f"{entry.version:6d}  {at:%Y-%m-%d %H:%M:%S}  {entry.actor}  {entry.reason}")
        lines += [f"        {change}" for change in entry.changes]
    return lines
