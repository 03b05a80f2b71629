"""Long-lived channels: to other members' security servers (mTLS) and to local backends.

Channels are created once and reused by every exchange; choosing one is a dictionary look-up.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import grpc
import grpc.aio

from gateway._errors import ErrorCode, GatewayError
from gateway._settings import Limits
from pki import TlsIdentity, tls_server_name
from proto import SecurityServerId, SubsystemId
from registry import GlobalConfiguration


def _credentials(identity: TlsIdentity) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=identity.trust_anchors,
        private_key=identity.private_key,
        certificate_chain=identity.certificate_chain,
    )


def channel_options(limits: Limits) -> list[tuple[str, int | str]]:
    """Options shared by every channel and server of a gateway.

    Flow-control windows stay at HTTP/2's default instead of growing with bandwidth-delay
    probing: a stalled reader then holds back its sender after about 64 KiB per stream and hop,
    instead of megabytes buffered in the gateway.
    """
    ceiling = limits.transport_ceiling
    metadata = limits.metadata_ceiling + EXCHANGE_METADATA_ALLOWANCE
    return [
        ("grpc.max_send_message_length", ceiling),
        ("grpc.max_receive_message_length", ceiling),
        ("grpc.max_metadata_size", metadata),
        ("grpc.absolute_max_metadata_size", metadata),
        ("grpc.http2.bdp_probe", 0),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def agency_server_options(limits: Limits) -> list[tuple[str, int | str]]:
    """Options of the agency listeners: the callers' metadata ceiling, without the allowance
    the peer hop needs for the exchange header."""
    options = dict(channel_options(limits))
    options["grpc.max_metadata_size"] = limits.metadata_ceiling
    options["grpc.absolute_max_metadata_size"] = limits.metadata_ceiling
    return list(options.items())


# Room on the peer hop for what the consumer gateway adds to the caller's metadata.
EXCHANGE_METADATA_ALLOWANCE = 8 * 1024

# A peer that was down is retried soon: a restarted security server is back within a second.
_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 5_000),
]


# How long an exchange waits for a connection to one of the provider's servers when none is
# connected (bounded by the caller's deadline).
CONNECT_WAIT = 5.0
_READY = grpc.ChannelConnectivity.READY
_FAILING = grpc.ChannelConnectivity.TRANSIENT_FAILURE


async def _connect(channel: grpc.aio.Channel) -> bool:
    """Whether ``channel``'s next connection attempt succeeds (it is READY before it fails)."""
    state = channel.get_state(try_to_connect=True)
    while state is not _READY:
        await channel.wait_for_state_change(state)
        state = channel.get_state(try_to_connect=True)
        if state is _FAILING:
            return False
    return True


class _Endpoint:
    """One address of one registered security server, and the channel to it."""

    __slots__ = ("address", "channel", "server")

    def __init__(self, server: SecurityServerId, address: str, channel: grpc.aio.Channel) -> None:
        self.server = server
        self.address = address
        self.channel = channel


class _Route:
    """The endpoints of the security servers that serve one subsystem, taken in turn."""

    __slots__ = ("_turn", "endpoints")

    def __init__(self, endpoints: list[_Endpoint]) -> None:
        self.endpoints = endpoints
        self._turn: Iterator[int] = itertools.cycle(range(len(endpoints)))

    def order(self) -> list[_Endpoint]:
        """Every endpoint, starting with the next in turn."""
        first = next(self._turn)
        return self.endpoints[first:] + self.endpoints[:first]


