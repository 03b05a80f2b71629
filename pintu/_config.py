"""The security server's configuration file (TOML), loaded and checked once at start-up.

::

    server = "DEMO/GOV/POPREG/ss1"                   # this security server

    [registry]                                       # where the global configuration comes from
    anchor = "anchor.json"                           # from the federation operator, out of band
    cache = "global-configuration.pb"                # last good signed copy (default shown)
    poll_seconds = 30                                # how often the registry is asked
    propagation_seconds = 70                         # wait before presenting a renewed
                                                     # certificate (0 to 3600; default:
                                                     # 2 polls + 10 s, at most 3600)

    [peer]                                           # mTLS listener for other security servers
    listen = "127.0.0.1:7103"
    key = "auth.key"                                 # authentication certificate's key
    certificate = "auth.pem"
    trust_anchors = "federation-root-ca.pem"

    [agency]                                         # where agency systems call
    listen = "127.0.0.1:7101"                        # plaintext (h2c); keep it on loopback
    tls_listen = "127.0.0.1:7102"                    # optional mTLS listener
    tls_key = "agency-tls.key"
    tls_certificate = "agency-tls.pem"
    tls_client_trust_anchors = "federation-root-ca.pem"

    [pki]                                            # the CA, for renewal and revocation status
    ca = "127.0.0.1:7400"                            # CA service (gRPC over TLS)
    ocsp_max_age_seconds = 600                       # oldest peer OCSP staple accepted (10 min)
    refresh_seconds = 30                             # how often staple, CRLs and trust refresh
    renew_at = 0.667                                 # renew at this fraction of the lifetime

    [metrics]                                        # Prometheus scrapes /metrics here
    listen = "127.0.0.1:9100"                        # optional; no endpoint without it

    [policy]                                         # how the provider side decides exchanges
    rights = "access-rights.json"                    # access rights and closed windows (re-read
                                                     # when changed); none: every call is denied
    policies = "policies"                            # optional folder of Rego policies (default:
                                                     # the policies shipped with Pintu)
    bundle = "policy-bundle.tar.gz"                  # optional signed bundle, re-read when
                                                     # changed (signed by the owner's signing
                                                     # certificate; see `pintu policy bundle`)
    decision_log = "decisions.jsonl"                 # every decision (default shown)
    cache_size = 10000                               # decisions cached (0: none)
    watch_seconds = 2                                # how often rights and bundle are checked
    opa = "127.0.0.1:8181"                           # decide with a remote OPA instead
    opa_trust_anchors = "opa-ca.pem"                 # HTTPS to OPA (else plain HTTP, loopback)
    opa_certificate = "opa-client.pem"               # optional client certificate for OPA
    opa_key = "opa-client.key"
    opa_timeout_seconds = 0.5
    opa_revision = "opa"                             # the revision decisions name

    [audit]                                          # the tamper-evident log and seals
    log = "audit.db"                                 # default shown (beside this file)
    pseudonym_key = "pseudonym.key"                  # the federation's key for citizens'
                                                     # pseudonyms (at least 32 bytes)
    checkpoint_seconds = 5                           # how often checkpoints are signed
                                                     # (with [pki] signing_key/certificate,
                                                     # which also seals exchanges)
    tsa_url = "https://tsa.example/tsr"              # optional RFC 3161 timestamps of
    tsa_roots = "tsa-roots.pem"                      # checkpoints: the TSA, its CA roots,
    tsa_intermediates = "tsa-chain.pem"              # its intermediate CAs (optional)
    tsa_timeout_seconds = 10
    body_key = "body.key"                            # 32 random bytes that wrap the keys of
                                                     # bodies the policy asks to keep (log_body)
    body_limit_bytes = 16777216                      # kept per direction of one exchange

    [consent]                                        # citizens' consents (provider side)
    service = "127.0.0.1:7500"                       # the consent service (mTLS, auth certificate)
    max_staleness_seconds = 5                        # older replica: consent-requiring calls
                                                     # fail closed (consent_state_stale)

    [limits]
    max_message_bytes = 67108864                     # default 64 MiB, per message, both hops
    max_metadata_bytes = 16384                       # default 16 KiB, a call's metadata
    shutdown_grace_seconds = 10

    [[clients]]                                      # subsystems that may call out
    id = "DEMO/GOV/POPREG/civilregistry"
    require_tls = false

    [[services]]                                     # services provided through this server
    id = "DEMO/GOV/POPREG/civilregistry/popreg.v1.CivilRegistry"
    backend = "127.0.0.1:7110"
    timeout_seconds = 30                             # optional cap on the caller's deadline

Relative paths are relative to the configuration file's folder.
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec

from audit import Timestamper
from gateway import (
    AgencyListener,
    AuditSettings,
    ConsentReplicaSettings,
    GatewaySettings,
    Limits,
    LocalClient,
    LocalService,
    PolicySettings,
    SettingsError,
)
from pintu._errors import ConfigError
from pki import (
    DEFAULT_MAX_AGE,
    KeeperSettings,
    PkiError,
    TlsIdentity,
    load_certificates,
    load_private_key,
)
from policy import (
    AccessRights,
    EmbeddedEngine,
    PolicyEngine,
    PolicyError,
    PolicySet,
    RemoteOpaEngine,
    tested,
)
from proto import IdentifierError, SecurityServerId, ServiceId, SubsystemId
from registry import Anchor, ConfigurationClient, RegistryError, parse_address

T = TypeVar("T")
DEFAULT_CACHE = "global-configuration.pb"
DEFAULT_DECISION_LOG = "decisions.jsonl"
DEFAULT_AUDIT_LOG = "audit.db"

_KNOWN = {
    "": {
        "server",
        "registry",
        "peer",
        "agency",
        "pki",
        "limits",
        "metrics",
        "policy",
        "consent",
        "audit",
        "clients",
        "services",
    },
    "metrics": {"listen"},
    "consent": {"service", "max_staleness_seconds"},
    "audit": {
        "log",
        "pseudonym_key",
        "checkpoint_seconds",
        "tsa_url",
        "tsa_roots",
        "tsa_intermediates",
        "tsa_timeout_seconds",
        "body_key",
        "body_limit_bytes",
    },
    "policy": {
        "rights",
        "policies",
        "bundle",
        "decision_log",
        "cache_size",
        "watch_seconds",
        "opa",
        "opa_trust_anchors",
        "opa_certificate",
        "opa_key",
        "opa_timeout_seconds",
        "opa_revision",
    },
    "registry": {"anchor", "cache", "poll_seconds", "propagation_seconds"},
    "pki": {
        "ca",
        "ocsp_max_age_seconds",
        "refresh_seconds",
        "renew_at",
        "signing_key",
        "signing_certificate",
    },
    "peer": {"listen", "key", "certificate", "trust_anchors"},
    "agency": {"listen", "tls_listen", "tls_key", "tls_certificate", "tls_client_trust_anchors"},
    "limits": {"max_message_bytes", "max_metadata_bytes", "shutdown_grace_seconds"},
    "clients": {"id", "require_tls"},
    "services": {"id", "backend", "timeout_seconds"},
}


class _Reader:
    """Typed access to one TOML table, with errors naming ``file: table.key``."""

    def __init__(self, source: Path, table: dict[str, Any], where: str, kind: str) -> None:
        self.source = source
        self.table = table
        self.where = where
        unknown = sorted(set(table) - _KNOWN[kind])
        if unknown:
            raise self.error(unknown[0], "unknown setting")

    def error(self, key: str, why: str) -> ConfigError:
        name = f"{self.where}.{key}" if self.where else key
        return ConfigError(f"{self.source}: {name}: {why}")

    def get(self, key: str, kind: type[T], default: T | None = None) -> T:
        value = self.table.get(key, default)
        if value is None:
            raise self.error(key, "required")
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(key, f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    def optional(self, key: str, kind: type[T]) -> T | None:
        return self.get(key, kind) if key in self.table else None

    def parsed(self, key: str, parse: Callable[[object], T]) -> T:
        try:
            return parse(self.get(key, str))
        except IdentifierError as error:
            raise self.error(key, str(error)) from None

    def address(self, key: str) -> str:
        value = self.get(key, str)
        try:
            parse_address(value, key)
        except RegistryError:
            raise self.error(key, f"{value!r} is not 'host:port'") from None
        return value

    def path(self, key: str) -> Path:
        try:
            return (self.source.parent / self.get(key, str)).resolve()
        except (ValueError, OSError) as error:
            raise self.error(key, f"not a usable path: {error}") from None

    def watched_path(self, key: str) -> Path:
        """A file that is re-read when it changes: absolute, with symbolic links kept (a link
        swapped to a new file, as orchestrators update mounted files, must be followed anew)."""
        try:
            return Path(os.path.abspath(self.source.parent / self.get(key, str)))
        except (ValueError, OSError) as error:
            raise self.error(key, f"not a usable path: {error}") from None

    def loaded(self, key: str, load: Callable[[Path], T]) -> T:
        try:
            return load(self.path(key))
        except PkiError as error:
            raise self.error(key, str(error)) from None

    def tables(self, key: str) -> list[dict[str, Any]]:
        value = self.table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self.error(key, "expected an array of tables")
        return value

    def table_at(self, key: str) -> dict[str, Any]:
        value = self.table.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, "expected a table")
        return value


def _identity(reader: _Reader, key: str, certificate: str, anchors: str) -> TlsIdentity:
    private_key = reader.loaded(key, load_private_key)
    chain = reader.loaded(certificate, load_certificates)
    trusted = reader.loaded(anchors, load_certificates)
    try:
        return TlsIdentity.build(private_key, chain, trusted)
    except PkiError as error:
        raise reader.error(key, f"{error} ({reader.table[certificate]})") from None


def load_gateway_settings(path: Path) -> GatewaySettings:
    """Read, default and check a security server's configuration file.

    Raises:
        ConfigError: naming the file and the setting at fault.
    """
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    root = _Reader(path, document, "", "")
    server = root.parsed("server", SecurityServerId.parse)
    registry = _Reader(path, root.table_at("registry"), "registry", "registry")
    try:
        anchor = Anchor.load(registry.path("anchor"))
    except RegistryError as error:
        raise registry.error("anchor", str(error)) from None
    poll = registry.get("poll_seconds", float, 30.0)
    if not 0.1 <= poll <= 3600:
        raise registry.error("poll_seconds", "must be between 0.1 and 3600")
    propagation = registry.get("propagation_seconds", float, min(2 * poll + 10, 3600.0))
    source = ConfigurationClient(
        anchor,
        registry.path("cache")
        if "cache" in registry.table
        else path.parent.resolve() / DEFAULT_CACHE,
        poll=dt.timedelta(seconds=poll),
    )
    try:
        source.bootstrap()
    except RegistryError as error:
        raise registry.error("anchor", f"no global configuration could be had: {error}") from None

    peer = _Reader(path, root.table_at("peer"), "peer", "peer")
    agency = _Reader(path, root.table_at("agency"), "agency", "agency")
    listeners: list[AgencyListener] = []
    if "listen" in agency.table:
        listeners.append(AgencyListener(agency.address("listen")))
    tls_keys = ("tls_key", "tls_certificate", "tls_client_trust_anchors")
    if "tls_listen" in agency.table:
        identity = _identity(agency, *tls_keys)
        listeners.append(AgencyListener(agency.address("tls_listen"), identity))
    else:
        for key in tls_keys:
            if key in agency.table:
                raise agency.error(key, "set without tls_listen: no mTLS listener would use it")

    limits_table = _Reader(path, root.table_at("limits"), "limits", "limits")
    defaults = Limits()
    try:
        limits = Limits(
            max_message_bytes=limits_table.get(
                "max_message_bytes", int, defaults.max_message_bytes
            ),
            shutdown_grace_seconds=limits_table.get(
                "shutdown_grace_seconds", float, defaults.shutdown_grace_seconds
            ),
            max_metadata_bytes=limits_table.get(
                "max_metadata_bytes", int, defaults.max_metadata_bytes
            ),
        )
    except SettingsError as error:
        raise ConfigError(f"{path}: {error.setting}: {error.message}") from None

    clients: dict[SubsystemId, LocalClient] = {}
    for index, table in enumerate(root.tables("clients")):
        item = _Reader(path, table, f"clients[{index}]", "clients")
        client = item.parsed("id", SubsystemId.parse)
        if client in clients:
            raise item.error("id", f"{client} is listed twice")
        clients[client] = LocalClient(client, item.get("require_tls", bool, False))

    services: dict[ServiceId, LocalService] = {}
    for index, table in enumerate(root.tables("services")):
        item = _Reader(path, table, f"services[{index}]", "services")
        service = item.parsed("id", ServiceId.parse)
        if service in services:
            raise item.error("id", f"{service} is listed twice")
        timeout = item.optional("timeout_seconds", float)
        if timeout is not None and not 0 < timeout <= 86_400:
            raise item.error("timeout_seconds", "must be between 0 and 86400")
        services[service] = LocalService(service, item.address("backend"), timeout)

    peer_address = peer.address("listen")
    peer_tls = _identity(peer, "key", "certificate", "trust_anchors")
    pki_table = _Reader(path, root.table_at("pki"), "pki", "pki")
    max_age = pki_table.get("ocsp_max_age_seconds", float, DEFAULT_MAX_AGE.total_seconds())
    if not 1 <= max_age <= 7 * 86_400:
        raise pki_table.error("ocsp_max_age_seconds", "must be between 1 and 604800")
    refresh = pki_table.get("refresh_seconds", float, min(30.0, max_age / 4))
    if not 0.1 <= refresh <= max_age / 2:
        raise pki_table.error("refresh_seconds", "must be between 0.1 and half the maximum age")
    renew_at = pki_table.get("renew_at", float, 2 / 3)
    if not 0.1 <= renew_at <= 0.95:
        raise pki_table.error("renew_at", "must be a fraction of the lifetime, 0.1 to 0.95")
    metrics_table = _Reader(path, root.table_at("metrics"), "metrics", "metrics")
    metrics = metrics_table.address("listen") if "listen" in metrics_table.table else None
    keeper = KeeperSettings(
        server=server,
        ca_address=pki_table.address("ca"),
        key_path=peer.path("key"),
        certificate_path=peer.path("certificate"),
        trust_anchors_path=peer.path("trust_anchors"),
        ocsp_max_age=dt.timedelta(seconds=max_age),
        renew_fraction=renew_at,
        refresh=dt.timedelta(seconds=refresh),
    )
    policy = _policy(_Reader(path, root.table_at("policy"), "policy", "policy"))
    audit = _audit(_Reader(path, root.table_at("audit"), "audit", "audit"), pki_table)
    consent_table = _Reader(path, root.table_at("consent"), "consent", "consent")
    consent = None
    if consent_table.table:
        staleness = consent_table.get("max_staleness_seconds", float, 5.0)
        try:
            consent = ConsentReplicaSettings(consent_table.address("service"), staleness)
        except SettingsError as error:
            raise consent_table.error("max_staleness_seconds", error.message) from None
    try:
        return GatewaySettings(
            server=server,
            policy=policy,
            consent=consent,
            audit=audit,
            pki=keeper,
            metrics_address=metrics,
            peer_address=peer_address,
            peer_tls=peer_tls,
            agency_listeners=tuple(listeners),
            registry=source,
            certificate_propagation_seconds=propagation,
            clients=clients,
            services=services,
            limits=limits,
        )
    except SettingsError as error:
        raise ConfigError(f"{path}: {_setting_name(error, root)}: {error.message}") from None


def _audit(table: _Reader, pki_table: _Reader) -> AuditSettings | None:
    """The ``[audit]`` table (None without one); checkpoints are signed with ``[pki]``'s
    ``signing_key`` and ``signing_certificate``."""
    if not table.table:
        return None
    for key in ("signing_key", "signing_certificate"):
        if key not in pki_table.table:
            raise pki_table.error(key, "required with [audit]: it signs the log's checkpoints")
    signing_key = pki_table.loaded("signing_key", load_private_key)
    if not isinstance(signing_key, ec.EllipticCurvePrivateKey):
        raise pki_table.error("signing_key", "checkpoints are signed with P-256 keys")
    chain = tuple(pki_table.loaded("signing_certificate", load_certificates))
    try:
        secret = table.path("pseudonym_key").read_bytes()
    except OSError as error:
        raise table.error("pseudonym_key", f"cannot be read: {error.strerror}") from None
    log = (
        table.path("log")
        if "log" in table.table
        else table.source.parent.resolve() / DEFAULT_AUDIT_LOG
    )
    if not os.access(log.parent, os.W_OK | os.X_OK):
        raise table.error("log", f"{log.parent} is not a folder this process can write to")
    body_key = None
    if "body_key" in table.table:
        try:
            body_key = table.path("body_key").read_bytes()
        except OSError as error:
            raise table.error("body_key", f"cannot be read: {error.strerror}") from None
    try:
        return AuditSettings(
            log,
            signing_key,
            chain,
            secret,
            table.get("checkpoint_seconds", float, 5.0),
            _timestamper(table),
            body_key,
            table.get("body_limit_bytes", int, 16 * 1024 * 1024),
        )
    except SettingsError as error:
        raise table.error(error.setting.removeprefix("audit."), error.message) from None


def _timestamper(table: _Reader) -> Timestamper | None:
    """The RFC 3161 authority of ``[audit]`` (``tsa_*``), if one is configured."""
    if "tsa_url" not in table.table:
        for key in ("tsa_roots", "tsa_intermediates", "tsa_timeout_seconds"):
            if key in table.table:
                raise table.error(key, "applies only with tsa_url")
        return None
    if "tsa_roots" not in table.table:
        raise table.error("tsa_roots", "required with tsa_url: the TSA's CA certificates")
    try:
        return Timestamper(
            table.get("tsa_url", str, ""),
            table.loaded("tsa_roots", load_certificates),
            intermediates=table.loaded("tsa_intermediates", load_certificates)
            if "tsa_intermediates" in table.table
            else (),
            timeout=table.get("tsa_timeout_seconds", float, 10.0),
        )
    except ValueError as error:
        setting, _, message = str(error).partition(": ")
        key = {
            "timestamper.url": "tsa_url",
            "timestamper.roots": "tsa_roots",
            "timestamper.intermediates": "tsa_intermediates",
            "timestamper.timeout": "tsa_timeout_seconds",
        }.get(setting, "tsa_url")
        raise table.error(key, message or str(error)) from None


def _policy(table: _Reader) -> PolicySettings:
    """The ``[policy]`` table: engine, rights, bundle, decision log."""
    engine: PolicyEngine | None = None
    remote = "opa" in table.table
    if remote:
        for key in ("policies", "bundle", "cache_size"):
            if key in table.table:
                raise table.error(key, "set with opa: the OPA server loads its own policies")
        timeout = table.get("opa_timeout_seconds", float, 0.5)
        if not 0 < timeout <= 60:
            raise table.error("opa_timeout_seconds", "must be between 0 and 60")
        certificate = table.optional("opa_certificate", str)
        if (certificate is None) != ("opa_key" not in table.table):
            raise table.error("opa_certificate", "opa_certificate and opa_key go together")
        if certificate is not None and "opa_trust_anchors" not in table.table:
            raise table.error(
                "opa_trust_anchors", "required with a client certificate (HTTPS to OPA)"
            )
        for key in ("opa_trust_anchors", "opa_certificate", "opa_key"):
            if key in table.table and not table.path(key).is_file():
                raise table.error(key, f"no such file: {table.path(key)}")
        host, _, port = table.address("opa").rpartition(":")
        try:
            engine = RemoteOpaEngine(
                host.strip("[]"),
                int(port),
                roots=table.path("opa_trust_anchors")
                if "opa_trust_anchors" in table.table
                else None,
                client_certificate=None
                if certificate is None
                else (table.path("opa_certificate"), table.path("opa_key")),
                timeout=timeout,
                revision=table.get("opa_revision", str, "opa"),
            )
        except PolicyError as error:
            raise table.error("opa", str(error)) from None
    else:
        for key in (
            "opa_trust_anchors",
            "opa_certificate",
            "opa_key",
            "opa_timeout_seconds",
            "opa_revision",
        ):
            if key in table.table:
                raise table.error(key, "set without opa: no remote OPA would use it")
        if "policies" in table.table:
            try:
                policies = PolicySet.load(table.path("policies"))
                tested(policies)
                engine = EmbeddedEngine(policies)
            except PolicyError as error:
                raise table.error("policies", str(error)) from None
    rights = AccessRights(())
    if "rights" in table.table:
        try:
            rights = AccessRights.load(table.watched_path("rights"))
        except PolicyError as error:
            raise table.error("rights", str(error)) from None
    decision_log = (
        table.path("decision_log")
        if "decision_log" in table.table
        else table.source.parent.resolve() / DEFAULT_DECISION_LOG
    )
    if not os.access(decision_log.parent, os.W_OK | os.X_OK):
        raise table.error(
            "decision_log", f"{decision_log.parent} is not a folder this process can write to"
        )
    try:
        return PolicySettings(
            engine=engine,
            rights=rights,
            rights_file=table.watched_path("rights") if "rights" in table.table else None,
            bundle_file=table.watched_path("bundle") if "bundle" in table.table else None,
            decision_log=decision_log,
            # Pintu cannot see a remote OPA load new policies: no cache in front of it.
            cache_size=0 if remote else table.get("cache_size", int, 10_000),
            watch_seconds=table.get("watch_seconds", float, 2.0),
        )
    except SettingsError as error:
        raise table.error(error.setting.removeprefix("policy."), error.message) from None


def _setting_name(error: SettingsError, root: _Reader) -> str:
    """Where in the file the entry an error is about was written (``clients[1].id``)."""
    if error.setting in ("clients", "services") and error.item is not None:
        for index, table in enumerate(root.tables(error.setting)):
            if table.get("id") == str(error.item):
                return f"{error.setting}[{index}].id"
    return error.setting
