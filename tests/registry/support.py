"""What the registry's tests share: a throwaway federation, change builders, a sample registry,
a running registry service and a stand-in distribution server."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import http.server
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

import grpc
import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.protobuf import descriptor_pb2

import pki
from proto import (
    ERROR_CODE_KEY,
    MemberId,
    OperatorId,
    RegistryId,
    SecurityServerId,
    ServiceId,
    SubsystemId,
)
from proto.pintu.v1 import registry_pb2
from registry import (
    ADMIN,
    VIEWER,
    Anchor,
    RegistryClient,
    RegistryService,
    RegistrySettings,
    SnapshotVerifier,
)

INSTANCE = "DEMO"
CA_LIFETIME = dt.timedelta(days=3650)
LEAF_LIFETIME = dt.timedelta(days=365)
VALIDITY = dt.timedelta(hours=1)

POPREG = MemberId(INSTANCE, "GOV", "POPREG")
TAX = MemberId(INSTANCE, "GOV", "TAX")
BANK = MemberId(INSTANCE, "COM", "BANK")
CIVIL = POPREG.subsystem("civilregistry")
STATISTICS = POPREG.subsystem("statistics")
ASSESSMENT = TAX.subsystem("assessment")
POPREG_SS1 = POPREG.server("ss1")
POPREG_SS2 = POPREG.server("ss2")
TAX_SS1 = TAX.server("ss1")
CIVIL_REGISTRY = ServiceId(CIVIL, "popreg.v1.CivilRegistry")
TAX_ASSESSMENT = ServiceId(ASSESSMENT, "tax.v1.Assessment")
CERT_A = hashlib.sha256(b"popreg ss1 certificate A").digest()
CERT_B = hashlib.sha256(b"popreg ss1 certificate B").digest()
CERT_C = hashlib.sha256(b"tax ss1 certificate").digest()
ALICE, VICTOR, MALLORY = OperatorId("alice"), OperatorId("victor"), OperatorId("mallory")
OPERATORS = {ALICE: ADMIN, VICTOR: VIEWER}


# --- changes ------------------------------------------------------------------------------------


def put_member(member: MemberId, name: str, *subsystems: str) -> registry_pb2.RegistryChange:
    return registry_pb2.RegistryChange(
        put_member=registry_pb2.RegisteredMember(
            id=member.to_proto(), name=name, subsystems=list(subsystems)
        )
    )


def remove_member(member: MemberId) -> registry_pb2.RegistryChange:
    return registry_pb2.RegistryChange(remove_member=member.to_proto())


def add_subsystem(subsystem: SubsystemId) -> registry_pb2.RegistryChange:
    return registry_pb2.RegistryChange(add_subsystem=subsystem.to_proto())


def remove_subsystem(subsystem: SubsystemId) -> registry_pb2.RegistryChange:
    return registry_pb2.RegistryChange(remove_subsystem=subsystem.to_proto())


def put_server(
    server: SecurityServerId,
    *addresses: str,
    certificates: Iterable[bytes] = (),
    subsystems: Iterable[str] = (),
) -> registry_pb2.RegistryChange:
    return registry_pb2.RegistryChange(
        put_security_server=registry_pb2.RegisteredServer(
            id=server.to_proto(),
            addresses=list(addresses or ("127.0.0.1:7101",)),
            certificate_sha256=list(certificates),
            subsystems=list(subsystems),
        )
    )


def remove_server(server: SecurityServerId) -> registry_pb2.RegistryChange:
    return registry_pb2.RegistryChange(remove_security_server=server.to_proto())


def add_certificate(server: SecurityServerId, der: bytes) -> registry_pb2.RegistryChange:
    return registry_pb2.RegistryChange(
        add_certificate=registry_pb2.CertificateChange(server=server.to_proto(), certificate=der)
    )


def remove_certificate(server: SecurityServerId, sha256: bytes) -> registry_pb2.RegistryChange:
    return registry_pb2.RegistryChange(
        remove_certificate=registry_pb2.CertificateChange(server=server.to_proto(), sha256=sha256)
    )


def put_service(
    service: ServiceId,
    *methods: str,
    description: str = "",
    descriptors: descriptor_pb2.FileDescriptorSet | None = None,
    personal_data: bool = False,
    data_categories: Iterable[str] = (),
    purposes: Iterable[str] = (),
    consent_required: bool = False,
    legal_basis: str = "",
) -> registry_pb2.RegistryChange:
    registration = registry_pb2.ServiceRegistration(
        service=registry_pb2.RegisteredService(
            id=service.to_proto(),
            description=description,
            methods=list(methods),
            personal_data=personal_data,
            data_categories=list(data_categories),
            purposes=list(purposes),
            consent_required=consent_required,
            legal_basis=legal_basis,
        )
    )
    if descriptors is not None:
        registration.descriptors.CopyFrom(descriptors)
    return registry_pb2.RegistryChange(put_service=registration)


def remove_service(service: ServiceId) -> registry_pb2.RegistryChange:
    return registry_pb2.RegistryChange(remove_service=service.to_proto())


def put_group(code: str, description: str, *members: SubsystemId) -> registry_pb2.RegistryChange:
    return registry_pb2.RegistryChange(
        put_global_group=registry_pb2.GlobalGroup(
            code=code, description=description, members=[m.to_proto() for m in members]
        )
    )


def remove_group(code: str) -> registry_pb2.RegistryChange:
    return registry_pb2.RegistryChange(remove_global_group=code)


def population_descriptors(*methods: str) -> descriptor_pb2.FileDescriptorSet:
    """``popreg/v1/popreg.proto`` (service CivilRegistry) and the file it imports."""
    common = descriptor_pb2.FileDescriptorProto(
        name="popreg/v1/common.proto", package="popreg.v1", syntax="proto3"
    )
    common.message_type.add(name="Person")
    main = descriptor_pb2.FileDescriptorProto(
        name="popreg/v1/popreg.proto",
        package="popreg.v1",
        syntax="proto3",
        dependency=["popreg/v1/common.proto"],
    )
    service = main.service.add(name="CivilRegistry")
    for method in methods or ("GetPerson", "ListPeople"):
        service.method.add(
            name=method, input_type=".popreg.v1.Person", output_type=".popreg.v1.Person"
        )
    return descriptor_pb2.FileDescriptorSet(file=[common, main])


def sample_registry() -> list[registry_pb2.RegistryChange]:
    """One batch that fills a registry with every kind of part."""
    return [
        put_member(POPREG, "Population Registry", "civilregistry", "statistics"),
        put_member(TAX, "Tax Board", "assessment"),
        put_member(BANK, "A Bank"),
        # Addresses deliberately not sorted: their order is the preference.
        put_server(
            POPREG_SS1,
            "popreg-ss1.example.gov:7101",
            "127.0.0.1:7101",
            certificates=[CERT_A, CERT_B],
        ),
        put_server(POPREG_SS2, "127.0.0.1:7102", subsystems=["statistics"]),
        put_server(TAX_SS1, "[::1]:7201", certificates=[CERT_C]),
        put_service(
            CIVIL_REGISTRY,
            description="Who lives where",
            descriptors=population_descriptors(),
            personal_data=True,
            data_categories=["identity", "address"],
            purposes=["birth-support"],
            legal_basis="Population Administration Act, art. 58",
        ),
        put_service(
            TAX_ASSESSMENT,
            "Assess",
            description="Tax assessments",
            personal_data=True,
            data_categories=["income"],
            purposes=["benefit-check", "audit"],
            consent_required=True,
        ),
        put_group("registries", "The base registries", CIVIL, ASSESSMENT),
    ]


# --- a throwaway federation ---------------------------------------------------------------------


@dataclass(frozen=True)
class Federation:
    """A root CA, the registry's configuration-signing key, and certificates on demand, all
    valid around ``now`` (the real time: TLS stacks check it)."""

    ca: pki.CertificateAuthority
    signing_key: pki.PrivateKey
    signing_certificate: x509.Certificate
    now: dt.datetime
    instance: str = INSTANCE

    @staticmethod
    def create(now: dt.datetime) -> Federation:
        # The root is older than the test, so certificates can be issued in the past.
        ca = pki.CertificateAuthority.create(
            INSTANCE, now=now - dt.timedelta(days=30), lifetime=CA_LIFETIME
        )
        key = pki.generate_key()
        certificate = ca.issue_configuration_signing_certificate(
            RegistryId(INSTANCE), key.public_key(), now=now, lifetime=LEAF_LIFETIME
        )
        return Federation(ca, key, certificate, now)

    @property
    def roots(self) -> tuple[x509.Certificate, ...]:
        return (self.ca.certificate,)

    def verifier(self) -> SnapshotVerifier:
        return SnapshotVerifier(self.instance, self.roots)

    def identity(self, key: pki.PrivateKey, certificate: x509.Certificate) -> pki.TlsIdentity:
        return pki.TlsIdentity.build(key, [certificate], list(self.roots))

    def service_tls(self) -> pki.TlsIdentity:
        key = pki.generate_key()
        certificate = self.ca.issue_service_certificate(
            "registry",
            ["127.0.0.1"],
            key.public_key(),
            now=self.now,
            lifetime=LEAF_LIFETIME,
            reserved=(pki.REGISTRY_TLS_NAME,),
        )
        return self.identity(key, certificate)

    def operator(self, operator: OperatorId) -> pki.TlsIdentity:
        key = pki.generate_key()
        certificate = self.ca.issue_operator_certificate(
            operator, key.public_key(), now=self.now, lifetime=LEAF_LIFETIME
        )
        return self.identity(key, certificate)

    def security_server(self, server: SecurityServerId) -> tuple[pki.TlsIdentity, bytes]:
        """A server's authentication identity and the SHA-256 of its certificate."""
        key = pki.generate_key()
        certificate = self.ca.issue_server_certificate(
            server, key.public_key(), now=self.now, lifetime=LEAF_LIFETIME
        )
        der = certificate.public_bytes(serialization.Encoding.DER)
        return self.identity(key, certificate), hashlib.sha256(der).digest()


