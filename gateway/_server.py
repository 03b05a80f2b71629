"""The security server process: agency listeners, the peer listener, and their lifecycle."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from consent import ConsentReplica, ReplicaFollower
from gateway._audit import ExchangeAudit
from gateway._channels import (
    BackendChannels,
    PeerChannels,
    agency_server_options,
    channel_options,
)
from gateway._configuration import CurrentConfiguration
from gateway._consumer import ConsumerSide
from gateway._errors import GatewayError, SettingsError
from gateway._events import LOGGER
from gateway._feed import AccessFeed
from gateway._metaservices import Metaservices
from gateway._policy import Authorizer
from gateway._provider import ProviderSide
from gateway._settings import GatewaySettings
from monitoring import ConsentFigures, GatewayMetrics, MetricsServer, serve_metrics
from pki import CertificateKeeper, Credential, TlsIdentity
from registry import ConfigurationClient, GlobalConfiguration, RegistryClient

if TYPE_CHECKING:
    _GenericHandler = grpc.GenericRpcHandler[Any, Any]
else:  # grpc's classes are not subscriptable at run time
    _GenericHandler = grpc.GenericRpcHandler


class _AgencyHandler(_GenericHandler):
    """Routes every method on an agency listener: metaservices locally, the rest out."""

    def __init__(self, consumer: ConsumerSide, metaservices: Metaservices, over_tls: bool) -> None:
        self._consumer = consumer
        self._metaservices = metaservices
        self._over_tls = over_tls

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method
        metadata = handler_call_details.invocation_metadata
        local = self._metaservices.handler(method, metadata)
        if local is not None:
            return local
        return self._consumer.handler(method, metadata, self._over_tls)


class _PeerHandler(_GenericHandler):
    """Routes every method on the peer listener to the provider side."""

    def __init__(self, provider: ProviderSide) -> None:
        self._provider = provider

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any]:
        return self._provider.handler(
            handler_call_details.method, handler_call_details.invocation_metadata
        )


# How long a renewal waits for the registry to distribute the renewed certificate.
REGISTRATION_WAIT = 60.0
# How often a listener's health is checked (see SecurityServer).
SUPERVISION_INTERVAL = 0.1
# Servers sharing each listening address (SO_REUSEPORT): while one is being replaced, the
# kernel hands new connections to the others.
REPLICAS = 2


def _server_credentials(identity: TlsIdentity) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(identity.private_key, identity.certificate_chain)],
        root_certificates=identity.trust_anchors,
        require_client_auth=True,
    )


def _ensure_free(setting: str, address: str) -> None:
    """Refuse an address another socket listens on.

    The replicas share their port with SO_REUSEPORT, which would also let a second process of the
    same user share it silently; a plain bind first finds such a conflict.
    """
    host, _, port = address.rpartition(":")
    if port == "0":
        return
    try:
        candidates = socket.getaddrinfo(
            host.strip("[]") or None, int(port), type=socket.SOCK_STREAM
        )
    except (OSError, ValueError) as error:
        raise SettingsError(setting, f"cannot listen on {address}: {error}") from None
    for family, kind, protocol, _, socket_address in candidates:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(socket_address)
            except OSError as error:
                raise SettingsError(
                    setting, f"cannot listen on {address}: {error.strerror}"
                ) from None


def _keeper_credentials(keeper: CertificateKeeper) -> grpc.ServerCredentials:
    """Server credentials that follow ``keeper``: every new handshake gets its current
    certificate and trust anchors (the check before each handshake is one comparison)."""

    def configuration(identity: TlsIdentity) -> Any:
        return grpc.ssl_server_certificate_configuration(
            [(identity.private_key, identity.certificate_chain)],
            root_certificates=identity.trust_anchors,
        )

    served = keeper.identity

    def fetch() -> Any:
        nonlocal served
        current = keeper.identity
        if current is served:
            return None
        served = current
        return configuration(current)

    return grpc.dynamic_ssl_server_credentials(
        configuration(served), fetch, require_client_authentication=True
    )


@dataclass
class _Listener:
    """One listening address, served by :data:`REPLICAS` gRPC servers; a server that stops
    serving is replaced on the same port."""

    setting: str
    address: str
    credentials: Callable[[], grpc.ServerCredentials] | None
    handler: _GenericHandler
    options: list[tuple[str, int | str]]
    replicas: list[grpc.aio.Server | None] = field(default_factory=list)
    port: int = 0

    def build(self) -> grpc.aio.Server:
        """Create and bind one server (on the port bound before, when there was one).

        Raises:
            SettingsError: the address cannot be bound.
        """
        address = self.address
        if self.port:
            address = f"{address.rsplit(':', 1)[0]}:{self.port}"
        server = grpc.aio.server(options=[*self.options, ("grpc.so_reuseport", 1)])
        server.add_generic_rpc_handlers([self.handler])
        try:
            if self.credentials is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, self.credentials())
        except RuntimeError as error:
            raise SettingsError(self.setting, f"cannot listen on {address}: {error}") from None
        if port == 0:
            raise SettingsError(self.setting, f"cannot listen on {address}")
        self.port = port
        return server


class SecurityServer:
    """One security server: serves the consumer role on agency listeners and the provider role
    on the peer listener. Build it with :func:`security_server`, then ``start`` and ``stop``.

    Every listener is supervised: grpcio's asyncio server stops serving for good when a call
    arrives whose method path is not UTF-8 (its accept loop dies on the decoding error). Each
    address is therefore served by :data:`REPLICAS` servers sharing the port; the supervisor
    notices a dead one within :data:`SUPERVISION_INTERVAL` seconds, logs it, and replaces it,
    while the others keep accepting connections. Calls on the dead server's connections end.
    """

    def __init__(self, settings: GatewaySettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._clock = clock
        self._listeners: list[_Listener] = []
        self._supervisors: list[asyncio.Task[None]] = []
        self._retiring: set[asyncio.Task[None]] = set()
        self._peers: PeerChannels | None = None
        self._backends: BackendChannels | None = None
        self.keeper: CertificateKeeper | None = None
        self._metrics: MetricsServer | None = None
        self.authorizer: Authorizer | None = None
        self.consent_replica: ConsentReplica | None = None
        self.audit: ExchangeAudit | None = None
        self._follower: ReplicaFollower | None = None
        self.access_feed: AccessFeed | None = None
        self._source_started = False
        self.restarts = 0

    @property
    def agency_ports(self) -> list[int]:
        """The bound ports of the agency listeners, in configuration order."""
        return [listener.port for listener in self._listeners[:-1]]

    @property
    def peer_port(self) -> int:
        """The bound port of the peer listener."""
        return self._listeners[-1].port if self._listeners else 0

    async def start(self) -> None:
        """Bind every listener and start serving.

        Raises:
            SettingsError: a listener address cannot be bound.
        """
        settings = self.settings
        limits = settings.limits
        source = settings.registry
        current = CurrentConfiguration(source)
        keeper = self.keeper = CertificateKeeper(
            settings.pki,
            Credential.of(settings.peer_tls),
            x509.load_pem_x509_certificates(settings.peer_tls.trust_anchors),
            clock=lambda: dt.datetime.fromtimestamp(self._clock(), dt.UTC),
            before_switch=self._register_renewed
            if isinstance(source, ConfigurationClient)
            else None,
        )
        replica = self.consent_replica = ConsentReplica() if settings.consent else None
        authorizer = self.authorizer = Authorizer(
            settings.policy,
            settings.services,
            lambda: x509.load_pem_x509_certificates(keeper.identity.trust_anchors),
            settings.server,
            self._clock,
            consent=replica,
            max_staleness=settings.consent.max_staleness_seconds if settings.consent else 0.0,
            audited=settings.audit is not None,
        )
        authorizer.start()
        try:
            await keeper.start()
            await source.start()
        except BaseException:
            await authorizer.stop()
            self.authorizer = None
            raise
        self._source_started = True
        if settings.audit is not None:
            try:
                self.audit = ExchangeAudit(
                    settings.audit,
                    str(settings.server),
                    self._clock,
                    _roots_of(keeper),
                    lambda serial: serial in keeper.revoked,
                )
            except GatewayError as error:
                await self.stop(0)
                raise SettingsError("audit.log", error.message) from None
            self.audit.start()
        if settings.consent is not None and replica is not None:
            self._follower = ReplicaFollower(
                replica, settings.consent.address, lambda: keeper.identity
            )
            self._follower.start()
        if settings.consent is not None and self.audit is not None:
            self.access_feed = AccessFeed(
                self.audit.log,
                settings.server,
                settings.consent.address,
                lambda: keeper.identity,
                interval=settings.audit.checkpoint_seconds if settings.audit else 1.0,
            )
            self.access_feed.start()
        peers = self._peers = PeerChannels(current.configuration, keeper.identity, limits)

        async def renewed(identity: TlsIdentity) -> None:
            peers.replace_identity(identity)
            if isinstance(source, ConfigurationClient):
                source.replace_roots(x509.load_pem_x509_certificates(identity.trust_anchors))

        async def reconfigured(configuration: GlobalConfiguration) -> None:
            peers.replace_configuration(configuration)

        keeper.subscribe(renewed)
        current.subscribe(reconfigured)
        if settings.metrics_address is not None:
            try:
                self._metrics = serve_metrics(
                    settings.metrics_address,
                    GatewayMetrics(
                        lambda: self.keeper,
                        lambda: source,
                        policy=lambda: self.authorizer.figures() if self.authorizer else None,
                        consent=lambda: self._consent_figures(),
                    ).registry,
                )
            except OSError as error:
                await keeper.stop()
                await source.stop()
                await authorizer.stop()
                raise SettingsError(
                    "metrics.listen", f"cannot listen on {settings.metrics_address}: {error}"
                ) from None
        self._backends = BackendChannels(
            {service.backend for service in settings.services.values()}, limits
        )
        consumer = ConsumerSide(
            settings, current, self._peers, keeper, self._clock, audit=self.audit
        )
        metaservices = Metaservices(current)
        for configured in settings.agency_listeners:
            self._listeners.append(
                _Listener(
                    "agency.listen" if configured.tls is None else "agency.tls_listen",
                    configured.address,
                    None
                    if configured.tls is None
                    else functools.partial(_server_credentials, configured.tls),
                    _AgencyHandler(consumer, metaservices, configured.tls is not None),
                    agency_server_options(limits),
                )
            )
        self._listeners.append(
            _Listener(
                "peer.listen",
                settings.peer_address,
                functools.partial(_keeper_credentials, keeper),
                _PeerHandler(
                    ProviderSide(
                        settings,
                        current,
                        self._backends,
                        keeper,
                        authorizer,
                        self._clock,
                        self.audit,
                    )
                ),
                channel_options(limits),
            )
        )
        try:
            for listener in self._listeners:
                _ensure_free(listener.setting, listener.address)
                listener.replicas = [listener.build() for _ in range(REPLICAS)]
            for listener in self._listeners:
                for server in listener.replicas:
                    assert server is not None
                    await server.start()
        except BaseException:
            await self.stop(0)
            raise
        self._supervisors = [
            asyncio.create_task(
                self._supervise(listener, index), name=f"supervise {listener.setting} #{index}"
            )
            for listener in self._listeners
            for index in range(REPLICAS)
        ]

    async def _register_renewed(self, current: TlsIdentity, renewed: TlsIdentity) -> None:
        """Before a renewed certificate is presented: register it (keeping the current one),
        wait until the registry distributes it, then until peers have had time to poll."""
        source = self.settings.registry
        assert isinstance(source, ConfigurationClient)
        previous = hashlib.sha256(
            x509.load_pem_x509_certificate(current.certificate_chain).public_bytes(
                serialization.Encoding.DER
            )
        ).digest()
        version = await RegistryClient(source.anchor.registry, renewed).register_certificate(
            previous
        )
        async with asyncio.timeout(REGISTRATION_WAIT):
            await source.catch_up(version)
        await asyncio.sleep(self.settings.certificate_propagation_seconds)
        LOGGER.info("the renewed certificate is registered (version %d) and distributed", version)

    async def _supervise(self, listener: _Listener, index: int) -> None:
        while True:
            server = listener.replicas[index]
            assert server is not None
            try:
                if not await server.wait_for_termination(SUPERVISION_INTERVAL):
                    return  # stopped on purpose
                continue
            except Exception as crash:
                LOGGER.error(
                    "listener %s on port %d: a server stopped serving (%s: %s); replacing it",
                    listener.setting,
                    listener.port,
                    type(crash).__name__,
                    crash,
                    extra={
                        "pintu_event": {
                            "event": "listener_restarted",
                            "setting": listener.setting,
                            "port": listener.port,
                            "cause": type(crash).__name__,
                        }
                    },
                )
            # The dead server's remaining calls may finish in the background.
            retiring = asyncio.create_task(server.stop(self.settings.limits.shutdown_grace_seconds))
            self._retiring.add(retiring)
            retiring.add_done_callback(self._retiring.discard)
            replacement = listener.build()
            listener.replicas[index] = replacement
            await replacement.start()
            self.restarts += 1

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting calls, let in-flight calls finish for ``grace`` seconds (the configured
        shutdown grace by default), then cancel what is left and close every channel."""
        if grace is None:
            grace = self.settings.limits.shutdown_grace_seconds
        supervisors, self._supervisors = self._supervisors, []
        for supervisor in supervisors:
            supervisor.cancel()
        await asyncio.gather(*supervisors, return_exceptions=True)
        servers = [server for listener in self._listeners for server in listener.replicas if server]
        for listener in self._listeners:
            listener.replicas = [None] * len(listener.replicas)
        await asyncio.gather(*(server.stop(grace) for server in servers))
        for channels in (self._peers, self._backends):
            if channels is not None:
                await channels.close()
        self._peers = self._backends = None
        if self.keeper is not None:
            await self.keeper.stop()
            self.keeper = None
        if self._source_started:
            self._source_started = False
            await self.settings.registry.stop()
        if self._follower is not None:
            await self._follower.stop()
            self._follower = None
        if self.access_feed is not None:
            await self.access_feed.stop()
            self.access_feed = None
        if self.audit is not None:
            await self.audit.stop()
            self.audit = None
        if self.authorizer is not None:
            await self.authorizer.stop()
            self.authorizer = None
        if self._metrics is not None:
            self._metrics.stop()
            self._metrics = None

    def _consent_figures(self) -> ConsentFigures | None:
        replica = self.consent_replica
        if replica is None or self.settings.consent is None:
            return None
        return ConsentFigures(
            age_seconds=replica.age(),
            max_staleness_seconds=self.settings.consent.max_staleness_seconds,
            consents=len(replica),
            position=replica.position,
            stale_refusals=self.authorizer.counts.stale if self.authorizer else 0,
        )

    @property
    def metrics_port(self) -> int:
        """The port of the metrics endpoint (0 without one)."""
        return self._metrics.port if self._metrics is not None else 0


def security_server(
    settings: GatewaySettings, *, clock: Callable[[], float] = time.time
) -> SecurityServer:
    """A security server built from ``settings``; ``clock`` gives the time in seconds."""
    return SecurityServer(settings, clock)


def _roots_of(keeper: CertificateKeeper) -> Callable[[], list[x509.Certificate]]:
    """The keeper's trust anchors, parsed again only when they change (the same list object
    meanwhile: a seal verifier keeps what it checked against it)."""
    parsed: list[x509.Certificate] = []
    seen: list[bytes] = [b""]

    def roots() -> list[x509.Certificate]:
        nonlocal parsed
        pem = keeper.identity.trust_anchors
        if pem is not seen[0]:
            parsed = x509.load_pem_x509_certificates(pem)
            seen[0] = pem
        return parsed

    return roots
