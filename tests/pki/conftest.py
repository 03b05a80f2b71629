"""A throwaway federation CA and the identities its certificates name."""

from __future__ import annotations

import datetime as dt

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