# --- a running registry -------------------------------------------------------------------------


@dataclass
class RunningRegistry:
    """A :class:`RegistryService` on 127.0.0.1 and the clients tests call it with."""

    service: RegistryService
    federation: Federation
    stopped: bool = False
    _clients: dict[OperatorId, RegistryClient] = field(default_factory=dict)

    @staticmethod
    async def start(
        federation: Federation,
        database: str,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> RunningRegistry:
        settings = RegistrySettings(
            instance=federation.instance,
            database=database,
            listen="127.0.0.1:0",
            http_listen="127.0.0.1:0",
            tls=federation.service_tls(),
            signing_key=federation.signing_key,
            signing_chain=(federation.signing_certificate,),
            operators=OPERATORS,
            validity=VALIDITY,
        )
        service = RegistryService(settings, clock=clock)
        await service.start()
        return RunningRegistry(service, federation)

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.service.stop(0)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.service.port}"

    @property
    def distribution(self) -> str:
        return f"http://127.0.0.1:{self.service.http_port}/global-configuration"

    def client(self, identity: pki.TlsIdentity) -> RegistryClient:
        return RegistryClient(self.address, identity)

    def operator(self, operator: OperatorId) -> RegistryClient:
        if operator not in self._clients:
            self._clients[operator] = self.client(self.federation.operator(operator))
        return self._clients[operator]

    @property
    def admin(self) -> RegistryClient:
        return self.operator(ALICE)

    def anchor(self, *distribution: str) -> Anchor:
        return Anchor(
            self.federation.instance,
            distribution or (self.distribution,),
            self.address,
            self.federation.roots,
        )


