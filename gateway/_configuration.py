"""The global configuration as the exchange path sees it: the current one, and whether it may
still be used.

Every exchange reads :meth:`CurrentConfiguration.usable` once and keeps that configuration for
its whole course, so a swap in the middle of an exchange never mixes two versions. Once the
configuration has expired, both sides refuse with ``configuration_expired``: a security server
that cannot learn about revoked members, moved servers or replaced certificates must not go on
trusting what it last knew.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway._errors import ErrorCode, GatewayError
from registry import ConfigurationSource, GlobalConfiguration

Listener = Callable[[GlobalConfiguration], Awaitable[None]]


class CurrentConfiguration:
    """Follows a :class:`registry.ConfigurationSource` and tells the gateway's parts of each
    new configuration, in the order they subscribed."""

    def __init__(self, source: ConfigurationSource) -> None:
        self.source = source
        self._listeners: list[Listener] = []
        self._take(source.configuration)
        source.subscribe(self._changed)

    def _take(self, configuration: GlobalConfiguration) -> None:
        self._configuration = configuration
        expires_at = configuration.expires_at
        self._expiry = float("inf") if expires_at is None else expires_at.timestamp()

    async def _changed(self, configuration: GlobalConfiguration) -> None:
        self._take(configuration)
        for listener in self._listeners:
            await listener(configuration)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every new configuration."""
        self._listeners.append(listener)

    @property
    def configuration(self) -> GlobalConfiguration:
        """The configuration in use, expired or not (for start-up checks and metaservices)."""
        return self._configuration

    def usable(self, now: float) -> GlobalConfiguration:
        """The configuration in use, if it has not expired at ``now`` (seconds since the epoch).

        Raises:
            GatewayError: ``configuration_expired``.
        """
        if now >= self._expiry:
            configuration = self._configuration
            raise GatewayError(
                ErrorCode.CONFIGURATION_EXPIRED,
                f"the global configuration (version {configuration.version}) expired at "
                f"{configuration.expires_at.isoformat() if configuration.expires_at else '-'}"
                " and the registry has not provided a newer one",
            )
        return self._configuration
