"""Signing and checking signatures, and who issued a certificate: the helpers the OCSP staple
check, the certificate keeper and the registry's snapshots share."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
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


# --- chains_to: a path to a root through CAs only ---------------------------------------------


def _intermediate(root: pki.CertificateAuthority) -> pki.CertificateAuthority:
    key = pki.generate_key()
    return pki.CertificateAuthority(
        key, root.issue_intermediate("issuing", key.public_key(), now=NOW, lifetime=DAY * 10)
    )


def _leaf(
    ca: pki.CertificateAuthority, *, now: dt.datetime = NOW
) -> tuple[pki.PrivateKey, x509.Certificate]:
    key = pki.generate_key()
    return key, ca.issue_configuration_signing_certificate(
        RegistryId("DEMO"), key.public_key(), now=now, lifetime=DAY
    )


def _signed_by(key: pki.PrivateKey, issuer: x509.Certificate, *, ca: bool) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=below"))
        .issuer_name(issuer.subject)
        .public_key(pki.generate_key().public_key())
        .serial_number(7)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]


def test_a_leaf_under_the_root_or_an_issuing_ca_chains() -> None:
    root = pki.CertificateAuthority.create("DEMO", now=NOW - DAY, lifetime=DAY * 30)
    issuing = _intermediate(root)
    _, direct = _leaf(root)
    _, below = _leaf(issuing)
    assert pki.chains_to([direct], [root.certificate], NOW)
    assert pki.chains_to([below, issuing.certificate], [root.certificate], NOW)
    # Without the issuing CA in the chain, or trusting another root: no path.
    assert not pki.chains_to([below], [root.certificate], NOW)
    other = pki.CertificateAuthority.create("DEMO", now=NOW - DAY, lifetime=DAY * 30)
    assert not pki.chains_to([direct], [other.certificate], NOW)
    assert not pki.chains_to([], [root.certificate], NOW)


def test_a_leaf_cannot_issue() -> None:
    root = pki.CertificateAuthority.create("DEMO", now=NOW - DAY, lifetime=DAY * 30)
    key, leaf = _leaf(root)
    forged = _signed_by(key, leaf, ca=False)
    assert not pki.chains_to([forged, leaf], [root.certificate], NOW)


def test_a_ca_certificate_is_no_leaf() -> None:
    root = pki.CertificateAuthority.create("DEMO", now=NOW - DAY, lifetime=DAY * 30)
    issuing = _intermediate(root)
    assert not pki.chains_to([issuing.certificate], [root.certificate], NOW)


def test_an_issuing_ca_that_may_issue_leaves_only_cannot_issue_a_ca() -> None:
    root = pki.CertificateAuthority.create("DEMO", now=NOW - DAY, lifetime=DAY * 30)
    issuing = _intermediate(root)  # path length 0
    sub_ca = _signed_by(issuing.key, issuing.certificate, ca=True)
    sub_key = pki.generate_key()
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=leaf"))
        .issuer_name(sub_ca.subject)
        .public_key(sub_key.public_key())
        .serial_number(8)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .sign(issuing.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    assert not pki.chains_to([leaf, sub_ca, issuing.certificate], [root.certificate], NOW)


def test_an_expired_link_breaks_the_path() -> None:
    root = pki.CertificateAuthority.create("DEMO", now=NOW - DAY * 10, lifetime=DAY * 30)
    _, old = _leaf(root, now=NOW - DAY * 3)
    assert not pki.chains_to([old], [root.certificate], NOW)
    assert pki.chains_to([old], [root.certificate], NOW - DAY * 3 + dt.timedelta(hours=1))


def test_the_chain_may_go_on_past_the_certificate_a_root_issued() -> None:
    root = pki.CertificateAuthority.create("DEMO", now=NOW - DAY, lifetime=DAY * 30)
    issuing = _intermediate(root)
    _, leaf = _leaf(issuing)
    unrelated = pki.CertificateAuthority.create("DEMO", now=NOW - DAY, lifetime=DAY * 30)
    assert pki.chains_to(
        [leaf, issuing.certificate, unrelated.certificate], [root.certificate], NOW
    )
