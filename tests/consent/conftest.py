"""Fixtures for the consent tests: stores on SQLite and on a real, throwaway PostgreSQL
cluster (as the registry's tests have them), and a federation signing receipts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from consent import ConsentStore
from tests.consent.support import Federation, Signer


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind the consent store supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/consent.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[ConsentStore]:
    opened = ConsentStore(store_url)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def federation() -> Federation:
    return Federation.create()


@pytest.fixture(scope="session")
def signer(federation: Federation) -> Signer:
    """The consent service's signing key and certificate."""
    return federation.signer()
