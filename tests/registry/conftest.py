"""Fixtures for the registry's tests: a federation, stores on SQLite and on a real PostgreSQL
cluster, a running registry service and a stand-in distribution server."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from registry import RegistryStore
from tests.registry.support import INSTANCE, FakeDistribution, Federation, RunningRegistry


@pytest.fixture
def now() -> dt.datetime:
    """The time tests issue certificates and sign at: the real time, as TLS checks it."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
def federation(now: dt.datetime) -> Federation:
    return Federation.create(now)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind the registry supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[RegistryStore]:
    opened = RegistryStore(store_url, INSTANCE)
    yield opened
    opened.close()


@pytest.fixture
async def registry(federation: Federation, tmp_path: Path) -> AsyncIterator[RunningRegistry]:
    """A registry service on SQLite, gRPC and HTTP on 127.0.0.1."""
    running = await RunningRegistry.start(federation, f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
def fake_distribution() -> Iterator[FakeDistribution]:
    server = FakeDistribution()
    yield server
    server.close()
