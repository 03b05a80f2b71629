"""A security server's copy of the global configuration, against a real registry service (and a
stand-in distribution server for the snapshots a registry must never serve)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from pintu import free_port
from proto.pintu.v1 import registry_pb2
from registry import (
    Anchor,
    ConfigurationClient,
    ConfigurationExpired,
    ConfigurationMalformed,
    ConfigurationRollback,
    ConfigurationSignatureInvalid,
    GlobalConfiguration,
    RegistryUnavailable,
    Subscriber,
)
from tests.registry.support import (
    BANK,
    POPREG,
    VALIDITY,
    FakeDistribution,
    Federation,
    RunningRegistry,
    eventually,
    put_member,
    remove_member,
    sample_registry,
)

WAIT = 5.0
POLL = dt.timedelta(seconds=0.2)

MakeClient = Callable[..., ConfigurationClient]


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[MakeClient]:
    """Configuration clients (cache in ``tmp_path`` unless given), all stopped at teardown."""
    made: list[ConfigurationClient] = []

    def make(anchor: Anchor, cache: Path | None = None, **options: object) -> ConfigurationClient:
        client = ConfigurationClient(
            anchor,
            cache or tmp_path / "global-configuration.bin",
            poll=POLL,
            **options,  # type: ignore[arg-type]
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.stop()


async def bootstrap(client: ConfigurationClient) -> None:
    # bootstrap() blocks (a server calls it before its event loop runs): keep the registry,
    # which shares this loop, answering meanwhile.
    await asyncio.wait_for(asyncio.to_thread(client.bootstrap), WAIT)


async def served(registry: RunningRegistry) -> bytes:
    """The snapshot the registry serves now."""
    async with httpx.AsyncClient(timeout=WAIT) as http:
        response = await http.get(registry.distribution)
    assert response.status_code == 200
    return response.content


def tampered(blob: bytes) -> bytes:
    """``blob`` with one byte of its signed content changed (still parsable)."""
    envelope = registry_pb2.SignedGlobalConfiguration.FromString(blob)
    content = bytearray(envelope.content)
    content[content.index(b"DEMO")] = ord("X")
    envelope.content = bytes(content)
    return envelope.SerializeToString()


def recorder() -> tuple[list[GlobalConfiguration], Subscriber]:
    """A subscriber and the configurations it was told about."""
    seen: list[GlobalConfiguration] = []

    async def subscriber(configuration: GlobalConfiguration) -> None:
        seen.append(configuration)

    return seen, subscriber


# --- bootstrap ----------------------------------------------------------------------------------


async def test_bootstrap_from_nothing_downloads_and_writes_the_cache(
    registry: RunningRegistry, make_client: MakeClient, tmp_path: Path
) -> None:
    await registry.admin.change(sample_registry(), "import")
    client = make_client(registry.anchor())
    with pytest.raises(RegistryUnavailable):
        _ = client.configuration
    await bootstrap(client)
    assert client.configuration.version == 1
    assert POPREG in client.configuration.members
    assert client.last_success is not None
    assert (tmp_path / "global-configuration.bin").read_bytes() == await served(registry)
    assert 0 < client.seconds_to_expiry() <= VALIDITY.total_seconds()


async def test_bootstrap_from_a_valid_cache_needs_no_network(
    registry: RunningRegistry, make_client: MakeClient, fake_distribution: FakeDistribution
) -> None:
    await registry.admin.change(sample_registry(), "import")
    await bootstrap(make_client(registry.anchor()))
    await registry.stop()
    # The second client's only distribution address counts requests (and answers none).
    fake_distribution.mode = "down"
    second = make_client(registry.anchor(fake_distribution.url))
    await bootstrap(second)
    assert second.configuration.version == 1
    assert fake_distribution.requests == 0


async def test_bootstrap_replaces_a_cache_that_fails_verification(
    registry: RunningRegistry, make_client: MakeClient, tmp_path: Path
) -> None:
    await registry.admin.change(sample_registry(), "import")
    cache = tmp_path / "global-configuration.bin"
    cache.write_bytes(tampered(await served(registry)))
    client = make_client(registry.anchor())
    assert client.load_cache() is False
    await bootstrap(client)
    assert client.configuration.version == 1
    assert cache.read_bytes() == await served(registry)


async def test_bootstrap_keeps_an_expired_cache_when_the_registry_is_unreachable(
    registry: RunningRegistry, make_client: MakeClient
) -> None:
    await registry.admin.change(sample_registry(), "import")
    await bootstrap(make_client(registry.anchor()))
    await registry.stop()
    later = registry.federation.now + 2 * VALIDITY
    client = make_client(registry.anchor(), clock=lambda: later)
    await bootstrap(client)
    assert client.configuration.version == 1
    assert client.configuration.expired(later)
    assert client.seconds_to_expiry() < 0


async def test_bootstrap_with_nothing_cached_and_the_registry_unreachable(
    make_client: MakeClient, federation: Federation
) -> None:
    anchor = Anchor(
        "DEMO",
        (f"http://127.0.0.1:{free_port()}/global-configuration",),
        "127.0.0.1:1",
        federation.roots,
    )
    client = make_client(anchor)
    with pytest.raises(RegistryUnavailable) as info:
        await bootstrap(client)
    assert info.value.code == "registry_unavailable"


async def test_bootstrap_refuses_a_tampered_snapshot(
    registry: RunningRegistry, make_client: MakeClient, fake_distribution: FakeDistribution
) -> None:
    fake_distribution.blob = tampered(await served(registry))
    client = make_client(registry.anchor(fake_distribution.url))
    with pytest.raises(ConfigurationSignatureInvalid):
        await bootstrap(client)
    assert not client.cache.exists()


# --- refresh ------------------------------------------------------------------------------------


async def test_refresh_without_a_change_is_a_304(
    registry: RunningRegistry, make_client: MakeClient
) -> None:
    statuses: list[int] = []

    async def record(response: httpx.Response) -> None:
        statuses.append(response.status_code)

    http = httpx.AsyncClient(timeout=WAIT, event_hooks={"response": [record]})
    client = make_client(registry.anchor(), http=http)
    await bootstrap(client)
    seen, subscriber = recorder()
    client.subscribe(subscriber)
    assert await client.refresh() is False
    assert statuses == [304]
    assert seen == []


async def test_refresh_takes_a_new_version_and_tells_subscribers(
    registry: RunningRegistry, make_client: MakeClient
) -> None:
    await registry.admin.change(sample_registry(), "import")
    client = make_client(registry.anchor())
    await bootstrap(client)
    seen, subscriber = recorder()
    failing_calls: list[int] = []

    async def failing(configuration: GlobalConfiguration) -> None:
        failing_calls.append(configuration.version)
        raise RuntimeError("a subscriber that fails")

    client.subscribe(failing)
    client.subscribe(subscriber)
    await registry.admin.change([remove_member(BANK)], "gone")
    assert await client.refresh() is True
    assert client.configuration.version == 2
    assert BANK not in client.configuration.members
    # A failing subscriber does not keep the others from hearing.
    assert failing_calls == [2]
    assert [c.version for c in seen] == [2]
    assert client.cache.read_bytes() == await served(registry)


async def test_a_tampered_snapshot_is_refused_and_the_last_good_kept(
    registry: RunningRegistry, make_client: MakeClient, fake_distribution: FakeDistribution
) -> None:
    await registry.admin.change(sample_registry(), "import")
    fake_distribution.blob = await served(registry)
    client = make_client(registry.anchor(fake_distribution.url))
    await bootstrap(client)
    cached = client.cache.read_bytes()
    seen, subscriber = recorder()
    client.subscribe(subscriber)
    await registry.admin.change([remove_member(BANK)], "gone")
    fake_distribution.blob = tampered(await served(registry))
    with pytest.raises(ConfigurationSignatureInvalid) as info:
        await client.refresh()
    assert info.value.code == "configuration_signature_invalid"
    assert client.configuration.version == 1
    assert client.cache.read_bytes() == cached
    assert seen == []


async def test_a_rollback_is_refused_and_the_last_good_kept(
    registry: RunningRegistry, make_client: MakeClient, fake_distribution: FakeDistribution
) -> None:
    await registry.admin.change(sample_registry(), "import")
    version_1 = await served(registry)
    await registry.admin.change([remove_member(BANK)], "gone")
    fake_distribution.blob = await served(registry)
    client = make_client(registry.anchor(fake_distribution.url))
    await bootstrap(client)
    assert client.configuration.version == 2
    cached = client.cache.read_bytes()
    fake_distribution.blob = version_1
    with pytest.raises(ConfigurationRollback) as info:
        await client.refresh()
    assert info.value.code == "configuration_rollback"
    assert client.configuration.version == 2
    assert client.cache.read_bytes() == cached


async def test_an_expired_snapshot_is_refused(
    registry: RunningRegistry, make_client: MakeClient
) -> None:
    await registry.admin.change(sample_registry(), "import")
    later = registry.federation.now + 2 * VALIDITY
    client = make_client(registry.anchor(), clock=lambda: later)
    with pytest.raises(ConfigurationExpired):
        await client.refresh()
    with pytest.raises(RegistryUnavailable):
        _ = client.configuration


async def test_refresh_with_the_registry_unreachable(
    registry: RunningRegistry, make_client: MakeClient
) -> None:
    client = make_client(registry.anchor())
    await bootstrap(client)
    await registry.stop()
    with pytest.raises(RegistryUnavailable):
        await client.refresh()
    assert client.configuration.version == 0


# --- following the registry ---------------------------------------------------------------------


async def test_polling_picks_up_a_change_and_tells_subscribers(
    registry: RunningRegistry, make_client: MakeClient
) -> None:
    client = make_client(registry.anchor())
    await bootstrap(client)
    news: asyncio.Queue[GlobalConfiguration] = asyncio.Queue()

    async def subscriber(configuration: GlobalConfiguration) -> None:
        await news.put(configuration)

    client.subscribe(subscriber)
    await client.start()
    version = await registry.admin.change([put_member(POPREG, "Population Registry")], "join")
    configuration = await asyncio.wait_for(news.get(), WAIT)
    assert configuration.version == version == 1
    assert client.configuration.version == 1
    await client.stop()


async def test_failures_grow_while_unreachable_and_reset_after_success(
    registry: RunningRegistry, make_client: MakeClient, fake_distribution: FakeDistribution
) -> None:
    fake_distribution.blob = await served(registry)
    client = make_client(registry.anchor(fake_distribution.url))
    await bootstrap(client)
    success = client.last_success
    fake_distribution.mode = "down"
    await client.start()
    await eventually(lambda: client.failures >= 2, "failures counted")
    assert client.last_success == success
    fake_distribution.mode = "serve"
    await eventually(lambda: client.failures == 0, "failures reset")
    assert client.last_success is not None
    assert client.last_success != success
    await client.stop()


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    """The records of ``pintu.registry`` that carry the event ``name``."""
    return [
        record
        for record in caplog.records
        if record.name == "pintu.registry"
        and getattr(record, "pintu_event", {}).get("event") == name
    ]


async def test_expiry_is_logged_at_half_the_validity_and_at_expiry(
    registry: RunningRegistry,
    make_client: MakeClient,
    fake_distribution: FakeDistribution,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pintu.registry")
    now = [dt.datetime.now(dt.UTC)]
    fake_distribution.blob = await served(registry)
    client = make_client(registry.anchor(fake_distribution.url), clock=lambda: now[0])
    await bootstrap(client)
    expires_at = client.configuration.expires_at
    assert expires_at is not None
    fake_distribution.mode = "down"
    await client.start()
    await eventually(lambda: client.failures >= 1, "a failed poll")
    assert not events(caplog, "configuration_expiring")
    assert not events(caplog, "configuration_expired")

    now[0] = expires_at - VALIDITY / 2 + dt.timedelta(seconds=1)
    await eventually(lambda: bool(events(caplog, "configuration_expiring")), "expiring logged")
    (expiring,) = events(caplog, "configuration_expiring")
    assert expiring.levelno == logging.WARNING
    assert "version 0" in expiring.getMessage()
    assert not events(caplog, "configuration_expired")

    now[0] = expires_at
    await eventually(lambda: bool(events(caplog, "configuration_expired")), "expired logged")
    (expired,) = events(caplog, "configuration_expired")
    assert expired.levelno == logging.ERROR
    assert client.seconds_to_expiry() <= 0
    # Once each, however many polls fail afterwards; the last good copy is kept.
    failures = client.failures
    await eventually(lambda: client.failures >= failures + 2, "more failed polls")
    assert len(events(caplog, "configuration_expiring")) == 1
    assert len(events(caplog, "configuration_expired")) == 1
    assert client.configuration.version == 0


async def test_catch_up_returns_once_the_version_is_reached(
    registry: RunningRegistry, make_client: MakeClient
) -> None:
    client = make_client(registry.anchor())
    await bootstrap(client)
    version = await registry.admin.change(sample_registry(), "import")
    await asyncio.wait_for(client.catch_up(version), WAIT)
    assert client.configuration.version == version


# --- the anchor ---------------------------------------------------------------------------------


@pytest.fixture
def registry_anchor(federation: Federation) -> Anchor:
    return Anchor(
        "DEMO",
        ("http://127.0.0.1:7501/global-configuration", "http://127.0.0.2:7501/x"),
        "127.0.0.1:7500",
        federation.roots,
    )


def test_anchor_round_trips(registry_anchor: Anchor, tmp_path: Path) -> None:
    path = tmp_path / "anchor.json"
    registry_anchor.save(path)
    assert Anchor.load(path) == registry_anchor


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b"[]",
        b'{"format": 2}',
        b'{"format": 1, "instance": "DEMO"}',
        b'{"format": 1, "instance": "DEMO", "distribution": [], "registry": "x", "roots": []}',
        b'{"format": 1, "instance": "DEMO", "distribution": ["u"], "registry": "x",'
        b' "roots": ["not pem"]}',
    ],
    ids=["not_json", "not_an_object", "other_format", "incomplete", "empty", "bad_root"],
)
def test_a_malformed_anchor(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "anchor.json"
    path.write_bytes(content)
    with pytest.raises(ConfigurationMalformed) as info:
        Anchor.load(path)
    assert str(path) in str(info.value)


def test_a_missing_anchor(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationMalformed):
        Anchor.load(tmp_path / "missing.json")
