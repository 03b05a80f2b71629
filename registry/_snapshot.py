"""The global configuration as a signed snapshot, and its verification by security servers.

A snapshot is a ``pintu.v1.GlobalConfigurationContent`` (deterministically serialized) signed by
the registry's configuration-signing key. Its certificate must chain, through one issuing CA, to
a root the security server trusts (from its anchor file), carry the
:data:`pki.CONFIGURATION_SIGNING` extended key usage and name ``urn:pintu:registry:<instance>``.
Any such certificate will do, so the registry can rotate its key: during a rotation both are
valid. Every check takes the time as an argument.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

from pki import (
    CONFIGURATION_SIGNING,
    PrivateKey,
    certificate_identity,
    chains_to,
    issued_by,
    sign,
    verify_signature,
)
from pki import PkiError as _PkiError
from proto import IdentifierError, RegistryId, SecurityServerId, ServiceId, SubsystemId
from proto import MemberId as _MemberId
from proto.pintu.v1 import registry_pb2
from registry._errors import (
    ConfigurationExpired,
    ConfigurationMalformed,
    ConfigurationRollback,
    ConfigurationSignatureInvalid,
    ConfigurationSignerUntrusted,
    GlobalConfigurationInvalid,
)
from registry._global_configuration import (
    GlobalConfiguration,
    GlobalGroup,
    Member,
    SecurityServer,
    Service,
)

CONTENT_FORMAT = 1


def to_content(
    configuration: GlobalConfiguration,
    *,
    version: int,
    built_at: dt.datetime,
    expires_at: dt.datetime,
) -> registry_pb2.GlobalConfigurationContent:
    """The snapshot content of ``configuration`` with a version, a validity window and the
    hash of the state."""
    content = registry_pb2.GlobalConfigurationContent(
        format=CONTENT_FORMAT,
        instance=configuration.instance,
        members=[
            registry_pb2.RegisteredMember(
                id=m.id.to_proto(), name=m.name, subsystems=sorted(m.subsystems)
            )
            for m in configuration.members.values()
        ],
        security_servers=[
            registry_pb2.RegisteredServer(
                id=s.id.to_proto(),
                addresses=list(s.addresses),
                certificate_sha256=sorted(s.certificates),
                subsystems=sorted(s.subsystems),
            )
            for s in configuration.security_servers.values()
        ],
        services=[
            registry_pb2.RegisteredService(
                id=s.id.to_proto(),
                description=s.description,
                methods=list(s.methods),
                descriptor_file=s.descriptor_file,
                personal_data=s.personal_data,
                data_categories=list(s.data_categories),
                purposes=list(s.purposes),
                consent_required=s.consent_required,
                legal_basis=s.legal_basis,
            )
            for s in configuration.services.values()
        ],
        global_groups=[
            registry_pb2.GlobalGroup(
                code=g.code,
                description=g.description,
                members=[m.to_proto() for m in sorted(g.members, key=str)],
            )
            for g in configuration.groups.values()
        ],
        descriptor_files=[_file(raw) for raw in configuration.descriptor_files],
    )
    # Version, times and hash are not set yet: this is the state, serialized as state_hash does.
    content.state_sha256 = hashlib.sha256(content.SerializeToString(deterministic=True)).digest()
    content.version = version
    content.built_at.FromDatetime(built_at)
    content.expires_at.FromDatetime(expires_at)
    return content


def state_hash(content: registry_pb2.GlobalConfigurationContent) -> bytes:
    """SHA-256 of ``content`` without its version, times and hash (see registry.proto)."""
    state = registry_pb2.GlobalConfigurationContent()
    state.CopyFrom(content)
    for name in ("version", "built_at", "expires_at", "state_sha256"):
        state.ClearField(name)
    return hashlib.sha256(state.SerializeToString(deterministic=True)).digest()


def _file(raw: bytes) -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto.FromString(raw)


def from_content(content: registry_pb2.GlobalConfigurationContent) -> GlobalConfiguration:
    """Validate snapshot content into a configuration.

    Raises:
        GlobalConfigurationInvalid: inconsistent content (or ConfigurationMalformed: bad
            identifiers, unknown format, missing times).
    """
    if content.format != CONTENT_FORMAT:
        raise ConfigurationMalformed(f"format {content.format} is not understood")
    if not content.HasField("built_at") or not content.HasField("expires_at"):
        raise ConfigurationMalformed("the snapshot has no validity window")
    if len(content.state_sha256) != 32:
        raise ConfigurationMalformed("the snapshot has no state hash (32 bytes)")
    try:
        members = [
            Member(_MemberId.from_proto(m.id), m.name, frozenset(m.subsystems))
            for m in content.members
        ]
        servers = [
            SecurityServer(
                SecurityServerId.from_proto(s.id),
                tuple(s.addresses),
                frozenset(bytes(c) for c in s.certificate_sha256),
                frozenset(s.subsystems),
            )
            for s in content.security_servers
        ]
        services = [
            Service(
                ServiceId.from_proto(s.id),
                tuple(s.methods),
                s.description,
                personal_data=s.personal_data,
                data_categories=tuple(s.data_categories),
                purposes=tuple(s.purposes),
                consent_required=s.consent_required,
                legal_basis=s.legal_basis,
                descriptor_file=s.descriptor_file,
            )
            for s in content.services
        ]
        groups = [
            GlobalGroup(
                g.code, g.description, frozenset(SubsystemId.from_proto(m) for m in g.members)
            )
            for g in content.global_groups
        ]
        for member in members:
            for code in member.subsystems:
                member.id.subsystem(code)
    except IdentifierError as error:
        raise ConfigurationMalformed(
            f"the snapshot names a malformed identifier: {error}"
        ) from None
    return GlobalConfiguration.build(
        content.instance,
        members,
        servers,
        services,
        groups,
        descriptor_files=tuple(f.SerializeToString() for f in content.descriptor_files),
        version=content.version,
        built_at=content.built_at.ToDatetime(dt.UTC),
        expires_at=content.expires_at.ToDatetime(dt.UTC),
    )


def sign_snapshot(
    content: registry_pb2.GlobalConfigurationContent,
    key: PrivateKey,
    chain: Iterable[x509.Certificate],
) -> bytes:
    """The signed, serialized snapshot (``pintu.v1.SignedGlobalConfiguration``)."""
    data = content.SerializeToString(deterministic=True)
    return registry_pb2.SignedGlobalConfiguration(
        content=data,
        signature=sign(key, data),
        signer_chain=[c.public_bytes(serialization.Encoding.DER) for c in chain],
    ).SerializeToString(deterministic=True)


def snapshot_tag(blob: bytes) -> str:
    """The snapshot's entity tag for conditional requests: SHA-256 of the signed bytes, hex."""
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class VerifiedSnapshot:
    """A snapshot that passed every check, its configuration, and its entity tag."""

    configuration: GlobalConfiguration
    tag: str
    blob: bytes
    state: bytes