async def eventually(condition: Callable[[], bool], what: str, wait: float = 5.0) -> None:
    """Wait (bounded by ``wait`` seconds) until ``condition`` holds."""
    for _ in range(int(wait / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {wait} s: {what}")


async def raw_call(
    address: str, identity: pki.TlsIdentity, method: str, request: bytes
) -> grpc.aio.AioRpcError:
    """Call ``pintu.v1.Registry/<method>`` with raw bytes; the refusal it must end in."""
    credentials = grpc.ssl_channel_credentials(
        identity.trust_anchors, identity.private_key, identity.certificate_chain
    )
    async with grpc.aio.secure_channel(
        address, credentials, options=[("grpc.ssl_target_name_override", pki.REGISTRY_TLS_NAME)]
    ) as channel:
        call = channel.unary_unary(f"/pintu.v1.Registry/{method}", None, None)
        try:
            await call(request, timeout=10)
        except grpc.aio.AioRpcError as error:
            return error
    raise AssertionError(f"{method} answered instead of refusing")


def error_code(error: grpc.aio.AioRpcError) -> str | None:
    """The ``pintu-error-code`` trailer."""
    trailers = cast(Iterable[tuple[str, str | bytes]], error.trailing_metadata() or ())
    return next((str(v) for k, v in trailers if k == ERROR_CODE_KEY), None)


# --- a stand-in distribution server -------------------------------------------------------------


class FakeDistribution:
    """Serves ``blob`` at any path on 127.0.0.1 (no conditional requests), or, in mode
    ``"down"``, closes every connection without an answer; counts the requests."""

    def __init__(self) -> None:
        self.blob = b""
        self.mode = "serve"
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                if outer.mode == "down":
                    self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(outer.blob)))
                self.end_headers()
                self.wfile.write(outer.blob)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/global-configuration"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
