"""Two real security servers, a probe backend and a throwaway PKI, all on 127.0.0.1.

Members of the test federation (instance DEMO):

* ``DEMO/GOV/A`` runs the consumer gateway ``A/ss1``; subsystems ``client`` (a client),
  ``secure`` (a client that must use mTLS) and ``idle`` (registered, not a client of ``A/ss1``);
* ``DEMO/GOV/B`` runs the provider gateway ``B/ss1``; subsystem ``provider`` offers
  ``test.v1.Probe`` (backed by the probe), ``other`` offers nothing through ``B/ss1``;
* ``DEMO/COM/C`` has a registered server ``C/ss1`` but no running gateway (tests use its
  certificate to act as a rogue peer);
* ``DEMO/GOV/Z`` is a member without any security server.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio

import pintu
import pki
from gateway import (
    AgencyListener,
    GatewaySettings,
    Limits,
    LocalClient,
    LocalService,
    SecurityServer,
    security_server,
)
from proto import MemberId, SecurityServerId, SubsystemId
from registry import GlobalConfiguration, Member, Service
from registry import SecurityServer as RegisteredServer
from tests.integration.probe import SERVICE, ProbeRecord, start_probe

A = MemberId("DEMO", "GOV", "A")
B = MemberId("DEMO", "GOV", "B")
C = MemberId("DEMO", "COM", "C")
Z = MemberId("DEMO", "GOV", "Z")
A_SERVER, B_SERVER, C_SERVER = A.server("ss1"), B.server("ss1"), C.server("ss1")
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

    def revoke(self, serial: int, reason: str = "key_compromise") -> None:
        """Revoke a certificate as ``pintu ca revoke`` does (another connection to the ledger)."""
        ledger = self.folder.ledger()
        try:
            self.folder.authority(self.folder.active, ledger).revoke(
                serial, reason, actor="testbed", now=dt.datetime.now(dt.UTC)
            )
        finally:
            ledger.close()


def configuration(addresses: dict[SecurityServerId, str]) -> GlobalConfiguration:
    return GlobalConfiguration.build(
        "DEMO",
        [
            Member(A, "Agency A", frozenset({"client", "secure", "idle"})),
            Member(B, "Agency B", frozenset({"provider", "other"})),
            Member(C, "Company C", frozenset({"app"})),
            Member(Z, "Agency Z", frozenset({"records"})),
        ],
        [RegisteredServer(server, address) for server, address in addresses.items()],
        [Service(PROBE, PROBE_METHODS, "Test probe")],
    )


@dataclass
class TwoGateways:
    """A running two-gateway federation; ``close`` stops everything."""

    pki: ThrowawayPki
    configuration: GlobalConfiguration
    consumer: SecurityServer
    provider: SecurityServer
    probe: ProbeRecord
    backend: grpc.aio.Server | None
    backend_address: str
    channels: list[grpc.aio.Channel] = field(default_factory=list)

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

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()
        await self.consumer.stop(0)
        await self.provider.stop(0)
        if self.backend is not None:
            await self.backend.stop(0)
        await self.pki.stop()
        shutil.rmtree(self.pki.path, ignore_errors=True)


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
) -> TwoGateways:
    """Start a CA service, the probe backend and both gateways (enrolled with the CA).

    ``provider_authority="foreign"`` gives the provider gateway a certificate from the foreign CA.
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
    conf = configuration(addresses)
    timing = {"max_age": max_age, "refresh": refresh, "renew_at": renew_at}
    consumer_tls, consumer_pki = await test_pki.enroll(A_SERVER, **timing)
    consumer = security_server(
        GatewaySettings(
            server=A_SERVER,
            peer_address=addresses[A_SERVER],
            peer_tls=consumer_tls,
            agency_listeners=(
                AgencyListener("127.0.0.1:0"),
                AgencyListener("127.0.0.1:0", test_pki.listener_identity(A_SERVER)),
            ),
            global_configuration=conf,
            pki=consumer_pki,
            clients={
                CLIENT: LocalClient(CLIENT),
                SECURE_CLIENT: LocalClient(SECURE_CLIENT, require_tls=True),
            },
            limits=limits,
            metrics_address="127.0.0.1:0" if metrics else None,
        ),
        clock=consumer_clock,
    )
    provider_tls, provider_pki = await test_pki.enroll(B_SERVER, **timing)
    if provider_authority == "foreign":
        provider_tls = test_pki.server_identity(B_SERVER, test_pki.foreign)
    provider = security_server(
        GatewaySettings(
            server=B_SERVER,
            peer_address=addresses[B_SERVER],
            peer_tls=provider_tls,
            agency_listeners=(AgencyListener("127.0.0.1:0"),),
            global_configuration=conf,
            pki=provider_pki,
            services={PROBE: LocalService(PROBE, f"127.0.0.1:{backend_port}", service_timeout)},
            limits=limits,
        )
    )
    await consumer.start()
    await provider.start()
    return TwoGateways(
        test_pki, conf, consumer, provider, record, backend, f"127.0.0.1:{backend_port}"
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
