"""Long-lived channels: to other members' security servers (mTLS) and to local backends.

Channels are created once and reused by every exchange; choosing one is a dictionary look-up.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import grpc
import grpc.aio

from gateway._errors import ErrorCode, GatewayError
from gateway._settings import Limits
from pki import TlsIdentity, tls_server_name
from proto import MemberId
from registry import GlobalConfiguration


def channel_options(limits: Limits) -> list[tuple[str, int | str]]:
    """Options shared by every channel and server of a gateway."""
    ceiling = limits.transport_ceiling
    return [
        ("grpc.max_send_message_length", ceiling),
        ("grpc.max_receive_message_length", ceiling),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


class _MemberRoute:
    """The channels to one member's security servers, tried round-robin, skipping failing ones."""

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

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close(None)


class PeerChannels:
    """mTLS channels to other members' security servers, keyed by member, created on first use.

    Each channel expects the TLS name that only certificates of that member's servers carry
    (:func:`pki.tls_server_name`), so a peer holding another member's certificate fails the
    handshake.
    """

    def __init__(
        self, configuration: GlobalConfiguration, identity: TlsIdentity, limits: Limits
    ) -> None:
        self._configuration = configuration
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=identity.trust_anchors,
            private_key=identity.private_key,
            certificate_chain=identity.certificate_chain,
        )
        self._options = channel_options(limits)
        self._routes: dict[MemberId, _MemberRoute] = {}

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
        options = [*self._options, ("grpc.ssl_target_name_override", tls_server_name(member))]
        return _MemberRoute(
            [
                grpc.aio.secure_channel(server.address, self._credentials, options=options)
                for server in servers
            ]
        )

    async def close(self) -> None:
        """Close every channel (in-flight calls on them fail)."""
        routes, self._routes = self._routes, {}
        for route in routes.values():
            await route.close()


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
