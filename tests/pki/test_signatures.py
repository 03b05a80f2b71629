"""Signing and checking signatures, and who issued a certificate: the helpers the OCSP staple
check, the certificate keeper and the registry's snapshots share."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

import pki
from proto import RegistryId

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)


KEYS = {
    "ecdsa": pki.generate_key,
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_a_signature_verifies_with_the_signers_certificate_only(kind: str) -> None:
    ca = pki.CertificateAuthority.create("DEMO", now=NOW - DAY, lifetime=DAY * 30)
    key = KEYS[kind]()
    certificate = ca.issue_configuration_signing_certificate(
        RegistryId("DEMO"), key.public_key(), now=NOW, lifetime=DAY
    )
    signature = pki.sign(key, b"the content")

    pki.verify_signature(certificate, signature, b"the content")
    with pytest.raises(InvalidSignature):
        pki.verify_signature(certificate, signature, b"the content, altered")
    with pytest.raises(InvalidSignature):
        pki.verify_signature(ca.certificate, signature, b"the content")


def test_ecdsa_with_another_hash_algorithm() -> None:
    ca = pki.CertificateAuthority.create("DEMO", now=NOW - DAY, lifetime=DAY * 30)
    key = pki.generate_key()
    certificate = ca.issue_configuration_signing_certificate(
        RegistryId("DEMO"), key.public_key(), now=NOW, lifetime=DAY
    )
    signature = key.sign(b"data", ec.ECDSA(hashes.SHA384()))
    pki.verify_signature(certificate, signature, b"data", hashes.SHA384())
    with pytest.raises(InvalidSignature):
        pki.verify_signature(certificate, signature, b"data")  # SHA-256 by default


def test_issued_by_names_the_direct_issuer_only() -> None:
    root = pki.CertificateAuthority.create("DEMO", now=NOW - DAY, lifetime=DAY * 30)
    other = pki.CertificateAuthority.create("DEMO", now=NOW - DAY, lifetime=DAY * 30)
    key = pki.generate_key()
    leaf = root.issue_configuration_signing_certificate(
        RegistryId("DEMO"), key.public_key(), now=NOW, lifetime=DAY
    )
    assert pki.issued_by(leaf, root.certificate)
    assert pki.issued_by(root.certificate, root.certificate)  # self-signed
    # Same name, another key: not its issuer.
    assert not pki.issued_by(leaf, other.certificate)
    assert not pki.issued_by(root.certificate, leaf)