def _valid_at(certificate: x509.Certificate, now: dt.datetime) -> bool:
    return certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc


class SnapshotVerifier:
    """Checks signed snapshots for one instance against trusted roots (see module docstring)."""

    def __init__(self, instance: str, roots: Iterable[x509.Certificate]) -> None:
        self.instance = instance
        self.roots = list(roots)

    def verify(self, blob: bytes, *, now: dt.datetime) -> VerifiedSnapshot:
        """Parse and check a signed snapshot.

        Raises:
            ConfigurationMalformed, ConfigurationSignerUntrusted, ConfigurationSignatureInvalid,
            ConfigurationExpired, GlobalConfigurationInvalid: the snapshot cannot be used.
        """
        try:
            envelope = registry_pb2.SignedGlobalConfiguration.FromString(blob)
            chain = [x509.load_der_x509_certificate(der) for der in envelope.signer_chain]
        except (DecodeError, ValueError) as error:
            raise ConfigurationMalformed(f"not a signed global configuration: {error}") from None
        self._check_signer(chain, now)
        try:
            verify_signature(chain[0], envelope.signature, envelope.content)
        except InvalidSignature:
            raise ConfigurationSignatureInvalid(
                "the snapshot's signature does not verify with its signing certificate"
            ) from None
        try:
            content = registry_pb2.GlobalConfigurationContent.FromString(envelope.content)
        except DecodeError as error:
            raise ConfigurationMalformed(f"the snapshot's content is unreadable: {error}") from None
        if content.instance != self.instance:
            raise ConfigurationMalformed(
                f"the snapshot is for instance {content.instance!r}, not {self.instance!r}"
            )
        try:
            configuration = from_content(content)
        except ConfigurationMalformed:
            raise
        except GlobalConfigurationInvalid as error:
            raise ConfigurationMalformed(
                f"the snapshot's content is inconsistent: {error}"
            ) from None
        if configuration.expired(now):
            raise ConfigurationExpired(
                f"the snapshot (version {configuration.version}) expired at "
                f"{configuration.expires_at:%Y-%m-%d %H:%M:%S} UTC"
            )
        return VerifiedSnapshot(configuration, snapshot_tag(blob), blob, content.state_sha256)

    def _check_signer(self, chain: list[x509.Certificate], now: dt.datetime) -> None:
        if not chain:
            raise ConfigurationSignerUntrusted("the snapshot carries no signing certificate")
        signer = chain[0]
        try:
            usage = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            identity = certificate_identity(signer)
        except (x509.ExtensionNotFound, _PkiError):
            raise ConfigurationSignerUntrusted(
                "the signing certificate is not a configuration-signing certificate"
            ) from None
        if CONFIGURATION_SIGNING not in usage or identity != RegistryId(self.instance):
            raise ConfigurationSignerUntrusted(
                f"the signing certificate is not the configuration-signing certificate of "
                f"{self.instance}'s registry"
            )
        if not all(_valid_at(c, now) for c in chain):
            raise ConfigurationSignerUntrusted(
                "the signing certificate is expired or not yet valid"
            )
        # The chain may go on past a certificate a trusted root issued: during a root rollover
        # it ends with the new root cross-certified by the old one, for verifiers that trust
        # only the old root; one that trusts the new root stops before.
        current = signer
        for intermediate in [*chain[1:], None]:
            if any(issued_by(current, root) and _valid_at(root, now) for root in self.roots):
                # Names and signatures line up; every issuer must also be a CA allowed to
                # issue (a member's own signing certificate must not vouch for a signer).
                if not chains_to(chain, list(self.roots), now):
                    raise ConfigurationSignerUntrusted(
                        "the signing chain holds a certificate that may not issue certificates"
                    )
                return
            if intermediate is None:
                break
            if not issued_by(current, intermediate):
                raise ConfigurationSignerUntrusted("the signing chain is broken")
            current = intermediate
        raise ConfigurationSignerUntrusted(
            "the signing certificate does not chain to a trusted root"
        )


def accept(current: VerifiedSnapshot | None, new: VerifiedSnapshot) -> bool:
    """Whether ``new`` should replace ``current``: a newer version, or the same version
    re-signed with a later expiry. Answers False for the very snapshot already in use.

    Raises:
        ConfigurationRollback: an older version, or the same version with another state.
    """
    if current is None:
        return True
    incoming, used = new.configuration, current.configuration
    if new.tag == current.tag:
        return False
    if incoming.version < used.version:
        raise ConfigurationRollback(
            f"version {incoming.version} is older than version {used.version} in use"
        )
    if incoming.version == used.version:
        if new.state != current.state:
            raise ConfigurationRollback(
                f"version {incoming.version} differs from the version {used.version} in use"
            )
        return (incoming.expires_at or _EPOCH) > (used.expires_at or _EPOCH)
    return True


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
