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
from proto import MemberId
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


class _MemberRoute:
    """The channels to one member's registered security servers, tried round-robin, skipping
    failing ones."""

    __slots__ = ("_channels", "_turn")

    def __init__(self, channels: list[grpc.aio.Channel]) -> None:
        self._channels = channels
        self._turn: Iterator[int] = itertools.cycle(range(len(channels)))

    def pick(self) -> grpc.aio.Channel:
        failing = grpc.ChannelConnectivity.TRANSIENT_FAILURE
        first = next(self._turn)
        for offset in range(len(self._channels)):
            channel = self._channels[(first + offset) % len(self._channels)]
            if channel.get_state() is not failing:
                return channel
        # Every server is failing: try one anyway, so the caller gets a prompt, precise error.
        return self._channels[first]

    async def close(self, grace: float | None = None) -> None:
        await asyncio.gather(*(channel.close(grace) for channel in self._channels))


class PeerChannels:
    """mTLS channels to other members' security servers, keyed by member, created on first use.

    Each channel goes to one registered server's address and expects the TLS name that only that
    server's authentication certificate carries (:func:`pki.tls_server_name`): a peer holding any
    other certificate — another member's, an unregistered server's — fails the handshake.
    """

    def __init__(
        self, configuration: GlobalConfiguration, identity: TlsIdentity, limits: Limits
    ) -> None:
        self._configuration = configuration
        self._credentials = _credentials(identity)
        self._options = [*channel_options(limits), *_RECONNECT]
        self._routes: dict[MemberId, _MemberRoute] = {}
        self._retiring: set[asyncio.Task[None]] = set()

    def replace_identity(self, identity: TlsIdentity, grace: float = 60.0) -> None:
        """Use ``identity`` (a renewed certificate, new trust anchors) for every new exchange.

        Channels made with the previous identity stop taking new calls at once and close when
        their calls in flight have finished (at most ``grace`` seconds later).
        """
        self._credentials = _credentials(identity)
        routes, self._routes = self._routes, {}
        for route in routes.values():
            closing = asyncio.create_task(route.close(grace))
            self._retiring.add(closing)
            closing.add_done_callback(self._retiring.discard)

    def channel(self, member: MemberId) -> grpc.aio.Channel:
        """A channel to one of ``member``'s security servers.

        Raises:
            GatewayError: ``provider_unavailable`` when the member has no registered server.
        """
        route = self._routes.get(member)
        if route is None:
            route = self._routes[member] = self._open(member)
        return route.pick()

    def _open(self, member: MemberId) -> _MemberRoute:
        servers = self._configuration.servers_of(member)
        if not servers:
            raise GatewayError(
                ErrorCode.PROVIDER_UNAVAILABLE, f"member {member} has no registered security server"
            )
        return _MemberRoute(
            [
                grpc.aio.secure_channel(
                    server.address,
                    self._credentials,
                    options=[
                        *self._options,
                        ("grpc.ssl_target_name_override", tls_server_name(server.id)),
                    ],
                )
                for server in servers
            ]
        )

    async def close(self) -> None:
        """Close every channel (in-flight calls on them fail)."""
        routes, self._routes = self._routes, {}
        for route in routes.values():
            await route.close()
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
