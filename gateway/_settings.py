"""What a security server is built from: validated, immutable settings with built objects."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from audit import Timestamper
from gateway._errors import SettingsError
from pki import CertificateIdentityError, KeeperSettings, TlsIdentity, certificate_identity
from policy import AccessRights, EmbeddedEngine, PolicyEngine
from proto import IdentifierError, SecurityServerId, ServiceId, SubsystemId
from registry import ConfigurationSource, GlobalConfiguration

MIB = 1024 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 64 * MIB
DEFAULT_MAX_METADATA_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class LocalClient:
    """A subsystem of the owner that may call out through this security server.

    With ``require_tls`` the subsystem can only be claimed over the mTLS agency listener, by a
    client certificate naming it; otherwise any local process on the plaintext listener may
    claim it.
    """

    id: SubsystemId
    require_tls: bool = False


@dataclass(frozen=True, slots=True)
class LocalService:
    """A service this security server provides, and the backend that implements it."""

    id: ServiceId
    backend: str
    timeout_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """Size and time limits of both hops."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    shutdown_grace_seconds: float = 10.0
    max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES

    def __post_init__(self) -> None:
        if not 1024 <= self.max_message_bytes <= 1024 * MIB:
            raise SettingsError("limits.max_message_bytes", "must be between 1 KiB and 1 GiB")
        if not 1024 <= self.max_metadata_bytes <= MIB:
            raise SettingsError("limits.max_metadata_bytes", "must be between 1 KiB and 1 MiB")
        if not 0 <= self.shutdown_grace_seconds <= 3600:
            raise SettingsError("limits.shutdown_grace_seconds", "must be between 0 and 3600")

    @property
    def transport_ceiling(self) -> int:
        """The gRPC transport's own limit: above ours, so oversized messages get our error code.

        Messages between the two limits are refused by the gateway with ``message_too_large``;
        larger ones by the gRPC transport itself (RESOURCE_EXHAUSTED without a Pintu code).
        """
        return self.max_message_bytes + max(MIB, self.max_message_bytes // 16)

    @property
    def metadata_ceiling(self) -> int:
        """The gRPC transport's limit on a call's metadata, twice ours (same reason as above).

        Metadata size counts, as HTTP/2 does, each entry's key and value plus 32 bytes.
        """
        return 2 * self.max_metadata_bytes


@dataclass(frozen=True, slots=True)
class AgencyListener:
    """The listener agency systems call: plaintext (loopback) or mTLS."""

    address: str
    tls: TlsIdentity | None = None


def check_rights(rights: AccessRights, services: Collection[ServiceId]) -> None:
    """Every service that ``rights`` name must be one of ``services`` (a misspelt name would
    otherwise grant nothing, silently).

    Raises:
        SettingsError: ``policy.rights``, naming the first service at fault.
    """
    for named in sorted(rights.services):
        try:
            service = ServiceId.parse(named)
        except IdentifierError as error:
            raise SettingsError("policy.rights", f"service {named!r}: {error}") from None
        if service not in services:
            raise SettingsError(
                "policy.rights", f"{service} is not a service of this security server"
            )


@dataclass(frozen=True)
class PolicySettings:
    """How the provider side decides exchanges (docs/policy.md).

    ``engine`` decides (None: the policies shipped with Pintu, embedded); ``rights`` are the
    provider's access rights and closed windows, re-read from ``rights_file`` when it changes.
    ``bundle_file``, with an embedded engine, is a signed policy bundle that replaces the
    policies at start and whenever the file changes; it must be signed by the owner's signing
    certificate. Every decision is written to ``decision_log`` when one is set. Without any
    right every exchange is denied (``no_access_right``).
    """

    engine: PolicyEngine | None = None
    rights: AccessRights = field(default_factory=lambda: AccessRights(()))
    rights_file: Path | None = None
    bundle_file: Path | None = None
    decision_log: Path | None = None
    cache_size: int = 10_000
    watch_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not 0 <= self.cache_size <= 10_000_000:
            raise SettingsError("policy.cache_size", "must be between 0 and 10000000")
        if not 0.1 <= self.watch_seconds <= 3600:
            raise SettingsError("policy.watch_seconds", "must be between 0.1 and 3600")
        if self.bundle_file is not None and not (
            self.engine is None or isinstance(self.engine, EmbeddedEngine)
        ):
            raise SettingsError(
                "policy.bundle", "bundles replace embedded policies; a remote OPA loads its own"
            )


@dataclass(frozen=True)
class AuditSettings:
    """The audit log (gateway._audit): its file, the member's document-signing key and
    certificate chain that seal exchanges and sign checkpoints, the federation's pseudonym key
    for citizens, how often checkpoints are signed, and the RFC 3161 authority that timestamps
    them (optional)."""

    path: Path
    signing_key: ec.EllipticCurvePrivateKey
    signing_chain: tuple[x509.Certificate, ...]
    pseudonym_key: bytes
    checkpoint_seconds: float = 5.0
    timestamper: Timestamper | None = None
    # The key encryption key of kept bodies (32 bytes; None: bodies cannot be kept, and an
    # exchange whose policy asks to keep them is refused), and how much of each direction of
    # one exchange is kept.
    body_key: bytes | None = None
    body_limit_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        if len(self.pseudonym_key) < 32:
            raise SettingsError("audit.pseudonym_key", "must hold at least 32 bytes")
        if not 0.1 <= self.checkpoint_seconds <= 3600:
            raise SettingsError("audit.checkpoint_seconds", "must be between 0.1 and 3600")
        if self.body_key is not None and len(self.body_key) != 32:
            raise SettingsError("audit.body_key", "must hold exactly 32 random bytes")
        if self.body_limit_bytes < 0:
            raise SettingsError("audit.body_limit_bytes", "must not be negative")


@dataclass(frozen=True)
class ConsentReplicaSettings:
    """Where the provider side's consent replica comes from (the consent service, mTLS with
    the security server's authentication certificate), and how old it may grow before
    consent-requiring exchanges fail closed (``consent_state_stale``)."""

    address: str
    max_staleness_seconds: float = 5.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_staleness_seconds <= 3600:
            raise SettingsError("consent.max_staleness_seconds", "must be between 1 and 3600")


@dataclass(frozen=True)
class GatewaySettings:
    """Everything a security server needs, loaded and checked once at start-up."""

    server: SecurityServerId
    peer_address: str
    peer_tls: TlsIdentity
    agency_listeners: tuple[AgencyListener, ...]
    # Where the global configuration comes from: the registry, through a
    # registry.ConfigurationClient (or a fixed one, registry.StaticConfiguration).
    registry: ConfigurationSource
    pki: KeeperSettings
    clients: Mapping[SubsystemId, LocalClient] = field(default_factory=dict)
    services: Mapping[ServiceId, LocalService] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    # Where Prometheus scrapes this server's metrics (host:port), or None for no endpoint.
    metrics_address: str | None = None
    # With the registry as source: after a renewed certificate is registered and distributed,
    # how long to wait before presenting it, so that every peer has polled the registry since.
    certificate_propagation_seconds: float = 0.0
    policy: PolicySettings = field(default_factory=PolicySettings)
    # The consent service to replicate from; None: no replica, so every exchange about a
    # citizen for a consent-requiring service fails closed (consent_state_stale).
    consent: ConsentReplicaSettings | None = None
    # The audit log of the provider side; None: exchanges are not recorded.
    audit: AuditSettings | None = None

    @property
    def global_configuration(self) -> GlobalConfiguration:
        """The global configuration in use now."""
        return self.registry.configuration

    def __post_init__(self) -> None:
        # Checked against the configuration at start-up; later versions may drop what is
        # configured here, and the exchange path refuses it then (client_unknown, ...).
        conf = self.global_configuration
        owner = self.server.owner
        if self.server not in conf.security_servers:
            raise SettingsError("server", f"{self.server} is not in the global configuration")
        try:
            named = certificate_identity(self.peer_tls.leaf)
        except CertificateIdentityError as error:
            raise SettingsError("peer.certificate", str(error)) from None
        if named != self.server:
            raise SettingsError("peer.certificate", f"names {named}, not the server {self.server}")
        if self.pki.server != self.server:
            raise SettingsError(
                "pki", f"keeps the certificate of {self.pki.server}, not {self.server}"
            )
        if not 0 <= self.certificate_propagation_seconds <= 3600:
            raise SettingsError("registry.propagation_seconds", "must be between 0 and 3600")
        if not self.agency_listeners:
            raise SettingsError("agency", "at least one listener is required")
        over_tls = any(listener.tls is not None for listener in self.agency_listeners)
        for client in self.clients.values():
            if client.id.member != owner:
                raise SettingsError(
                    "clients", f"{client.id} is not a subsystem of the owner {owner}", client.id
                )
            if not conf.has_subsystem(client.id):
                raise SettingsError(
                    "clients", f"{client.id} is not in the global configuration", client.id
                )
            if client.require_tls and not over_tls:
                raise SettingsError(
                    "clients", f"{client.id} requires TLS but no mTLS listener is set", client.id
                )
        for service in self.services:
            if service.provider.member != owner:
                raise SettingsError(
                    "services", f"{service} is not provided by the owner {owner}", service
                )
            if service not in conf.services:
                raise SettingsError(
                    "services", f"{service} is not in the global configuration", service
                )
        check_rights(self.policy.rights, self.services)
        object.__setattr__(self, "clients", MappingProxyType(dict(self.clients)))
        object.__setattr__(self, "services", MappingProxyType(dict(self.services)))
