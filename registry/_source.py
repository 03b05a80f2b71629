"""Where a security server gets its global configuration from: the registry (through
:class:`registry.ConfigurationClient`) or, for tools and unit tests, a fixed one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Protocol

from registry._global_configuration import GlobalConfiguration

Subscriber = Callable[[GlobalConfiguration], Awaitable[None]]


class ConfigurationSource(Protocol):
    """The global configuration a security server uses, and news of the next one."""

    # Consecutive failed attempts to get a newer configuration, and the last successful one.
    failures: int
    last_success: dt.datetime | None

    @property
    def configuration(self) -> GlobalConfiguration:
        """The configuration in use (it may have expired: check before use)."""
        ...

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` with every new configuration."""
        ...

    def seconds_to_expiry(self) -> float:
        """Seconds until the configuration in use expires (infinity if it never does)."""
        ...

    async def start(self) -> None:
        """Begin following the source."""
        ...

    async def stop(self) -> None:
        """Stop following it."""
        ...


class StaticConfiguration:
    """A configuration given once; :meth:`publish` replaces it (and tells subscribers)."""

    def __init__(
        self,
        configuration: GlobalConfiguration,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._configuration = configuration
        self._clock = clock
        self._subscribers: list[Subscriber] = []
        self.failures = 0
        self.last_success: dt.datetime | None = None

    @property
    def configuration(self) -> GlobalConfiguration:
        """The configuration given."""
        return self._configuration

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` on :meth:`publish`."""
        self._subscribers.append(subscriber)

    def seconds_to_expiry(self) -> float:
        """Seconds until the configuration expires (infinity if it never does)."""
        expires_at = self._configuration.expires_at
        if expires_at is None:
            return float("inf")
        return (expires_at - self._clock()).total_seconds()

    async def publish(self, configuration: GlobalConfiguration) -> None:
        """Use ``configuration`` from now on."""
        self._configuration = configuration
        for subscriber in self._subscribers:
            await subscriber(configuration)

    async def start(self) -> None:
        """Nothing to follow."""

    async def stop(self) -> None:
        """Nothing to stop."""
