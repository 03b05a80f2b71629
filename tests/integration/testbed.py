"""Two real security servers, a probe backend and a throwaway PKI, all on 127.0.0.1.

Members of the test federation (instance DEMO):

* ``DEMO/GOV/A`` runs the consumer gateway ``A/ss1``; subsystems ``client`` (a client),
  ``secure`` (a client that must use mTLS) and ``idle`` (registered, not a client of ``A/ss1``);
* ``DEMO/GOV/B`` runs the provider gateway ``B/ss1``; subsystem ``provider`` offers
  ``test.v1.Probe`` (backed by the probe), ``other`` offers nothing through ``B/ss1``;
* ``DEMO/COM/C`` has a registered server ``C/ss1`` but no running gateway (tests use its
  certificate to act as a rogue peer);
* ``DEMO/GOV/Z`` is a member without any security server.

A real registry service (SQLite in the testbed's folder) distributes the signed global
configuration; both gateways follow it with :class:`registry.ConfigurationClient` (polling every
half second) and registered their certificates with it after enrolling, as real ones do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import pintu
import pki
from audit import Timestamper
from consent import ConsentClient, ConsentService, ConsentSettings
from gateway import (
    AgencyListener,
    AuditSettings,
    ConsentReplicaSettings,
    GatewaySettings,
    Limits,
    LocalClient,
    LocalService,
    PolicySettings,
    SecurityServer,
    security_server,
)
from policy import AccessRights, Grant
from proto import MemberId, OperatorId, RegistryId, SecurityServerId, SubsystemId
from proto.pintu.v1 import registry_pb2
from registry import (
    Anchor,
    ConfigurationClient,
    ConfigurationSource,
    GlobalConfiguration,
    Member,
    RegistryClient,
    RegistryService,
    RegistrySettings,
    Service,
    import_changes,
)
from registry import SecurityServer as RegisteredServer
from tests.integration.probe import (
    DESCRIPTOR_FILE,
    SERVICE,
    ProbeRecord,
    probe_descriptor_files,
    start_probe,
)

A = MemberId("DEMO", "GOV", "A")
B = MemberId("DEMO", "GOV", "B")
C = MemberId("DEMO", "COM", "C")
Z = MemberId("DEMO", "GOV", "Z")
A_SERVER, B_SERVER, C_SERVER = A.server("ss1"), B.server("ss1"), C.server("ss1")
# A second security server of B, started on demand (TwoGateways.start_provider_server).
B2_SERVER = B.server("ss2")
CLIENT = A.subsystem("client")
SECURE_CLIENT = A.subsystem("secure")
IDLE = A.subsystem("idle")
PROVIDER = B.subsystem("provider")
OTHER = B.subsystem("other")
C_CLIENT = C.subsystem("app")
Z_SYSTEM = Z.subsystem("records")
PROBE = PROVIDER.service(SERVICE)
PROBE_METHODS = (
    "Echo",
    "Metadata",
    "Deadline",
    "ServerStream",
    "ClientStream",
    "Bidi",
    "Sleep",
    "Fail",
    "Big",
    "Headers",
    "RichFail",
    "HeadersFirst",
    "Counting",
    "SlowReader",
    "StreamFail",
    "Collect",
    "Greeter",
    "Once",
)


free_port = pintu.free_port
# The federation's pseudonym key in the testbed.
PSEUDONYM_KEY = b"testbed pseudonym key, 32 bytes!"


def probe_rights(*clients: SubsystemId) -> AccessRights:
    """Access rights on every probe method for ``clients`` (by default A's two clients)."""
    return AccessRights(
        [Grant(str(PROBE), f"subsystem:{client}") for client in clients or (CLIENT, SECURE_CLIENT)]
    )


class ThrowawayPki:
    """A federation CA (a real CA folder and CA service) and an unrelated (foreign) CA.

    Gateways enroll with the CA service like real ones; the helpers issue what adversarial
    tests need straight from the issuing CA (such certificates are unknown to the CA's ledger,
    so its OCSP responder answers "unknown" about them).
    """

    def __init__(self, folder: Path, policy: pki.IssuancePolicy | None = None) -> None:
        self.now = dt.datetime.now(dt.UTC)
        self.path = folder
        http = free_port()
        settings = pki.CaSettings(
            "DEMO",
            listen=f"127.0.0.1:{free_port()}",
            renewal_listen=f"127.0.0.1:{free_port()}",
            http_listen=f"127.0.0.1:{http}",
            public_url=f"http://127.0.0.1:{http}",
            policy=policy or pki.IssuancePolicy(),
        )
        # Unencrypted keys: encryption costs a key derivation per load, and these keys live for
        # one test in a temporary folder.
        self.storage = pki.FileKeyStorage(folder, None)
        self.folder = pki.CaFolder.create(
            folder, settings, self.storage, now=self.now, actor="testbed"
        )
        generation = self.folder.generation(1)
        self.root = generation.root
        self.ca = pki.CertificateAuthority(
            self.storage.load("G1-issuing"), generation.issuing, settings.urls(1)
        )
        year = dt.timedelta(days=365)
        self.foreign = pki.CertificateAuthority.create("FOREIGN", now=self.now, lifetime=year)
        self.service: pki.CaService | None = None

    async def start(self) -> None:
        self.service = pki.CaService(self.folder)
        await self.service.start()

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop(0)

    @property
    def address(self) -> str:
        assert self.service is not None
        return f"127.0.0.1:{self.service.port}"

    @property
    def anchors(self) -> bytes:
        return pki.certificate_pem(self.root)

    def _chain(self, authority: pki.CertificateAuthority) -> tuple[bytes, bytes]:
        """(chain above a leaf, trust anchors) of ``authority``."""
        if authority is self.foreign:
            return b"", pki.certificate_pem(self.foreign.certificate)
        return pki.certificate_pem(self.ca.certificate), self.anchors

    def server_identity(
        self, server: SecurityServerId, authority: pki.CertificateAuthority | None = None
    ) -> pki.TlsIdentity:
        authority = authority or self.ca
        key = pki.generate_key()
        certificate = authority.issue_server_certificate(
            server, key.public_key(), now=self.now, lifetime=dt.timedelta(days=1)
        )
        chain, anchors = self._chain(authority)
        return pki.TlsIdentity(pki.key_pem(key), pki.certificate_pem(certificate) + chain, anchors)

    def client_identity(
        self, subsystem: SubsystemId, authority: pki.CertificateAuthority | None = None
    ) -> tuple[bytes, bytes]:
        """(key PEM, certificate chain PEM) of an agency client certificate."""
        authority = authority or self.ca
        key = pki.generate_key()
        certificate = authority.issue_client_certificate(
            subsystem, key.public_key(), now=self.now, lifetime=dt.timedelta(days=1)
        )
        chain, _ = self._chain(authority)
        return pki.key_pem(key), pki.certificate_pem(certificate) + chain

    def listener_identity(
        self, server: SecurityServerId, names: Sequence[str] = ("localhost", "127.0.0.1")
    ) -> pki.TlsIdentity:
        """An agency-listener certificate of ``server`` for ``names``, from the federation CA."""
        key = pki.generate_key()
        certificate = self.ca.issue_listener_certificate(
            server,
            names,
            key.public_key(),
            now=self.now,
            lifetime=dt.timedelta(days=1),
        )
        chain, anchors = self._chain(self.ca)
        return pki.TlsIdentity(pki.key_pem(key), pki.certificate_pem(certificate) + chain, anchors)

    async def enroll(
        self,
        server: SecurityServerId,
        *,
        max_age: dt.timedelta,
        refresh: dt.timedelta,
        renew_at: float = 2 / 3,
    ) -> tuple[pki.TlsIdentity, pki.KeeperSettings]:
        """Enroll ``server`` with the CA service as a security server does; its files go to a
        folder of its own."""
        ledger = self.folder.ledger()
        try:
            token = self.folder.authority(1, ledger).create_token(
                server, actor="testbed", now=dt.datetime.now(dt.UTC)
            )
        finally:
            ledger.close()
        authentication, _signing, _trust = await pki.CaClient(self.address, self.anchors).enroll(
            token, server
        )
        identity = authentication.identity(self.anchors)
        folder = self.path / "servers" / str(server).replace("/", "_")
        pki.write_private(folder / "auth.key", identity.private_key)
        pki.write_public(folder / "auth.pem", identity.certificate_chain)
        pki.write_public(folder / "anchors.pem", identity.trust_anchors)
        return identity, pki.KeeperSettings(
            server=server,
            ca_address=self.address,
            key_path=folder / "auth.key",
            certificate_path=folder / "auth.pem",
            trust_anchors_path=folder / "anchors.pem",
            ocsp_max_age=max_age,
            renew_fraction=renew_at,
            refresh=refresh,
        )

    def registry_settings(
        self, database: str, validity: dt.timedelta = dt.timedelta(hours=1)
    ) -> RegistrySettings:
        """A registry's settings with a signing certificate and a TLS certificate from this CA,
        and the operators ``admin`` (admin) and ``auditor`` (viewer)."""
        signing_key, tls_key = pki.generate_key(), pki.generate_key()
        signer = self.ca.issue_configuration_signing_certificate(
            RegistryId("DEMO"),
            signing_key.public_key(),
            now=self.now,
            lifetime=dt.timedelta(days=1),
        )
        tls = self.ca.issue_service_certificate(
            "registry",
            ["127.0.0.1"],
            tls_key.public_key(),
            now=self.now,
            lifetime=dt.timedelta(days=1),
            reserved=(pki.REGISTRY_TLS_NAME,),
        )
        return RegistrySettings(
            instance="DEMO",
            database=database,
            listen="127.0.0.1:0",
            http_listen="127.0.0.1:0",
            tls=pki.TlsIdentity(
                pki.key_pem(tls_key),
                pki.certificate_pem(tls, self.ca.certificate),
                self.anchors,
            ),
            signing_key=signing_key,
            signing_chain=(signer, self.ca.certificate),
            operators={OperatorId("admin"): "admin", OperatorId("auditor"): "viewer"},
            validity=validity,
        )

    def consent_settings(self, database: str, source: ConfigurationSource) -> ConsentSettings:
        """A consent service's settings: TLS and receipt-signing certificates from this CA, the
        operator ``admin``, heartbeats every 0.2 s."""
        tls_key, signing_key = pki.generate_key(), pki.generate_key()
        tls = self.ca.issue_service_certificate(
            "consent",
            ["127.0.0.1"],
            tls_key.public_key(),
            now=self.now,
            lifetime=dt.timedelta(days=1),
            reserved=(pki.CONSENT_TLS_NAME,),
        )
        signer = self.ca.issue_signing_certificate(
            Z, signing_key.public_key(), now=self.now, lifetime=dt.timedelta(days=1)
        )
        return ConsentSettings(
            database=database,
            listen=f"127.0.0.1:{free_port()}",
            tls=pki.TlsIdentity(
                pki.key_pem(tls_key), pki.certificate_pem(tls, self.ca.certificate), self.anchors
            ),
            signing_key=signing_key,  # type: ignore[arg-type]
            signing_chain=(signer, self.ca.certificate),
            registry=source,
            operators=frozenset({OperatorId("admin")}),
            heartbeat_seconds=0.2,
            poll_seconds=0.1,
            pseudonym_key=PSEUDONYM_KEY,
        )

    def audit_settings(
        self,
        member: MemberId,
        path: Path,
        timestamper: Timestamper | None = None,
        body_key: bool = True,
    ) -> AuditSettings:
        """A security server's audit log at ``path``: seals and checkpoints signed with a
        document-signing certificate of ``member`` from this CA, every 0.2 s, timestamped by
        ``timestamper``; kept bodies encrypted with a fresh key (with ``body_key``)."""
        key = pki.generate_key()
        certificate = self.ca.issue_signing_certificate(
            member, key.public_key(), now=self.now, lifetime=dt.timedelta(days=1)
        )
        return AuditSettings(
            path,
            key,
            (certificate, self.ca.certificate),
            PSEUDONYM_KEY,
            checkpoint_seconds=0.2,
            timestamper=timestamper,
            body_key=os.urandom(32) if body_key else None,
        )

    def operator_identity(self, name: str = "admin") -> pki.TlsIdentity:
        key = pki.generate_key()
        certificate = self.ca.issue_operator_certificate(
            OperatorId(name), key.public_key(), now=self.now, lifetime=dt.timedelta(days=1)
        )
        return pki.TlsIdentity(
            pki.key_pem(key), pki.certificate_pem(certificate, self.ca.certificate), self.anchors
        )

    def revoke(self, serial: int, reason: str = "key_compromise") -> None:
        """Revoke a certificate as ``pintu ca revoke`` does (another connection to the ledger)."""
        ledger = self.folder.ledger()
        try:
            self.folder.authority(self.folder.active, ledger).revoke(
                serial, reason, actor="testbed", now=dt.datetime.now(dt.UTC)
            )
        finally:
            ledger.close()


def configuration(
    addresses: dict[SecurityServerId, str], *, consent_required: bool = False
) -> GlobalConfiguration:
    return GlobalConfiguration.build(
        "DEMO",
        [
            Member(A, "Agency A", frozenset({"client", "secure", "idle"})),
            Member(B, "Agency B", frozenset({"provider", "other"})),
            Member(C, "Company C", frozenset({"app"})),
            Member(Z, "Agency Z", frozenset({"records"})),
        ],
        [RegisteredServer(server, (address,)) for server, address in addresses.items()],
        [
            Service(
                PROBE,
                PROBE_METHODS,
                "Test probe",
                personal_data=True,
                data_categories=("identity",),
                purposes=("testing",),
                legal_basis="" if consent_required else "Test Act, art. 1",
                consent_required=consent_required,
                descriptor_file=DESCRIPTOR_FILE,
            )
        ],
        descriptor_files=probe_descriptor_files(PROBE_METHODS),
    )


class TestRegistry:
    """A running registry service and its admin operator's client."""

    def __init__(self, service: RegistryService, operator: RegistryClient) -> None:
        self.service = service
        self.operator = operator
        self.followers: list[ConfigurationClient] = []

    @staticmethod
    async def start(
        test_pki: ThrowawayPki,
        content: GlobalConfiguration,
        validity: dt.timedelta = dt.timedelta(hours=1),
    ) -> TestRegistry:
        settings = test_pki.registry_settings(
            f"sqlite:///{test_pki.path / 'registry.db'}", validity
        )
        service = RegistryService(settings)
        await service.start()
        operator = RegistryClient(f"127.0.0.1:{service.port}", test_pki.operator_identity())
        registry = TestRegistry(service, operator)
        await operator.change(import_changes(content), "the test federation")
        return registry

    @property
    def anchor(self) -> Anchor:
        return Anchor(
            "DEMO",
            (f"http://127.0.0.1:{self.service.http_port}/global-configuration",),
            f"127.0.0.1:{self.service.port}",
            tuple(x509.load_pem_x509_certificates(self.service.settings.tls.trust_anchors)),
        )

    async def follower(self, folder: Path, poll: float = 0.5) -> ConfigurationClient:
        """A security server's configuration client, with the current configuration in hand."""
        client = ConfigurationClient(
            self.anchor, folder / "global-configuration.pb", poll=dt.timedelta(seconds=poll)
        )
        await client.refresh()
        self.followers.append(client)
        return client

    async def change(self, *changes: registry_pb2.RegistryChange) -> int:
        """Apply ``changes`` and wait (at most 10 s) until every gateway uses the result."""
        version = await self.operator.change(list(changes), "a test")
        await self.caught_up(version)
        return version

    async def caught_up(self, version: int) -> None:
        async with asyncio.timeout(10):
            for follower in self.followers:
                await follower.catch_up(version)

    async def register(self, identity: pki.TlsIdentity, server: SecurityServerId) -> None:
        """Register ``identity``'s certificate for ``server`` (beside its others)."""
        certificate = x509.load_pem_x509_certificate(identity.certificate_chain)
        await self.change(
            registry_pb2.RegistryChange(
                add_certificate=registry_pb2.CertificateChange(
                    server=server.to_proto(),
                    certificate=certificate.public_bytes(serialization.Encoding.DER),
                )
            )
        )

    async def stop(self) -> None:
        await self.service.stop(0)


@dataclass
class TwoGateways:
    """A running two-gateway federation; ``close`` stops everything."""

    pki: ThrowawayPki
    registry: TestRegistry
    configuration: GlobalConfiguration
    consumer: SecurityServer
    provider: SecurityServer
    probe: ProbeRecord
    backend: grpc.aio.Server | None
    backend_address: str
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    # Security servers and backends started by the helpers below; ``close`` stops them too.
    more_providers: list[ProviderServer] = field(default_factory=list)
    # The consent service (build_testbed(consent=True)).
    consent: ConsentService | None = None

    def consent_client(self) -> ConsentClient:
        """The consent service's operator ``admin``."""
        assert self.consent is not None, "build_testbed(consent=True)"
        return ConsentClient(f"127.0.0.1:{self.consent.port}", self.pki.operator_identity())

    def agency_channel(self) -> grpc.aio.Channel:
        """A plaintext channel to the consumer gateway's agency listener."""
        channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{self.consumer.agency_ports[0]}",
            options=[
                ("grpc.max_send_message_length", -1),
                ("grpc.max_receive_message_length", -1),
                # Each channel its own connection, as each agency system has.
                ("grpc.use_local_subchannel_pool", 1),
            ],
        )
        self.channels.append(channel)
        return channel

    def agency_tls_channel(self, subsystem: SubsystemId, authority=None) -> grpc.aio.Channel:
        """An mTLS channel to the consumer gateway's agency listener, as ``subsystem``."""
        key, certificate = self.pki.client_identity(subsystem, authority)
        credentials = grpc.ssl_channel_credentials(self.pki.anchors, key, certificate)
        channel = grpc.aio.secure_channel(f"localhost:{self.consumer.agency_ports[1]}", credentials)
        self.channels.append(channel)
        return channel

    def peer_channel(
        self, identity: pki.TlsIdentity, server: SecurityServerId = B_SERVER
    ) -> grpc.aio.Channel:
        """An mTLS channel straight to the provider gateway's peer listener."""
        credentials = grpc.ssl_channel_credentials(
            self.pki.anchors, identity.private_key, identity.certificate_chain
        )
        channel = grpc.aio.secure_channel(
            f"127.0.0.1:{self.provider.peer_port}",
            credentials,
            options=[("grpc.ssl_target_name_override", pki.tls_server_name(server))],
        )
        self.channels.append(channel)
        return channel

    async def registered_identity(self, server: SecurityServerId) -> pki.TlsIdentity:
        """A fresh authentication certificate of ``server`` from the federation CA, registered
        for it (as a rogue but registered peer holds)."""
        identity = self.pki.server_identity(server)
        await self.registry.register(identity, server)
        return identity

    async def start_provider_server(
        self, server: SecurityServerId = B2_SERVER, subsystems: Sequence[str] = ("provider",)
    ) -> ProviderServer:
        """Start another security server of B that serves ``PROVIDER``'s probe, set up as a real
        one is: an admin registers it with its address (serving ``subsystems``), it enrolls
        with the CA service and registers its certificate itself, and it follows the registry.

        It has a probe backend of its own (the same implementation), so that the calls each
        provider server passed on can be told apart. Returns once every gateway uses the
        configuration that lists it.
        """
        record = ProbeRecord()
        backend, backend_port = await start_probe(record)
        address = f"127.0.0.1:{free_port()}"
        await self.registry.change(
            registry_pb2.RegistryChange(
                put_security_server=registry_pb2.RegisteredServer(
                    id=server.to_proto(), addresses=[address], subsystems=sorted(subsystems)
                )
            )
        )
        tls, keeper = await self.pki.enroll(
            server, max_age=dt.timedelta(minutes=10), refresh=dt.timedelta(seconds=30)
        )
        version = await RegistryClient(self.registry.anchor.registry, tls).register_certificate()
        gateway = security_server(
            GatewaySettings(
                server=server,
                peer_address=address,
                peer_tls=tls,
                agency_listeners=(AgencyListener("127.0.0.1:0"),),
                registry=await self.registry.follower(keeper.key_path.parent),
                certificate_propagation_seconds=1.2,
                pki=keeper,
                services={PROBE: LocalService(PROBE, f"127.0.0.1:{backend_port}")},
                policy=PolicySettings(rights=probe_rights()),
            )
        )
        started = ProviderServer(server, address, gateway, record, backend)
        self.more_providers.append(started)
        await gateway.start()
        await self.registry.caught_up(version)
        return started

    async def move_provider(self, address: str) -> None:
        """Stop the provider gateway ``B/ss1`` and start it again listening on ``address``, with
        its certificate and a fresh configuration client; the registry is not told (the test
        does that)."""
        old = self.provider
        await old.stop(0)
        if old.settings.registry in self.registry.followers:
            self.registry.followers.remove(old.settings.registry)
        folder = old.settings.pki.key_path.parent
        self.provider = security_server(
            dataclasses.replace(
                old.settings,
                peer_address=address,
                registry=await self.registry.follower(folder),
            )
        )
        await self.provider.start()

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
        await self.consumer.stop(0)
        await self.provider.stop(0)
        if self.consent is not None:
            await self.consent.stop(0)
        for extra in self.more_providers:
            await extra.gateway.stop(0)
            await extra.backend.stop(0)
        if self.backend is not None:
            await self.backend.stop(0)
        await self.registry.stop()
        await self.pki.stop()
        shutil.rmtree(self.pki.path, ignore_errors=True)


