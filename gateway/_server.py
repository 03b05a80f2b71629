"""The security server process: agency listeners, the peer listener, and their lifecycle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from gateway._channels import BackendChannels, PeerChannels, channel_options
from gateway._consumer import ConsumerSide
from gateway._errors import SettingsError
from gateway._metaservices import Metaservices
from gateway._provider import ProviderSide
from gateway._settings import AgencyListener, GatewaySettings
from pki import TlsIdentity

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
        local = self._metaservices.handler(method)
        if local is not None:
            return local
        return self._consumer.handler(
            method, handler_call_details.invocation_metadata, self._over_tls
        )


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


def _server_credentials(identity: TlsIdentity) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(identity.private_key, identity.certificate_chain)],
        root_certificates=identity.trust_anchors,
        require_client_auth=True,
    )


class SecurityServer:
    """One security server: serves the consumer role on agency listeners and the provider role
    on the peer listener. Build it with :func:`security_server`, then ``start`` and ``stop``."""

    def __init__(self, settings: GatewaySettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._clock = clock
        self._servers: list[grpc.aio.Server] = []
        self._peers: PeerChannels | None = None
        self._backends: BackendChannels | None = None
        self.agency_ports: list[int] = []
        self.peer_port = 0

    async def start(self) -> None:
        """Bind every listener and start serving.

        Raises:
            SettingsError: a listener address cannot be bound.
        """
        settings = self.settings
        options = [*channel_options(settings.limits), ("grpc.so_reuseport", 0)]
        self._peers = PeerChannels(
            settings.global_configuration, settings.peer_tls, settings.limits
        )
        self._backends = BackendChannels(
            {service.backend for service in settings.services.values()}, settings.limits
        )
        consumer = ConsumerSide(settings, self._peers, self._clock)
        metaservices = Metaservices(settings.global_configuration)
        try:
            for listener in settings.agency_listeners:
                server = grpc.aio.server(options=options)
                server.add_generic_rpc_handlers(
                    [_AgencyHandler(consumer, metaservices, listener.tls is not None)]
                )
                self.agency_ports.append(self._bind(server, listener, "agency"))
                self._servers.append(server)
            peer = grpc.aio.server(options=options)
            peer.add_generic_rpc_handlers([_PeerHandler(ProviderSide(settings, self._backends))])
            self.peer_port = self._bind(
                peer, AgencyListener(settings.peer_address, settings.peer_tls), "peer"
            )
            self._servers.append(peer)
            for server in self._servers:
                await server.start()
        except BaseException:
            await self.stop(0)
            raise

    @staticmethod
    def _bind(server: grpc.aio.Server, listener: AgencyListener, section: str) -> int:
        setting = (
            f"{section}.{'listen' if listener.tls is None or section == 'peer' else 'tls_listen'}"
        )
        try:
            if listener.tls is None:
                port = server.add_insecure_port(listener.address)
            else:
                port = server.add_secure_port(listener.address, _server_credentials(listener.tls))
        except RuntimeError as error:
            raise SettingsError(setting, f"cannot listen on {listener.address}: {error}") from None
        if port == 0:
            raise SettingsError(setting, f"cannot listen on {listener.address}")
        return port

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting calls, let in-flight calls finish for ``grace`` seconds (the configured
        shutdown grace by default), then cancel what is left and close every channel."""
        if grace is None:
            grace = self.settings.limits.shutdown_grace_seconds
        servers, self._servers = self._servers, []
        await asyncio.gather(*(server.stop(grace) for server in servers))
        for channels in (self._peers, self._backends):
            if channels is not None:
                await channels.close()
        self._peers = self._backends = None


def security_server(
    settings: GatewaySettings, *, clock: Callable[[], float] = time.time
) -> SecurityServer:
    """A security server built from ``settings``; ``clock`` gives the time in seconds."""
    return SecurityServer(settings, clock)
