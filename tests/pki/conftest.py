"""A throwaway federation CA and the identities its certificates name."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import pki
from proto import MemberId, SecurityServerId, SubsystemId

CA_LIFETIME = dt.timedelta(days=365)
LEAF_LIFETIME = dt.timedelta(days=30)


@pytest.fixture
def now() -> dt.datetime:
    """The time the tests issue at: the real time, so that ``openssl verify`` accepts it."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
def ca(now: dt.datetime) -> pki.CertificateAuthority:
    return pki.CertificateAuthority.create("DEMO", now=now, lifetime=CA_LIFETIME)


@pytest.fixture
def member() -> MemberId:
    return MemberId.parse("DEMO/GOV/POPREG")


@pytest.fixture
def server(member: MemberId) -> SecurityServerId:
    return member.server("ss1")


@pytest.fixture
def subsystem(member: MemberId) -> SubsystemId:
    return member.subsystem("civilregistry")


@pytest.fixture
def leaf_key() -> ec.EllipticCurvePrivateKey:
    return pki.generate_key()


@pytest.fixture
def ca_folder(tmp_path: Path, now: dt.datetime) -> pki.CaFolder:
    """A CA folder (generation 1) created at ``now``, its keys in unencrypted files (a key
    derivation per load would slow every test down; one test covers the encrypted case)."""
    path = tmp_path / "ca"
    return pki.CaFolder.create(
        path, pki.CaSettings("DEMO"), pki.FileKeyStorage(path, None), now=now, actor="ca-admin"
    )


@pytest.fixture
def ca_ledger(ca_folder: pki.CaFolder) -> Iterator[pki.CaLedger]:
    """The folder's database, closed after the test."""
    ledger = ca_folder.ledger()
    yield ledger
    ledger.close()


@pytest.fixture
def authority(ca_folder: pki.CaFolder, ca_ledger: pki.CaLedger) -> pki.Authority:
    """Generation 1's online authority."""
    return ca_folder.authority(1, ca_ledger)
