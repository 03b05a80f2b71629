"""Fixtures shared by every test package: one throwaway PostgreSQL cluster for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools.postgres import PostgresCluster, PostgresMissing


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the session; tests take their own schemas."""
    missing: str | None = None
    try:
        cluster = PostgresCluster.start()
    except PostgresMissing as error:
        missing = str(error)
    if missing is not None:
        # Fail, never skip: without PostgreSQL the registry's and the consent service's
        # highly available backend goes untested.
        pytest.fail(missing, pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A fresh, empty schema of the cluster's ``registry`` database (SQLAlchemy URL)."""
    return postgres_cluster.create_schema()
