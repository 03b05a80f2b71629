"""StaticConfiguration: a fixed configuration source for tools and tests."""

from __future__ import annotations

import datetime as dt
import math

from registry import (
    ConfigurationSource,
    GlobalConfiguration,
    StaticConfiguration,
    apply_changes,
)
from tests.registry.support import INSTANCE, POPREG, put_member

NOW = dt.datetime(2030, 5, 1, 12, 0, tzinfo=dt.UTC)


def empty(expires_at: dt.datetime | None = None) -> GlobalConfiguration:
    return GlobalConfiguration.build(INSTANCE, [], [], [], expires_at=expires_at)


async def test_publish_replaces_the_configuration_and_tells_subscribers_in_order() -> None:
    first, second = empty(), apply_changes(empty(), [put_member(POPREG, "Population Registry")])
    source = StaticConfiguration(first)
    heard: list[tuple[str, GlobalConfiguration]] = []

    async def one(configuration: GlobalConfiguration) -> None:
        heard.append(("one", configuration))

    async def two(configuration: GlobalConfiguration) -> None:
        # The new configuration is in use by the time subscribers hear of it.
        assert source.configuration is configuration
        heard.append(("two", configuration))

    source.subscribe(one)
    source.subscribe(two)
    assert source.configuration is first
    await source.publish(second)
    assert source.configuration is second
    assert heard == [("one", second), ("two", second)]


async def test_publish_without_subscribers() -> None:
    source = StaticConfiguration(empty())
    replacement = empty()
    await source.publish(replacement)
    assert source.configuration is replacement


async def test_start_and_stop_follow_nothing() -> None:
    source = StaticConfiguration(empty())
    await source.start()
    await source.stop()
    assert (source.failures, source.last_success) == (0, None)


def test_a_configuration_without_expiry_never_expires() -> None:
    assert StaticConfiguration(empty(), clock=lambda: NOW).seconds_to_expiry() == math.inf


def test_seconds_to_expiry_follow_the_clock() -> None:
    moments = iter([NOW, NOW + dt.timedelta(minutes=61)])
    source = StaticConfiguration(
        empty(expires_at=NOW + dt.timedelta(hours=1)), clock=lambda: next(moments)
    )
    assert source.seconds_to_expiry() == 3600
    assert source.seconds_to_expiry() == -60


def test_it_is_a_configuration_source() -> None:
    source: ConfigurationSource = StaticConfiguration(empty())
    assert source.failures == 0