@dataclass
class ProviderServer:
    """Another running security server of the provider member, with its own probe backend."""

    server: SecurityServerId
    address: str
    gateway: SecurityServer
    probe: ProbeRecord
    backend: grpc.aio.Server


def metadata(
    client: SubsystemId | str = CLIENT,
    provider: SubsystemId | str = PROVIDER,
    purpose: str = "testing",
    **extra: str,
) -> list[tuple[str, str]]:
    """The ``pintu-*`` metadata of a call; ``extra`` keys use ``_`` for ``-``."""
    entries = [
        ("pintu-client", str(client)),
        ("pintu-provider", str(provider)),
        ("pintu-purpose", purpose),
    ]
    entries += [(key.replace("_", "-"), value) for key, value in extra.items()]
    return entries


async def build_testbed(
    *,
    limits: Limits | None = None,
    service_timeout: float | None = None,
    backend_up: bool = True,
    provider_authority: str = "federation",
    extra_servers: Sequence[tuple[SecurityServerId, str]] = (),
    consumer_clock: Callable[[], float] = time.time,
    policy: pki.IssuancePolicy | None = None,
    max_age: dt.timedelta = dt.timedelta(minutes=10),
    refresh: dt.timedelta = dt.timedelta(seconds=30),
    renew_at: float = 2 / 3,
    metrics: bool = False,
    registry_validity: dt.timedelta = dt.timedelta(hours=1),
    propagation: float = 1.2,  # two polls and a margin
    provider_policy: PolicySettings | None = None,
    consent: bool = False,
    consent_staleness: float = 1.0,
    audit: bool = False,
    audit_timestamper: Timestamper | None = None,
    audit_body_key: bool = True,
) -> TwoGateways:
    """Start a CA service, the probe backend and both gateways (enrolled with the CA).

    ``provider_authority="foreign"`` gives the provider gateway a certificate from the foreign CA.
    The provider decides with the built-in policies and :func:`probe_rights` unless
    ``provider_policy`` says otherwise. With ``consent`` the probe service requires the
    citizen's consent, a consent service runs (SQLite in the testbed's folder, following the
    registry) and the provider keeps a replica of it (stale after ``consent_staleness`` s).
    """
    test_pki = ThrowawayPki(Path(tempfile.mkdtemp(prefix="pintu-testbed-")), policy)
    await test_pki.start()
    limits = limits or Limits()
    record = ProbeRecord()
    backend: grpc.aio.Server | None = None
    if backend_up:
        backend, backend_port = await start_probe(record)
    else:
        backend_port = free_port()
    addresses = {
        A_SERVER: f"127.0.0.1:{free_port()}",
        B_SERVER: f"127.0.0.1:{free_port()}",
        C_SERVER: f"127.0.0.1:{free_port()}",
        **dict(extra_servers),
    }
    conf = configuration(addresses, consent_required=consent)
    registry = await TestRegistry.start(test_pki, conf, registry_validity)
    consent_service = None
    if consent:
        source = await registry.follower(test_pki.path / "consent", poll=0.5)
        consent_service = ConsentService(
            test_pki.consent_settings(f"sqlite:///{test_pki.path / 'consent.db'}", source)
        )
        await consent_service.start()
    timing = {"max_age": max_age, "refresh": refresh, "renew_at": renew_at}
    consumer_tls, consumer_pki = await test_pki.enroll(A_SERVER, **timing)
    await RegistryClient(registry.anchor.registry, consumer_tls).register_certificate()
    provider_tls, provider_pki = await test_pki.enroll(B_SERVER, **timing)
    if provider_authority == "foreign":
        provider_tls = test_pki.server_identity(B_SERVER, test_pki.foreign)
    else:
        await RegistryClient(registry.anchor.registry, provider_tls).register_certificate()
    consumer = security_server(
        GatewaySettings(
            server=A_SERVER,
            peer_address=addresses[A_SERVER],
            peer_tls=consumer_tls,
            agency_listeners=(
                AgencyListener("127.0.0.1:0"),
                AgencyListener("127.0.0.1:0", test_pki.listener_identity(A_SERVER)),
            ),
            registry=await registry.follower(consumer_pki.key_path.parent),
            certificate_propagation_seconds=propagation,
            pki=consumer_pki,
            clients={
                CLIENT: LocalClient(CLIENT),
                SECURE_CLIENT: LocalClient(SECURE_CLIENT, require_tls=True),
            },
            limits=limits,
            metrics_address="127.0.0.1:0" if metrics else None,
            audit=test_pki.audit_settings(
                A, consumer_pki.key_path.parent / "audit.db", audit_timestamper
            )
            if audit
            else None,
        ),
        clock=consumer_clock,
    )
    provider = security_server(
        GatewaySettings(
            server=B_SERVER,
            peer_address=addresses[B_SERVER],
            peer_tls=provider_tls,
            agency_listeners=(AgencyListener("127.0.0.1:0"),),
            registry=await registry.follower(provider_pki.key_path.parent),
            certificate_propagation_seconds=propagation,
            pki=provider_pki,
            services={PROBE: LocalService(PROBE, f"127.0.0.1:{backend_port}", service_timeout)},
            limits=limits,
            policy=provider_policy or PolicySettings(rights=probe_rights()),
            metrics_address="127.0.0.1:0" if metrics else None,
            consent=ConsentReplicaSettings(f"127.0.0.1:{consent_service.port}", consent_staleness)
            if consent_service is not None
            else None,
            audit=test_pki.audit_settings(
                B, provider_pki.key_path.parent / "audit.db", audit_timestamper, audit_body_key
            )
            if audit
            else None,
        )
    )
    await consumer.start()
    await provider.start()
    return TwoGateways(
        test_pki,
        registry,
        conf,
        consumer,
        provider,
        record,
        backend,
        f"127.0.0.1:{backend_port}",
        consent=consent_service,
    )


def probe(channel: grpc.aio.Channel, method: str, kind: str = "unary"):
    """A raw-bytes multi-callable for a probe method."""
    path = f"/{SERVICE}/{method}"
    return {
        "unary": channel.unary_unary,
        "server": channel.unary_stream,
        "client": channel.stream_unary,
        "bidi": channel.stream_stream,
    }[kind](path)


def trailers(error: grpc.aio.AioRpcError) -> dict[str, str | bytes]:
    return dict(error.trailing_metadata() or ())