class PeerChannels:
    """mTLS channels to other members' security servers, created on first use and kept while
    the global configuration keeps the server at that address.

    Each channel goes to one registered server's address and expects the TLS name that only that
    server's authentication certificate carries (:func:`pki.tls_server_name`): a peer holding any
    other certificate — another member's, an unregistered server's — fails the handshake.

    Exchanges for a subsystem served by several security servers are spread over them in turn;
    a server whose connection is down is skipped. When none is connected, the exchange waits (at
    most :data:`CONNECT_WAIT` seconds and half its remaining time) for the first to connect, or
    is refused at once when every server failed its last connection attempt.
    """

    def __init__(
        self, configuration: GlobalConfiguration, identity: TlsIdentity, limits: Limits
    ) -> None:
        self._configuration = configuration
        self._credentials = _credentials(identity)
        self._options = [*channel_options(limits), *_RECONNECT]
        self._routes: dict[SubsystemId, _Route] = {}
        self._endpoints: dict[tuple[SecurityServerId, str], _Endpoint] = {}
        self._retiring: set[asyncio.Task[None]] = set()

    def _retire(self, endpoints: list[_Endpoint], grace: float) -> None:
        for endpoint in endpoints:
            closing = asyncio.create_task(endpoint.channel.close(grace))
            self._retiring.add(closing)
            closing.add_done_callback(self._retiring.discard)

    def replace_identity(self, identity: TlsIdentity, grace: float = 60.0) -> None:
        """Use ``identity`` (a renewed certificate, new trust anchors) for every new exchange.

        Channels made with the previous identity stop taking new calls at once and close when
        their calls in flight have finished (at most ``grace`` seconds later).
        """
        self._credentials = _credentials(identity)
        endpoints, self._endpoints, self._routes = self._endpoints, {}, {}
        self._retire(list(endpoints.values()), grace)

    def replace_configuration(
        self, configuration: GlobalConfiguration, grace: float = 60.0
    ) -> None:
        """Route new exchanges by ``configuration``: channels to servers (or addresses) it no
        longer lists close once their calls in flight have finished."""
        self._configuration = configuration
        self._routes = {}
        gone = [
            key
            for key in self._endpoints
            if key[1] not in getattr(configuration.security_servers.get(key[0]), "addresses", ())
        ]
        self._retire([self._endpoints.pop(key) for key in gone], grace)

    async def channel(self, provider: SubsystemId, time_left: float | None) -> grpc.aio.Channel:
        """A channel to a security server that serves ``provider``: a connected one in turn,
        else the first to connect within ``time_left`` (and :data:`CONNECT_WAIT`) seconds.

        Raises:
            GatewayError: ``provider_unavailable`` when no server is registered for the
                provider, or none connects in time.
        """
        route = self._routes.get(provider)
        if route is None:
            route = self._routes[provider] = self._open(provider)
        candidates = route.order()
        chosen = None
        failing = 0
        for endpoint in candidates:
            state = endpoint.channel.get_state(try_to_connect=True)
            if state is _READY and chosen is None:
                chosen = endpoint.channel
            elif state is _FAILING:
                failing += 1
        if chosen is not None:
            return chosen
        servers = ", ".join(sorted({str(e.server) for e in candidates}))
        if failing == len(candidates):
            # Every server failed its last connection attempt: refuse now rather than wait
            # for reconnection (in the background) to succeed.
            raise GatewayError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"no security server of {provider} can be reached ({servers})",
            )
        # Half the caller's time at most, so the refusal reaches it before its deadline.
        wait = CONNECT_WAIT if time_left is None else max(0.0, min(CONNECT_WAIT, time_left / 2))
        attempts: dict[asyncio.Future[bool], _Endpoint] = {
            asyncio.ensure_future(_connect(endpoint.channel)): endpoint for endpoint in candidates
        }
        pending: set[asyncio.Future[bool]] = set(attempts)
        deadline = asyncio.get_running_loop().time() + wait
        try:
            while pending:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                done, pending = await asyncio.wait(
                    pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                for future in done:
                    if future.exception() is None and future.result():
                        return attempts[future].channel
        finally:
            for future in attempts:
                future.cancel()
        if not pending:
            raise GatewayError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"no security server of {provider} can be reached ({servers})",
            )
        raise GatewayError(
            ErrorCode.PROVIDER_UNAVAILABLE,
            f"no security server of {provider} could be connected to within {wait:.1f} s"
            f" ({servers})",
        )

    def _open(self, provider: SubsystemId) -> _Route:
        servers = self._configuration.servers_for(provider)
        if not servers:
            raise GatewayError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"no security server is registered for {provider}",
                "pintu-provider",
            )
        endpoints = []
        for server in servers:
            for address in server.addresses:
                endpoint = self._endpoints.get((server.id, address))
                if endpoint is None:
                    endpoint = self._endpoints[(server.id, address)] = _Endpoint(
                        server.id,
                        address,
                        grpc.aio.secure_channel(
                            address,
                            self._credentials,
                            options=[
                                *self._options,
                                ("grpc.ssl_target_name_override", tls_server_name(server.id)),
                            ],
                        ),
                    )
                endpoints.append(endpoint)
        return _Route(endpoints)

    async def close(self) -> None:
        """Close every channel (in-flight calls on them fail)."""
        endpoints, self._endpoints, self._routes = self._endpoints, {}, {}
        await asyncio.gather(*(endpoint.channel.close(None) for endpoint in endpoints.values()))
        for closing in list(self._retiring):
            closing.cancel()


class BackendChannels:
    """Plaintext channels to this security server's local backends, one per address."""

    def __init__(self, addresses: set[str], limits: Limits) -> None:
        options = channel_options(limits)
        self._channels = {
            address: grpc.aio.insecure_channel(address, options=options) for address in addresses
        }

    def channel(self, address: str) -> grpc.aio.Channel:
        """The channel to ``address`` (one of those given at construction)."""
        return self._channels[address]

    async def close(self) -> None:
        """Close every channel."""
        for channel in self._channels.values():
            await channel.close(None)
