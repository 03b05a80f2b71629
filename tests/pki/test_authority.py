"""The online authority without a network: tokens, enrollment, renewal, revocation, CRL, OCSP,
the journal, peer status checks, root acceptance and rollover; checked with OpenSSL's CLI too.

Every refusal test names one bad input, asserts the exact error class and code, that nothing was
issued, and (where the token was valid) that the token still works afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import re
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

import pki
from proto import MemberId, SecurityServerId

OPENSSL = "/usr/bin/openssl"
REGISTRAR = "registrar@demo"
OTHER_MEMBER = MemberId.parse("DEMO/GOV/OTHER")
SHA1 = hashes.SHA1()
HOUR = dt.timedelta(hours=1)
SECOND = dt.timedelta(seconds=1)
Key = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


# --- helpers ------------------------------------------------------------------------------------


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPENSSL, *map(str, args)], capture_output=True, text=True, check=False, timeout=30
    )


def write_pem(path: Path, *certificates: x509.Certificate) -> Path:
    path.write_bytes(pki.certificate_pem(*certificates))
    return path


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def request(key: object, *uris: str) -> bytes:
    """A DER CSR signed by ``key`` naming ``uris`` in its SAN (no SAN extension without any)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    algorithm = (
        None
        if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
        else hashes.SHA256()
    )
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)  # type: ignore[arg-type]


def good_csrs(server: SecurityServerId) -> tuple[bytes, bytes]:
    """Valid authentication and signing requests for ``server``, with two fresh keys."""
    return (
        pki.certificate_request(pki.generate_key(), server.uri),
        pki.certificate_request(pki.generate_key(), server.owner.uri),
    )


def new_token(
    authority: pki.Authority,
    server: SecurityServerId,
    now: dt.datetime,
    lifetime: dt.timedelta | None = None,
) -> str:
    return authority.create_token(server, actor=REGISTRAR, now=now, lifetime=lifetime)


@dataclass(frozen=True)
class Enrolled:
    authentication_key: ec.EllipticCurvePrivateKey
    authentication: pki.IssuedCertificate
    signing_key: ec.EllipticCurvePrivateKey
    signing: pki.IssuedCertificate


def enroll(authority: pki.Authority, server: SecurityServerId, now: dt.datetime) -> Enrolled:
    auth_key, sign_key = pki.generate_key(), pki.generate_key()
    authentication, signing = authority.enroll(
        new_token(authority, server, now),
        pki.certificate_request(auth_key, server.uri),
        pki.certificate_request(sign_key, server.owner.uri),
        now=now,
    )
    return Enrolled(auth_key, authentication, sign_key, signing)


def issued(ledger: pki.CaLedger) -> tuple[list[int], int]:
    """The serials on record and the journal's length."""
    return [r.serial for r in ledger.certificates()], len(list(ledger.journal()))


def refuse(
    ledger: pki.CaLedger, error: type[pki.PkiError], code: str, attempt: Callable[[], object]
) -> pki.PkiError:
    """Run ``attempt``; it must raise exactly ``error`` with ``code`` and record nothing."""
    before = issued(ledger)
    with pytest.raises(error) as caught:
        attempt()
    assert type(caught.value) is error
    assert caught.value.code == code
    assert issued(ledger) == before
    return caught.value


def refuse_enrollment(
    authority: pki.Authority,
    token: str,
    csrs: tuple[bytes, bytes],
    now: dt.datetime,
    error: type[pki.PkiError],
    code: str,
) -> None:
    refuse(authority.ledger, error, code, lambda: authority.enroll(token, *csrs, now=now))


def assert_token_still_works(
    authority: pki.Authority, token: str, server: SecurityServerId, now: dt.datetime
) -> None:
    authentication, signing = authority.enroll(token, *good_csrs(server), now=now)
    assert pki.certificate_identity(authentication.certificate) == server
    assert pki.certificate_identity(signing.certificate) == server.owner


def refuse_renewal(
    authority: pki.Authority,
    current: x509.Certificate,
    kind: str,
    csr: bytes,
    now: dt.datetime,
    error: type[pki.PkiError],
    code: str,
) -> None:
    refuse(authority.ledger, error, code, lambda: authority.renew(current, kind, csr, now=now))


def ocsp_request(
    certificate: x509.Certificate,
    issuer: x509.Certificate,
    *,
    nonce: bytes | None = None,
    algorithm: hashes.HashAlgorithm = SHA1,
) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, algorithm)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def ocsp_request_for_serial(issuer: x509.Certificate, serial: int) -> bytes:
    name_hash, key_hash = pki.issuer_hashes(issuer, SHA1)
    return (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(name_hash, key_hash, serial, SHA1)
        .build()
        .public_bytes(serialization.Encoding.DER)
    )


def signed_by(response: ocsp.OCSPResponse, certificate: x509.Certificate) -> bool:
    key = certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    algorithm = response.signature_hash_algorithm
    assert algorithm is not None
    try:
        key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))
    except InvalidSignature:
        return False
    return True


def staple_signed_by(
    leaf: x509.Certificate,
    issuer: x509.Certificate,
    signer: x509.Certificate,
    key: pki.PrivateKey,
    now: dt.datetime,
) -> bytes:
    """A "good" OCSP response about ``leaf``, naming and carrying ``signer``, signed by ``key``."""
    return (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=leaf,
            issuer=issuer,
            algorithm=SHA1,
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + HOUR,
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, signer)
        .certificates([signer])
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


def foreign_ca(now: dt.datetime) -> pki.CertificateAuthority:
    return pki.CertificateAuthority.create("FOREIGN", now=now, lifetime=dt.timedelta(days=30))


def issuing_ca(folder: pki.CaFolder, number: int = 1) -> pki.CertificateAuthority:
    return pki.CertificateAuthority(
        folder.storage.load(f"G{number}-issuing"), folder.generation(number).issuing
    )


@pytest.fixture
def enrolled(authority: pki.Authority, server: SecurityServerId, now: dt.datetime) -> Enrolled:
    return enroll(authority, server, now)


@pytest.fixture
def verifier(ca_folder: pki.CaFolder) -> pki.StatusVerifier:
    return pki.StatusVerifier([ca_folder.generation(1).issuing], pki.DEFAULT_MAX_AGE)


# --- tokens -------------------------------------------------------------------------------------


def test_token_creation_is_journaled_and_only_its_digest_is_stored(
    authority: pki.Authority, ca_folder: pki.CaFolder, server: SecurityServerId, now: dt.datetime
) -> None:
    token = new_token(authority, server, now)
    assert token.startswith("pintu-enroll-")
    last = list(authority.ledger.journal())[-1]
    assert (last.action, last.actor, last.identity) == ("token", REGISTRAR, str(server))
    stored = b"".join(p.read_bytes() for p in ca_folder.path.glob("ca.sqlite*"))
    assert token.encode() not in stored
    assert token.removeprefix("pintu-enroll-").encode() not in stored


def test_token_lifetime_beyond_the_policy_is_refused(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    too_long = authority.policy.token_lifetime + SECOND
    refuse(
        authority.ledger,
        pki.LedgerError,
        "ca_database_error",
        lambda: new_token(authority, server, now, too_long),
    )


def test_token_with_a_negative_lifetime_is_refused(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    refuse(
        authority.ledger,
        pki.LedgerError,
        "ca_database_error",
        lambda: new_token(authority, server, now, -HOUR),
    )


def test_token_with_a_zero_lifetime_is_refused(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    refuse(
        authority.ledger,
        pki.LedgerError,
        "ca_database_error",
        lambda: new_token(authority, server, now, dt.timedelta(0)),
    )


# --- enrollment: the happy path -----------------------------------------------------------------


def test_enrollment_issues_the_two_profiles(
    authority: pki.Authority,
    ca_folder: pki.CaFolder,
    server: SecurityServerId,
    now: dt.datetime,
) -> None:
    enrolled = enroll(authority, server, now)
    issuing = ca_folder.generation(1).issuing
    urls = ca_folder.settings.urls(1)
    auth, sign = enrolled.authentication.certificate, enrolled.signing.certificate
    assert enrolled.authentication.chain == (issuing,)
    assert enrolled.signing.chain == (issuing,)
    for certificate, key in ((auth, enrolled.authentication_key), (sign, enrolled.signing_key)):
        certificate.verify_directly_issued_by(issuing)
        assert certificate.public_key() == key.public_key()
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.value.ca is False
        access = certificate.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
        assert [d.access_location.value for d in access.value] == [urls.ocsp]
        points = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints)
        assert [n.value for p in points.value for n in p.full_name or ()] == [urls.crl]
    san = auth.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [server.uri]
    assert san.get_values_for_type(x509.DNSName) == [pki.tls_server_name(server)]
    assert pki.certificate_identity(auth) == server
    usage = auth.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert auth.not_valid_after_utc == now + authority.policy.authentication_lifetime
    san = sign.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [server.owner.uri]
    assert san.get_values_for_type(x509.DNSName) == []
    assert pki.certificate_identity(sign) == server.owner
    usage = sign.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [pki.DOCUMENT_SIGNING]
    key_usage = sign.extensions.get_extension_for_class(x509.KeyUsage).value
    assert key_usage.digital_signature
    assert key_usage.content_commitment
    assert sign.not_valid_after_utc == now + authority.policy.signing_lifetime


def test_openssl_verifies_enrolled_certificates_through_the_issuing_ca(
    enrolled: Enrolled, ca_folder: pki.CaFolder, tmp_path: Path
) -> None:
    generation = ca_folder.generation(1)
    root = write_pem(tmp_path / "root.pem", generation.root)
    chain = write_pem(tmp_path / "issuing.pem", *enrolled.authentication.chain)
    for name, issued_certificate, purpose in (
        ("auth.pem", enrolled.authentication, "sslserver"),
        ("auth.pem", enrolled.authentication, "sslclient"),
        ("sign.pem", enrolled.signing, "any"),
    ):
        leaf = write_pem(tmp_path / name, issued_certificate.certificate)
        result = openssl("verify", "-purpose", purpose, "-CAfile", root, "-untrusted", chain, leaf)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"{leaf}: OK"
        # Without the issuing CA the leaf does not chain to the root: the chain is needed.
        assert openssl("verify", "-CAfile", root, leaf).returncode != 0


def test_enrollment_is_journaled_with_the_actor(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    enrolled = enroll(authority, server, now)
    entries = [e for e in authority.ledger.journal() if e.action == "enroll"]
    assert [(e.serial, e.identity, e.detail["kind"]) for e in entries] == [
        (enrolled.authentication.serial, str(server), pki.AUTHENTICATION),
        (enrolled.signing.serial, str(server.owner), pki.SIGNING),
    ]
    for entry in entries:
        assert entry.actor == f"token of {server} from {REGISTRAR}"
        assert entry.at == now
    records = {r.serial: r for r in authority.ledger.certificates()}
    assert records[enrolled.authentication.serial].der == der(enrolled.authentication.certificate)
    assert records[enrolled.signing.serial].kind == pki.SIGNING
    assert records[enrolled.signing.serial].issuer == authority.issuer_name


def test_enrollment_uses_the_token_up(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    token = new_token(authority, server, now)
    authority.enroll(token, *good_csrs(server), now=now)
    refuse_enrollment(authority, token, good_csrs(server), now, pki.TokenUsed, "token_used")


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate,
        lambda: rsa.generate_private_key(65537, 3072),
    ],
    ids=["ec-p384", "ed25519", "rsa-3072"],
)
def test_enrollment_accepts_the_keys_the_policy_allows(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime, make_key: object
) -> None:
    key = make_key()  # type: ignore[operator]
    authentication, _ = authority.enroll(
        new_token(authority, server, now),
        request(key, server.uri),
        pki.certificate_request(pki.generate_key(), server.owner.uri),
        now=now,
    )
    assert authentication.certificate.public_key() == key.public_key()


# --- enrollment: one test per bad input ---------------------------------------------------------


@pytest.mark.parametrize(
    "bad", [b"garbage, not a certificate request", b""], ids=["garbage", "empty"]
)
def test_enrollment_with_unparsable_csr_bytes_is_csr_malformed(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime, bad: bytes
) -> None:
    token = new_token(authority, server, now)
    auth, sign = good_csrs(server)
    refuse_enrollment(authority, token, (bad, sign), now, pki.CsrMalformed, "csr_malformed")
    refuse_enrollment(authority, token, (auth, bad), now, pki.CsrMalformed, "csr_malformed")
    assert_token_still_works(authority, token, server, now)


def test_enrollment_with_a_pem_csr_instead_of_der_is_csr_malformed(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    token = new_token(authority, server, now)
    auth, sign = good_csrs(server)
    pem = x509.load_der_x509_csr(auth).public_bytes(serialization.Encoding.PEM)
    refuse_enrollment(authority, token, (pem, sign), now, pki.CsrMalformed, "csr_malformed")
    assert_token_still_works(authority, token, server, now)


def test_enrollment_with_a_csr_signed_over_other_data_is_csr_signature_invalid(
    authority: pki.Authority, member: MemberId, server: SecurityServerId, now: dt.datetime
) -> None:
    token = new_token(authority, server, now)
    # Signed for ss9, then edited to name ss1 (same length): the signature covers other data.
    signed = pki.certificate_request(pki.generate_key(), member.server("ss9").uri)
    edited = signed.replace(member.server("ss9").uri.encode(), server.uri.encode())
    assert edited != signed
    assert x509.load_der_x509_csr(edited).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.UniformResourceIdentifier) == [server.uri]
    sign = good_csrs(server)[1]
    refuse_enrollment(
        authority, token, (edited, sign), now, pki.CsrSignatureInvalid, "csr_signature_invalid"
    )
    assert_token_still_works(authority, token, server, now)


def test_enrollment_with_a_csr_for_a_key_it_was_not_signed_with_is_csr_signature_invalid(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    token = new_token(authority, server, now)
    holder, claimed = pki.generate_key(), pki.generate_key()
    point = serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    signed = pki.certificate_request(holder, server.uri)
    edited = signed.replace(
        holder.public_key().public_bytes(*point), claimed.public_key().public_bytes(*point)
    )
    assert x509.load_der_x509_csr(edited).public_key() == claimed.public_key()
    sign = good_csrs(server)[1]
    refuse_enrollment(
        authority, token, (edited, sign), now, pki.CsrSignatureInvalid, "csr_signature_invalid"
    )
    assert_token_still_works(authority, token, server, now)


def test_enrollment_with_a_damaged_csr_signature_is_csr_signature_invalid(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    token = new_token(authority, server, now)
    auth, sign = good_csrs(server)
    # The last byte is the last byte of the ECDSA signature's s: the DER stays well-formed.
    damaged = sign[:-1] + bytes([sign[-1] ^ 0x01])
    refuse_enrollment(
        authority, token, (auth, damaged), now, pki.CsrSignatureInvalid, "csr_signature_invalid"
    )
    assert_token_still_works(authority, token, server, now)


def test_enrollment_with_a_csr_naming_another_server_is_csr_identity_mismatch(
    authority: pki.Authority, member: MemberId, server: SecurityServerId, now: dt.datetime
) -> None:
    token = new_token(authority, server, now)
    other = pki.certificate_request(pki.generate_key(), member.server("ss2").uri)
    sign = good_csrs(server)[1]
    refuse_enrollment(
        authority, token, (other, sign), now, pki.CsrIdentityMismatch, "csr_identity_mismatch"
    )
    assert_token_still_works(authority, token, server, now)


def test_enrollment_with_a_signing_csr_naming_another_member_is_csr_identity_mismatch(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    token = new_token(authority, server, now)
    auth = good_csrs(server)[0]
    other = pki.certificate_request(pki.generate_key(), OTHER_MEMBER.uri)
    refuse_enrollment(
        authority, token, (auth, other), now, pki.CsrIdentityMismatch, "csr_identity_mismatch"
    )
    assert_token_still_works(authority, token, server, now)


def test_enrollment_with_the_csrs_swapped_is_csr_identity_mismatch(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    token = new_token(authority, server, now)
    auth, sign = good_csrs(server)
    refuse_enrollment(
        authority, token, (sign, auth), now, pki.CsrIdentityMismatch, "csr_identity_mismatch"
    )
    assert_token_still_works(authority, token, server, now)


def test_enrollment_with_a_csr_without_san_is_csr_identity_mismatch(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    token = new_token(authority, server, now)
    bare = request(pki.generate_key())
    sign = good_csrs(server)[1]
    refuse_enrollment(
        authority, token, (bare, sign), now, pki.CsrIdentityMismatch, "csr_identity_mismatch"
    )
    assert_token_still_works(authority, token, server, now)


def test_enrollment_with_a_csr_naming_two_pintu_uris_is_csr_identity_mismatch(
    authority: pki.Authority, member: MemberId, server: SecurityServerId, now: dt.datetime
) -> None:
    token = new_token(authority, server, now)
    double = request(pki.generate_key(), server.uri, member.server("ss2").uri)
    sign = good_csrs(server)[1]
    refuse_enrollment(
        authority, token, (double, sign), now, pki.CsrIdentityMismatch, "csr_identity_mismatch"
    )
    # Even the token's own identity twice is refused: exactly one urn:pintu: URI.
    twice = request(pki.generate_key(), server.uri, server.uri)
    refuse_enrollment(
        authority, token, (twice, sign), now, pki.CsrIdentityMismatch, "csr_identity_mismatch"
    )
    assert_token_still_works(authority, token, server, now)


def test_enrollment_with_an_unknown_token_is_token_unknown(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    new_token(authority, server, now)
    refuse_enrollment(
        authority,
        "pintu-enroll-not-a-token-the-ca-made",
        good_csrs(server),
        now,
        pki.TokenUnknown,
        "token_unknown",
    )


def test_enrollment_with_an_expired_token_is_token_expired(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    token = new_token(authority, server, now, HOUR)
    refuse_enrollment(
        authority, token, good_csrs(server), now + HOUR, pki.TokenExpired, "token_expired"
    )
    refuse_enrollment(
        authority, token, good_csrs(server), now + 2 * HOUR, pki.TokenExpired, "token_expired"
    )
    # A second before it expires, the same token works.
    assert_token_still_works(authority, token, server, now + HOUR - SECOND)


def test_enrollment_with_a_reused_token_is_token_used(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    token = new_token(authority, server, now)
    assert_token_still_works(authority, token, server, now)
    refuse_enrollment(authority, token, good_csrs(server), now, pki.TokenUsed, "token_used")


def _weak_keys() -> dict[str, object]:
    return {
        "rsa-2048": lambda: rsa.generate_private_key(65537, 2048),
        "ec-p192": lambda: ec.generate_private_key(ec.SECP192R1()),
        "ec-secp256k1": lambda: ec.generate_private_key(ec.SECP256K1()),
        "ec-p521": lambda: ec.generate_private_key(ec.SECP521R1()),
        "dsa-2048": lambda: dsa.generate_private_key(2048),
        "ed448": ed448.Ed448PrivateKey.generate,
    }


@pytest.mark.parametrize("kind", sorted(_weak_keys()))
def test_enrollment_with_a_key_outside_the_policy_is_key_rejected(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime, kind: str
) -> None:
    token = new_token(authority, server, now)
    key = _weak_keys()[kind]()  # type: ignore[operator]
    auth, sign = good_csrs(server)
    weak_auth = request(key, server.uri)
    weak_sign = request(key, server.owner.uri)
    refuse_enrollment(authority, token, (weak_auth, sign), now, pki.KeyRejected, "key_rejected")
    refuse_enrollment(authority, token, (auth, weak_sign), now, pki.KeyRejected, "key_rejected")
    assert_token_still_works(authority, token, server, now)


def _replace_once(data: bytes, old: str, new: str) -> bytes:
    """``data`` with the DER bytes ``old`` (hex) replaced by ``new``: must occur exactly once."""
    assert data.count(bytes.fromhex(old)) == 1
    return data.replace(bytes.fromhex(old), bytes.fromhex(new))


def test_enrollment_with_a_key_of_an_unknown_algorithm_is_key_rejected(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    token = new_token(authority, server, now)
    auth, sign = good_csrs(server)
    # id-ecPublicKey (1.2.840.10045.2.1) becomes 1.2.840.10045.2.9, an algorithm nobody defined.
    unknown = _replace_once(auth, "06072a8648ce3d0201", "06072a8648ce3d0209")
    refuse_enrollment(authority, token, (unknown, sign), now, pki.KeyRejected, "key_rejected")
    assert_token_still_works(authority, token, server, now)


def test_enrollment_with_a_key_on_an_unknown_curve_is_key_rejected(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    token = new_token(authority, server, now)
    auth, sign = good_csrs(server)
    # prime256v1 (1.2.840.10045.3.1.7) becomes 1.2.840.10045.3.1.9, an unknown named curve.
    unknown = _replace_once(auth, "06082a8648ce3d030107", "06082a8648ce3d030109")
    refuse_enrollment(authority, token, (unknown, sign), now, pki.KeyRejected, "key_rejected")
    assert_token_still_works(authority, token, server, now)


def test_enrollment_with_the_same_key_for_both_csrs_is_key_rejected(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    token = new_token(authority, server, now)
    key = pki.generate_key()
    same = (
        pki.certificate_request(key, server.uri),
        pki.certificate_request(key, server.owner.uri),
    )
    refuse_enrollment(authority, token, same, now, pki.KeyRejected, "key_rejected")
    assert_token_still_works(authority, token, server, now)


# --- passphrase-encrypted CA folder -------------------------------------------------------------


def _encrypted_folder(tmp_path: Path, now: dt.datetime) -> Path:
    path = tmp_path / "ca"
    storage = pki.FileKeyStorage(path, b"correct horse battery staple")
    pki.CaFolder.create(path, pki.CaSettings("DEMO"), storage, now=now, actor="ca-admin")
    return path


def test_passphrase_encrypted_folder_round_trips(
    tmp_path: Path, server: SecurityServerId, now: dt.datetime
) -> None:
    path = _encrypted_folder(tmp_path, now)
    for label in ("G1-root", "G1-issuing", "G1-ocsp"):
        assert (
            (path / f"{label}.key")
            .read_bytes()
            .startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        )
    folder = pki.CaFolder(path, pki.FileKeyStorage(path, b"correct horse battery staple"))
    with contextlib.closing(folder.ledger()) as ledger:
        enrolled = enroll(folder.authority(1, ledger), server, now)
    enrolled.authentication.certificate.verify_directly_issued_by(folder.generation(1).issuing)


@pytest.mark.parametrize("passphrase", [b"wrong horse", None], ids=["wrong", "none"])
def test_encrypted_folder_with_a_wrong_passphrase_is_key_material_error(
    tmp_path: Path, now: dt.datetime, passphrase: bytes | None
) -> None:
    path = _encrypted_folder(tmp_path, now)
    folder = pki.CaFolder(path, pki.FileKeyStorage(path, passphrase))
    with (
        contextlib.closing(folder.ledger()) as ledger,
        pytest.raises(pki.KeyMaterialError) as caught,
    ):
        folder.authority(1, ledger)
    assert type(caught.value) is pki.KeyMaterialError
    assert caught.value.code == "key_material_invalid"


# --- renewal ------------------------------------------------------------------------------------


def test_renewal_with_a_valid_certificate_and_a_new_key(
    authority: pki.Authority, enrolled: Enrolled, server: SecurityServerId, now: dt.datetime
) -> None:
    key = pki.generate_key()
    later = now + HOUR
    renewed = authority.renew(
        enrolled.authentication.certificate,
        pki.AUTHENTICATION,
        pki.certificate_request(key, server.uri),
        now=later,
    )
    assert renewed.certificate.public_key() == key.public_key()
    assert pki.certificate_identity(renewed.certificate) == server
    assert renewed.serial != enrolled.authentication.serial
    assert renewed.chain == enrolled.authentication.chain
    assert (
        renewed.certificate.not_valid_after_utc == later + authority.policy.authentication_lifetime
    )
    record = authority.ledger.certificate(renewed.serial)
    assert record is not None
    assert (record.kind, record.renewed_from) == (
        pki.AUTHENTICATION,
        enrolled.authentication.serial,
    )
    last = list(authority.ledger.journal())[-1]
    assert (last.action, last.serial, last.identity, last.at) == (
        "renew",
        renewed.serial,
        str(server),
        later,
    )
    assert last.actor == f"{server} (mutual TLS)"
    assert last.detail["renewed_from"] == str(enrolled.authentication.serial)


def test_renewal_of_the_signing_certificate(
    authority: pki.Authority, enrolled: Enrolled, server: SecurityServerId, now: dt.datetime
) -> None:
    key = pki.generate_key()
    renewed = authority.renew(
        enrolled.authentication.certificate,
        pki.SIGNING,
        pki.certificate_request(key, server.owner.uri),
        now=now,
    )
    assert pki.certificate_identity(renewed.certificate) == server.owner
    usage = renewed.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [pki.DOCUMENT_SIGNING]
    record = authority.ledger.certificate(renewed.serial)
    assert record is not None
    assert (record.kind, record.renewed_from) == (pki.SIGNING, enrolled.authentication.serial)


def test_renewal_with_a_revoked_certificate_is_renewal_refused(
    authority: pki.Authority, enrolled: Enrolled, server: SecurityServerId, now: dt.datetime
) -> None:
    authority.revoke(enrolled.authentication.serial, "key_compromise", actor="ca-admin", now=now)
    csr = pki.certificate_request(pki.generate_key(), server.uri)
    refuse_renewal(
        authority,
        enrolled.authentication.certificate,
        pki.AUTHENTICATION,
        csr,
        now,
        pki.RenewalRefused,
        "renewal_refused",
    )


def test_renewal_with_an_expired_certificate_is_renewal_refused(
    authority: pki.Authority, enrolled: Enrolled, server: SecurityServerId, now: dt.datetime
) -> None:
    current = enrolled.authentication.certificate
    csr = pki.certificate_request(pki.generate_key(), server.uri)
    for moment in (current.not_valid_after_utc, current.not_valid_after_utc + SECOND):
        refuse_renewal(
            authority,
            current,
            pki.AUTHENTICATION,
            csr,
            moment,
            pki.RenewalRefused,
            "renewal_refused",
        )
    # A second earlier it is still valid, and renews.
    authority.renew(current, pki.AUTHENTICATION, csr, now=current.not_valid_after_utc - SECOND)


def test_renewal_with_a_certificate_of_another_ca_is_renewal_refused(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    enroll(authority, server, now)
    key = pki.generate_key()
    foreign = foreign_ca(now).issue_server_certificate(
        server, key.public_key(), now=now, lifetime=HOUR
    )
    refuse_renewal(
        authority,
        foreign,
        pki.AUTHENTICATION,
        pki.certificate_request(pki.generate_key(), server.uri),
        now,
        pki.RenewalRefused,
        "renewal_refused",
    )


def test_renewal_with_a_certificate_the_ledger_does_not_know_is_renewal_refused(
    authority: pki.Authority, ca_folder: pki.CaFolder, server: SecurityServerId, now: dt.datetime
) -> None:
    # Made with the issuing CA's own key, but never recorded: not issued by the authority.
    unrecorded = issuing_ca(ca_folder).issue_server_certificate(
        server, pki.generate_key().public_key(), now=now, lifetime=HOUR
    )
    refuse_renewal(
        authority,
        unrecorded,
        pki.AUTHENTICATION,
        pki.certificate_request(pki.generate_key(), server.uri),
        now,
        pki.RenewalRefused,
        "renewal_refused",
    )


def test_renewal_with_a_forgery_of_a_recorded_serial_is_renewal_refused(
    authority: pki.Authority, enrolled: Enrolled, server: SecurityServerId, now: dt.datetime
) -> None:
    real = enrolled.authentication.certificate
    forger = foreign_ca(now)
    key = pki.generate_key()
    forged = (
        x509.CertificateBuilder()
        .subject_name(real.subject)
        .issuer_name(real.issuer)
        .public_key(key.public_key())
        .serial_number(real.serial_number)
        .not_valid_before(real.not_valid_before_utc)
        .not_valid_after(real.not_valid_after_utc)
        .add_extension(
            real.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, False
        )
        .sign(forger.key, hashes.SHA256())
    )
    refuse_renewal(
        authority,
        forged,
        pki.AUTHENTICATION,
        pki.certificate_request(pki.generate_key(), server.uri),
        now,
        pki.RenewalRefused,
        "renewal_refused",
    )


def test_renewal_with_a_signing_certificate_is_renewal_refused(
    authority: pki.Authority, enrolled: Enrolled, server: SecurityServerId, now: dt.datetime
) -> None:
    refuse_renewal(
        authority,
        enrolled.signing.certificate,
        pki.SIGNING,
        pki.certificate_request(pki.generate_key(), server.owner.uri),
        now,
        pki.RenewalRefused,
        "renewal_refused",
    )


def test_renewal_with_the_same_key_is_key_rejected(
    authority: pki.Authority, enrolled: Enrolled, server: SecurityServerId, now: dt.datetime
) -> None:
    refuse_renewal(
        authority,
        enrolled.authentication.certificate,
        pki.AUTHENTICATION,
        pki.certificate_request(enrolled.authentication_key, server.uri),
        now,
        pki.KeyRejected,
        "key_rejected",
    )


def test_renewal_of_the_signing_certificate_with_its_current_key_is_key_rejected(
    authority: pki.Authority, enrolled: Enrolled, server: SecurityServerId, now: dt.datetime
) -> None:
    refuse_renewal(
        authority,
        enrolled.authentication.certificate,
        pki.SIGNING,
        pki.certificate_request(enrolled.signing_key, server.owner.uri),
        now,
        pki.KeyRejected,
        "key_rejected",
    )


def test_renewal_of_authentication_with_the_signing_key_is_key_rejected(
    authority: pki.Authority, enrolled: Enrolled, server: SecurityServerId, now: dt.datetime
) -> None:
    # Enrollment refuses one key for both certificates; renewal must not let it in later.
    refuse_renewal(
        authority,
        enrolled.authentication.certificate,
        pki.AUTHENTICATION,
        pki.certificate_request(enrolled.signing_key, server.uri),
        now,
        pki.KeyRejected,
        "key_rejected",
    )


def test_renewal_with_a_csr_naming_another_server_is_csr_identity_mismatch(
    authority: pki.Authority,
    enrolled: Enrolled,
    member: MemberId,
    server: SecurityServerId,
    now: dt.datetime,
) -> None:
    refuse_renewal(
        authority,
        enrolled.authentication.certificate,
        pki.AUTHENTICATION,
        pki.certificate_request(pki.generate_key(), member.server("ss2").uri),
        now,
        pki.CsrIdentityMismatch,
        "csr_identity_mismatch",
    )


def test_renewal_of_signing_with_a_csr_naming_another_member_is_csr_identity_mismatch(
    authority: pki.Authority, enrolled: Enrolled, now: dt.datetime
) -> None:
    refuse_renewal(
        authority,
        enrolled.authentication.certificate,
        pki.SIGNING,
        pki.certificate_request(pki.generate_key(), OTHER_MEMBER.uri),
        now,
        pki.CsrIdentityMismatch,
        "csr_identity_mismatch",
    )


def test_renewal_of_an_unknown_kind_is_csr_malformed(
    authority: pki.Authority, enrolled: Enrolled, server: SecurityServerId, now: dt.datetime
) -> None:
    refuse_renewal(
        authority,
        enrolled.authentication.certificate,
        "encryption",
        pki.certificate_request(pki.generate_key(), server.uri),
        now,
        pki.CsrMalformed,
        "csr_malformed",
    )


# --- revocation and the CRL ---------------------------------------------------------------------


def test_revoking_an_unknown_serial_is_a_ledger_error(
    authority: pki.Authority, enrolled: Enrolled, now: dt.datetime
) -> None:
    unknown = enrolled.authentication.serial + 1
    refuse(
        authority.ledger,
        pki.LedgerError,
        "ca_database_error",
        lambda: authority.revoke(unknown, "key_compromise", actor="ca-admin", now=now),
    )


def test_revoking_twice_is_a_ledger_error_and_keeps_the_first(
    authority: pki.Authority, enrolled: Enrolled, now: dt.datetime
) -> None:
    serial = enrolled.authentication.serial
    authority.revoke(serial, "key_compromise", actor="ca-admin", now=now)
    refuse(
        authority.ledger,
        pki.LedgerError,
        "ca_database_error",
        lambda: authority.revoke(serial, "superseded", actor="ca-admin", now=now + HOUR),
    )
    record = authority.ledger.certificate(serial)
    assert record is not None
    assert (record.revoked_at, record.reason) == (now, "key_compromise")


def test_revoking_with_an_unknown_reason_is_a_ledger_error(
    authority: pki.Authority, enrolled: Enrolled, now: dt.datetime
) -> None:
    serial = enrolled.authentication.serial
    refuse(
        authority.ledger,
        pki.LedgerError,
        "ca_database_error",
        lambda: authority.revoke(serial, "because", actor="ca-admin", now=now),
    )
    record = authority.ledger.certificate(serial)
    assert record is not None
    assert record.revoked_at is None


def test_revocation_is_journaled_with_the_actor(
    authority: pki.Authority, enrolled: Enrolled, server: SecurityServerId, now: dt.datetime
) -> None:
    authority.revoke(enrolled.authentication.serial, "superseded", actor="ca-admin", now=now)
    last = list(authority.ledger.journal())[-1]
    assert (last.action, last.actor, last.serial, last.identity, last.detail) == (
        "revoke",
        "ca-admin",
        enrolled.authentication.serial,
        str(server),
        {"reason": "superseded"},
    )


def test_crl_lists_revoked_serials_with_reasons(
    authority: pki.Authority, ca_folder: pki.CaFolder, enrolled: Enrolled, now: dt.datetime
) -> None:
    authority.revoke(enrolled.authentication.serial, "key_compromise", actor="ca-admin", now=now)
    authority.revoke(enrolled.signing.serial, "superseded", actor="ca-admin", now=now)
    crl = x509.load_der_x509_crl(authority.crl(now))
    issuing = ca_folder.generation(1).issuing
    assert crl.issuer == issuing.subject
    assert crl.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
    assert crl.last_update_utc == now
    assert crl.next_update_utc == now + authority.policy.crl_validity
    reasons = {
        entry.serial_number: entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        for entry in crl
    }
    assert reasons == {
        enrolled.authentication.serial: x509.ReasonFlags.key_compromise,
        enrolled.signing.serial: x509.ReasonFlags.superseded,
    }
    entry = crl.get_revoked_certificate_by_serial_number(enrolled.signing.serial)
    assert entry is not None
    assert entry.revocation_date_utc == now


def test_openssl_reads_and_verifies_the_crl(
    authority: pki.Authority,
    ca_folder: pki.CaFolder,
    enrolled: Enrolled,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    authority.revoke(enrolled.authentication.serial, "key_compromise", actor="ca-admin", now=now)
    path = tmp_path / "G1.crl"
    path.write_bytes(authority.crl(now))
    shown = openssl("crl", "-inform", "DER", "-in", path, "-noout", "-text")
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"Serial Number: 0*{enrolled.authentication.serial:X}\n", shown.stdout)
    assert "Key Compromise" in shown.stdout
    assert f"{enrolled.signing.serial:X}" not in shown.stdout
    issuing = write_pem(tmp_path / "issuing.pem", ca_folder.generation(1).issuing)
    verified = openssl(
        "crl", "-inform", "DER", "-in", path, "-noout", "-verify", "-CAfile", issuing
    )
    assert verified.returncode == 0, verified.stderr
    assert "verify OK" in verified.stdout + verified.stderr
    stranger = write_pem(tmp_path / "foreign.pem", foreign_ca(now).certificate)
    refused = openssl(
        "crl", "-inform", "DER", "-in", path, "-noout", "-verify", "-CAfile", stranger
    )
    assert "verify OK" not in refused.stdout + refused.stderr


def test_crl_is_cached_and_rebuilt_after_a_revocation(
    authority: pki.Authority, enrolled: Enrolled, now: dt.datetime
) -> None:
    first = authority.crl(now)
    assert authority.crl(now + dt.timedelta(minutes=1)) == first
    assert len(x509.load_der_x509_crl(first)) == 0
    authority.revoke(enrolled.authentication.serial, "key_compromise", actor="ca-admin", now=now)
    rebuilt = authority.crl(now + dt.timedelta(minutes=1))
    assert rebuilt != first
    crl = x509.load_der_x509_crl(rebuilt)
    assert [e.serial_number for e in crl] == [enrolled.authentication.serial]


def test_crl_is_rebuilt_halfway_through_its_validity(
    authority: pki.Authority, now: dt.datetime
) -> None:
    first = authority.crl(now)
    halfway = now + authority.policy.crl_validity / 2
    assert authority.crl(halfway - SECOND) == first
    fresh = x509.load_der_x509_crl(authority.crl(halfway))
    assert fresh.last_update_utc == halfway
    number = fresh.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    old = x509.load_der_x509_crl(first).extensions.get_extension_for_class(x509.CRLNumber)
    assert number > old.value.crl_number


# --- OCSP ---------------------------------------------------------------------------------------


def test_ocsp_answers_good_for_an_issued_certificate(
    authority: pki.Authority, ca_folder: pki.CaFolder, enrolled: Enrolled, now: dt.datetime
) -> None:
    issuing = ca_folder.generation(1).issuing
    answer = authority.ocsp(ocsp_request(enrolled.authentication.certificate, issuing), now)
    response = ocsp.load_der_ocsp_response(answer)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == enrolled.authentication.serial
    assert (response.issuer_name_hash, response.issuer_key_hash) == pki.issuer_hashes(issuing, SHA1)
    assert response.this_update_utc == now
    assert response.next_update_utc == now + authority.policy.ocsp_validity
    with pytest.raises(x509.ExtensionNotFound):
        response.extensions.get_extension_for_class(x509.OCSPNonce)


def test_ocsp_answers_good_to_a_sha256_request(
    authority: pki.Authority, ca_folder: pki.CaFolder, enrolled: Enrolled, now: dt.datetime
) -> None:
    issuing = ca_folder.generation(1).issuing
    asked = ocsp_request(enrolled.signing.certificate, issuing, algorithm=hashes.SHA256())
    response = ocsp.load_der_ocsp_response(authority.ocsp(asked, now))
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert isinstance(response.hash_algorithm, hashes.SHA256)
    assert response.serial_number == enrolled.signing.serial


def test_ocsp_answers_revoked_with_time_and_reason(
    authority: pki.Authority, ca_folder: pki.CaFolder, enrolled: Enrolled, now: dt.datetime
) -> None:
    issuing = ca_folder.generation(1).issuing
    asked = ocsp_request(enrolled.authentication.certificate, issuing)
    assert ocsp.load_der_ocsp_response(authority.ocsp(asked, now)).certificate_status is (
        ocsp.OCSPCertStatus.GOOD
    )
    revoked_at = now + SECOND
    authority.revoke(
        enrolled.authentication.serial, "key_compromise", actor="ca-admin", now=revoked_at
    )
    # Revocation changes the answer at once, though a good answer was cached a second ago.
    response = ocsp.load_der_ocsp_response(authority.ocsp(asked, now + 2 * SECOND))
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_reason is x509.ReasonFlags.key_compromise
    assert response.revocation_time_utc == revoked_at


def test_ocsp_answers_unknown_for_a_serial_never_issued(
    authority: pki.Authority, ca_folder: pki.CaFolder, enrolled: Enrolled, now: dt.datetime
) -> None:
    serial = enrolled.authentication.serial ^ 0xFFFF
    asked = ocsp_request_for_serial(ca_folder.generation(1).issuing, serial)
    response = ocsp.load_der_ocsp_response(authority.ocsp(asked, now))
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    assert response.serial_number == serial


def test_ocsp_answers_unknown_for_a_certificate_made_outside_the_ledger(
    authority: pki.Authority, ca_folder: pki.CaFolder, server: SecurityServerId, now: dt.datetime
) -> None:
    unrecorded = issuing_ca(ca_folder).issue_server_certificate(
        server, pki.generate_key().public_key(), now=now, lifetime=HOUR
    )
    asked = ocsp_request(unrecorded, ca_folder.generation(1).issuing)
    response = ocsp.load_der_ocsp_response(authority.ocsp(asked, now))
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


def test_ocsp_echoes_the_nonce(
    authority: pki.Authority, ca_folder: pki.CaFolder, enrolled: Enrolled, now: dt.datetime
) -> None:
    issuing = ca_folder.generation(1).issuing
    for nonce in (b"\x01" * 16, b"\x02" * 32):
        asked = ocsp_request(enrolled.authentication.certificate, issuing, nonce=nonce)
        response = ocsp.load_der_ocsp_response(authority.ocsp(asked, now))
        echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        assert echoed == nonce


def test_ocsp_response_is_signed_by_the_delegated_responder(
    authority: pki.Authority, ca_folder: pki.CaFolder, enrolled: Enrolled, now: dt.datetime
) -> None:
    generation = ca_folder.generation(1)
    asked = ocsp_request(enrolled.authentication.certificate, generation.issuing)
    response = ocsp.load_der_ocsp_response(authority.ocsp(asked, now))
    responder = generation.ocsp
    assert response.certificates == [responder]
    assert response.responder_name is None
    assert (
        response.responder_key_hash
        == x509.SubjectKeyIdentifier.from_public_key(responder.public_key()).digest
    )
    assert signed_by(response, responder)
    assert not signed_by(response, generation.issuing)
    responder.verify_directly_issued_by(generation.issuing)
    usage = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
    constraints = responder.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is False


def test_openssl_verifies_the_ocsp_response(
    authority: pki.Authority,
    ca_folder: pki.CaFolder,
    enrolled: Enrolled,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    generation = ca_folder.generation(1)
    answer = tmp_path / "response.der"
    answer.write_bytes(
        authority.ocsp(ocsp_request(enrolled.authentication.certificate, generation.issuing), now)
    )
    shown = openssl(
        "ocsp",
        "-respin",
        answer,
        "-issuer",
        write_pem(tmp_path / "issuing.pem", generation.issuing),
        "-cert",
        write_pem(tmp_path / "leaf.pem", enrolled.authentication.certificate),
        "-CAfile",
        write_pem(tmp_path / "root.pem", generation.root),
    )
    assert shown.returncode == 0, shown.stderr
    assert "Response verify OK" in shown.stderr
    assert f"{tmp_path / 'leaf.pem'}: good" in shown.stdout


@pytest.mark.parametrize("bad", [b"garbage, not an OCSP request", b""], ids=["garbage", "empty"])
def test_ocsp_malformed_request_gets_malformed_request(
    authority: pki.Authority, now: dt.datetime, bad: bytes
) -> None:
    response = ocsp.load_der_ocsp_response(authority.ocsp(bad, now))
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    with pytest.raises(pki.OcspRequestInvalid) as caught:
        authority.check_ocsp_request(bad)
    assert caught.value.code == "ocsp_request_malformed"


def test_ocsp_request_about_another_ca_gets_unauthorized(
    authority: pki.Authority, server: SecurityServerId, now: dt.datetime
) -> None:
    stranger = foreign_ca(now)
    leaf = stranger.issue_server_certificate(
        server, pki.generate_key().public_key(), now=now, lifetime=HOUR
    )
    asked = ocsp_request(leaf, stranger.certificate)
    response = ocsp.load_der_ocsp_response(authority.ocsp(asked, now))
    assert response.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    with pytest.raises(pki.OcspIssuerUnknown) as caught:
        authority.check_ocsp_request(asked)
    assert caught.value.code == "ocsp_issuer_unknown"


# --- StatusVerifier: stapled responses ----------------------------------------------------------


def staple(
    authority: pki.Authority, folder: pki.CaFolder, certificate: x509.Certificate, at: dt.datetime
) -> bytes:
    return authority.ocsp(ocsp_request(certificate, folder.generation(1).issuing), at)


def refuse_staple(
    verifier: pki.StatusVerifier,
    answer: bytes,
    now: dt.datetime,
    error: type[pki.PkiError],
    code: str,
    serial: int | None = None,
) -> None:
    with pytest.raises(error) as caught:
        verifier.check(answer, now=now, serial=serial)
    assert type(caught.value) is error
    assert caught.value.code == code


def test_status_verifier_accepts_a_good_staple(
    authority: pki.Authority,
    ca_folder: pki.CaFolder,
    enrolled: Enrolled,
    verifier: pki.StatusVerifier,
    now: dt.datetime,
) -> None:
    certificate = enrolled.authentication.certificate
    status = verifier.check(
        staple(authority, ca_folder, certificate, now), now=now, serial=certificate.serial_number
    )
    assert (status.serial, status.this_update, status.revoked, status.unknown) == (
        certificate.serial_number,
        now,
        False,
        False,
    )
    assert status.next_update is not None
    assert status.next_update > now
    assert status.signer_from <= now <= status.signer_until


def test_status_verifier_refuses_a_revoked_certificate(
    authority: pki.Authority,
    ca_folder: pki.CaFolder,
    enrolled: Enrolled,
    verifier: pki.StatusVerifier,
    now: dt.datetime,
) -> None:
    authority.revoke(enrolled.authentication.serial, "key_compromise", actor="ca-admin", now=now)
    answer = staple(authority, ca_folder, enrolled.authentication.certificate, now)
    refuse_staple(verifier, answer, now, pki.CertificateRevoked, "certificate_revoked")


def test_status_verifier_refuses_an_unknown_certificate(
    authority: pki.Authority,
    ca_folder: pki.CaFolder,
    server: SecurityServerId,
    verifier: pki.StatusVerifier,
    now: dt.datetime,
) -> None:
    unrecorded = issuing_ca(ca_folder).issue_server_certificate(
        server, pki.generate_key().public_key(), now=now, lifetime=HOUR
    )
    answer = staple(authority, ca_folder, unrecorded, now)
    refuse_staple(verifier, answer, now, pki.StatusUnknown, "ocsp_status_unknown")


def test_status_verifier_refuses_a_staple_older_than_the_maximum_age(
    authority: pki.Authority,
    ca_folder: pki.CaFolder,
    enrolled: Enrolled,
    verifier: pki.StatusVerifier,
    now: dt.datetime,
) -> None:
    answer = staple(authority, ca_folder, enrolled.authentication.certificate, now)
    verifier.check(answer, now=now + pki.DEFAULT_MAX_AGE)
    refuse_staple(
        verifier, answer, now + pki.DEFAULT_MAX_AGE + SECOND, pki.StatusStale, "ocsp_status_stale"
    )


def test_status_verifier_refuses_a_staple_from_the_future(
    authority: pki.Authority,
    ca_folder: pki.CaFolder,
    enrolled: Enrolled,
    verifier: pki.StatusVerifier,
    now: dt.datetime,
) -> None:
    certificate = enrolled.authentication.certificate
    # A few seconds of clock difference are tolerated, minutes are not.
    verifier.check(staple(authority, ca_folder, certificate, now + 10 * SECOND), now=now)
    answer = staple(authority, ca_folder, certificate, now + dt.timedelta(minutes=2))
    refuse_staple(verifier, answer, now, pki.StatusStale, "ocsp_status_stale")


def test_status_verifier_refuses_a_staple_past_its_next_update(
    authority: pki.Authority,
    ca_folder: pki.CaFolder,
    enrolled: Enrolled,
    verifier: pki.StatusVerifier,
    now: dt.datetime,
) -> None:
    # The responder promises newer information within a minute; five minutes later the answer
    # is out of date although younger than the verifier's maximum age (RFC 6960 4.2.2.1).
    brief = dataclasses.replace(
        authority, policy=pki.IssuancePolicy(ocsp_validity=dt.timedelta(minutes=1))
    )
    answer = staple(brief, ca_folder, enrolled.authentication.certificate, now)
    assert ocsp.load_der_ocsp_response(answer).next_update_utc == now + dt.timedelta(minutes=1)
    refuse_staple(
        verifier, answer, now + dt.timedelta(minutes=5), pki.StatusStale, "ocsp_status_stale"
    )


def test_status_verifier_refuses_a_staple_about_another_certificate(
    authority: pki.Authority,
    ca_folder: pki.CaFolder,
    enrolled: Enrolled,
    verifier: pki.StatusVerifier,
    now: dt.datetime,
) -> None:
    answer = staple(authority, ca_folder, enrolled.signing.certificate, now)
    refuse_staple(
        verifier,
        answer,
        now,
        pki.StatusInvalid,
        "ocsp_status_invalid",
        serial=enrolled.authentication.serial,
    )


def test_status_verifier_refuses_a_staple_signed_by_a_foreign_responder(
    ca_folder: pki.CaFolder, enrolled: Enrolled, verifier: pki.StatusVerifier, now: dt.datetime
) -> None:
    key = pki.generate_key()
    responder = foreign_ca(now).issue_ocsp_signer(key.public_key(), now=now, lifetime=HOUR)
    answer = staple_signed_by(
        enrolled.authentication.certificate, ca_folder.generation(1).issuing, responder, key, now
    )
    refuse_staple(verifier, answer, now, pki.StatusInvalid, "ocsp_status_invalid")


def test_status_verifier_refuses_a_staple_whose_signed_data_was_altered(
    authority: pki.Authority,
    ca_folder: pki.CaFolder,
    enrolled: Enrolled,
    verifier: pki.StatusVerifier,
    now: dt.datetime,
) -> None:
    # An old answer with its dates moved forward (a replay made to look fresh).
    answer = staple(authority, ca_folder, enrolled.authentication.certificate, now)
    later = now + dt.timedelta(minutes=20)
    stamp = "%Y%m%d%H%M%SZ"
    moved = answer.replace(now.strftime(stamp).encode(), later.strftime(stamp).encode())
    assert ocsp.load_der_ocsp_response(moved).this_update_utc == later
    refuse_staple(verifier, moved, later, pki.StatusInvalid, "ocsp_status_invalid")


def test_status_verifier_refuses_a_staple_a_server_signed_about_itself(
    ca_folder: pki.CaFolder, enrolled: Enrolled, verifier: pki.StatusVerifier, now: dt.datetime
) -> None:
    # Issued by the right CA, but not for OCSP signing.
    answer = staple_signed_by(
        enrolled.authentication.certificate,
        ca_folder.generation(1).issuing,
        enrolled.authentication.certificate,
        enrolled.authentication_key,
        now,
    )
    refuse_staple(verifier, answer, now, pki.StatusInvalid, "ocsp_status_invalid")


def test_status_verifier_refuses_a_staple_signed_by_an_expired_responder(
    authority: pki.Authority,
    ca_folder: pki.CaFolder,
    enrolled: Enrolled,
    verifier: pki.StatusVerifier,
    now: dt.datetime,
) -> None:
    # The responder certificate carries OCSPNoCheck and cannot be revoked: only its short
    # lifetime limits a leaked responder key, so relying parties must enforce it.
    key = pki.generate_key()
    short = issuing_ca(ca_folder).issue_ocsp_signer(
        key.public_key(), now=now, lifetime=dt.timedelta(minutes=10)
    )
    expired_responder = dataclasses.replace(authority, ocsp_key=key, ocsp_certificate=short)
    later = now + HOUR
    assert short.not_valid_after_utc < later
    answer = staple(expired_responder, ca_folder, enrolled.authentication.certificate, later)
    verifier.check(
        staple(authority, ca_folder, enrolled.authentication.certificate, later), now=later
    )
    refuse_staple(verifier, answer, later, pki.StatusInvalid, "ocsp_status_invalid")


def test_status_verifier_refuses_a_staple_about_a_certificate_of_another_ca(
    server: SecurityServerId, verifier: pki.StatusVerifier, now: dt.datetime
) -> None:
    stranger = foreign_ca(now)
    leaf = stranger.issue_server_certificate(
        server, pki.generate_key().public_key(), now=now, lifetime=HOUR
    )
    answer = staple_signed_by(leaf, stranger.certificate, stranger.certificate, stranger.key, now)
    refuse_staple(verifier, answer, now, pki.StatusInvalid, "ocsp_status_invalid")


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage, not an OCSP response",
        ocsp.OCSPResponseBuilder.build_unsuccessful(
            ocsp.OCSPResponseStatus.MALFORMED_REQUEST
        ).public_bytes(serialization.Encoding.DER),
        ocsp.OCSPResponseBuilder.build_unsuccessful(
            ocsp.OCSPResponseStatus.UNAUTHORIZED
        ).public_bytes(serialization.Encoding.DER),
    ],
    ids=["garbage", "malformed-request", "unauthorized"],
)
def test_status_verifier_refuses_an_unusable_staple(
    verifier: pki.StatusVerifier, now: dt.datetime, answer: bytes
) -> None:
    refuse_staple(verifier, answer, now, pki.StatusInvalid, "ocsp_status_invalid")


def test_status_verifier_refuses_a_missing_staple(
    verifier: pki.StatusVerifier, now: dt.datetime
) -> None:
    refuse_staple(verifier, b"", now, pki.StatusMissing, "ocsp_status_missing")


# --- the journal is append-only -----------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE journal SET actor = 'someone else'",
        "UPDATE journal SET detail = '{}' WHERE action = 'enroll'",
        "DELETE FROM journal",
        "DELETE FROM journal WHERE action = 'enroll'",
    ],
    ids=["update-all", "update-enroll", "delete-all", "delete-enroll"],
)
def test_journal_refuses_changes_through_sql(
    authority: pki.Authority,
    ca_folder: pki.CaFolder,
    enrolled: Enrolled,
    statement: str,
) -> None:
    before = list(authority.ledger.journal())
    with (
        contextlib.closing(
            sqlite3.connect(ca_folder.path / "ca.sqlite", isolation_level=None)
        ) as db,
        pytest.raises(sqlite3.IntegrityError, match="append-only"),
    ):
        db.execute(statement)
    assert list(authority.ledger.journal()) == before


def test_journal_refuses_an_overwrite_by_insert_or_replace(
    authority: pki.Authority, ca_folder: pki.CaFolder, enrolled: Enrolled
) -> None:
    before = list(authority.ledger.journal())
    with (
        contextlib.closing(
            sqlite3.connect(ca_folder.path / "ca.sqlite", isolation_level=None)
        ) as db,
        pytest.raises(sqlite3.IntegrityError, match="append-only"),
    ):
        db.execute(
            "INSERT OR REPLACE INTO journal (sequence, at, actor, action, detail)"
            " VALUES (?, ?, 'someone else', 'nothing happened', '{}')",
            (before[0].sequence, before[0].at.isoformat()),
        )
    assert list(authority.ledger.journal()) == before


# --- RevokedSerials: the CRL view of a relying party --------------------------------------------


def test_revoked_serials_load_the_crls(
    authority: pki.Authority, ca_folder: pki.CaFolder, enrolled: Enrolled, now: dt.datetime
) -> None:
    issuing = ca_folder.generation(1).issuing
    revoked = pki.RevokedSerials()
    revoked.load([authority.crl(now)], [issuing], now=now)
    assert len(revoked) == 0
    assert enrolled.authentication.serial not in revoked
    authority.revoke(enrolled.authentication.serial, "key_compromise", actor="ca-admin", now=now)
    revoked.load([authority.crl(now)], [issuing], now=now)
    assert len(revoked) == 1
    assert enrolled.authentication.serial in revoked
    assert enrolled.signing.serial not in revoked
    assert revoked.next_update == now + authority.policy.crl_validity


def test_revoked_serials_refuse_an_expired_crl(
    authority: pki.Authority, ca_folder: pki.CaFolder, enrolled: Enrolled, now: dt.datetime
) -> None:
    authority.revoke(enrolled.authentication.serial, "key_compromise", actor="ca-admin", now=now)
    revoked = pki.RevokedSerials()
    crl = authority.crl(now)
    issuing = ca_folder.generation(1).issuing
    revoked.load([crl], [issuing], now=now)
    later = now + authority.policy.crl_validity + SECOND
    with pytest.raises(pki.StatusInvalid) as caught:
        revoked.load([crl], [issuing], now=later)
    assert caught.value.code == "ocsp_status_invalid"
    assert enrolled.authentication.serial in revoked  # the previous view is kept


def test_revoked_serials_refuse_a_crl_of_an_unknown_ca(
    ca_folder: pki.CaFolder, now: dt.datetime
) -> None:
    stranger = foreign_ca(now)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(stranger.certificate.subject)
        .last_update(now)
        .next_update(now + HOUR)
        .sign(stranger.key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    with pytest.raises(pki.StatusInvalid) as caught:
        pki.RevokedSerials().load([crl], [ca_folder.generation(1).issuing], now=now)
    assert caught.value.code == "ocsp_status_invalid"


def test_revoked_serials_refuse_a_crl_in_the_issuers_name_signed_by_another_key(
    ca_folder: pki.CaFolder, now: dt.datetime
) -> None:
    issuing = ca_folder.generation(1).issuing
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuing.subject)
        .last_update(now)
        .next_update(now + HOUR)
        .sign(pki.generate_key(), hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    with pytest.raises(pki.StatusInvalid) as caught:
        pki.RevokedSerials().load([crl], [issuing], now=now)
    assert caught.value.code == "ocsp_status_invalid"


def test_revoked_serials_refuse_an_unreadable_crl(
    ca_folder: pki.CaFolder, now: dt.datetime
) -> None:
    with pytest.raises(pki.StatusInvalid) as caught:
        pki.RevokedSerials().load([b"not a CRL"], [ca_folder.generation(1).issuing], now=now)
    assert caught.value.code == "ocsp_status_invalid"


# --- accepted_roots: trusting a new root --------------------------------------------------------


def root_of(generation: int, now: dt.datetime) -> pki.CertificateAuthority:
    return pki.CertificateAuthority.create(
        "DEMO", now=now, lifetime=dt.timedelta(days=365), generation=generation
    )


def update(
    roots: list[x509.Certificate], crosses: list[x509.Certificate] | None = None
) -> pki.TrustUpdate:
    return pki.TrustUpdate(
        roots=tuple(roots),
        cross_certificates=tuple(crosses or ()),
        crl_url="",
        ocsp_url="",
        issuing=(),
        renewal_address="",
    )


def test_accepted_roots_take_a_new_root_with_a_cross_certificate(now: dt.datetime) -> None:
    old, new = root_of(1, now), root_of(2, now)
    cross = old.cross_certify(new.certificate, now=now, lifetime=dt.timedelta(days=30))
    accepted = pki.accepted_roots(
        [old.certificate], update([old.certificate, new.certificate], [cross]), now
    )
    assert accepted == [old.certificate, new.certificate]


def test_accepted_roots_refuse_a_new_root_without_a_cross_certificate(now: dt.datetime) -> None:
    old, new = root_of(1, now), root_of(2, now)
    accepted = pki.accepted_roots(
        [old.certificate], update([old.certificate, new.certificate]), now
    )
    assert accepted == [old.certificate]


def test_accepted_roots_refuse_a_new_root_with_an_expired_cross_certificate(
    now: dt.datetime,
) -> None:
    old, new = root_of(1, now), root_of(2, now)
    cross = old.cross_certify(new.certificate, now=now, lifetime=HOUR)
    offered = update([old.certificate, new.certificate], [cross])
    assert (
        pki.accepted_roots([old.certificate], offered, now + HOUR - SECOND)[-1] == new.certificate
    )
    assert pki.accepted_roots([old.certificate], offered, now + HOUR + SECOND) == [old.certificate]


def test_accepted_roots_refuse_a_cross_certificate_from_an_untrusted_root(
    now: dt.datetime,
) -> None:
    old, new = root_of(1, now), root_of(2, now)
    # Same name as the trusted root, another key: an impostor's cross-certificate.
    impostor = pki.CertificateAuthority.create("DEMO", now=now, lifetime=dt.timedelta(days=365))
    assert impostor.certificate.subject == old.certificate.subject
    cross = impostor.cross_certify(new.certificate, now=now, lifetime=dt.timedelta(days=30))
    accepted = pki.accepted_roots(
        [old.certificate], update([old.certificate, new.certificate], [cross]), now
    )
    assert accepted == [old.certificate]


def test_accepted_roots_refuse_a_cross_certificate_for_another_key(now: dt.datetime) -> None:
    old, new = root_of(1, now), root_of(2, now)
    # A root with the certified root's name, but not its key.
    lookalike = root_of(2, now)
    cross = old.cross_certify(new.certificate, now=now, lifetime=dt.timedelta(days=30))
    accepted = pki.accepted_roots(
        [old.certificate], update([old.certificate, lookalike.certificate], [cross]), now
    )
    assert accepted == [old.certificate]


def test_accepted_roots_drop_a_root_no_longer_listed(now: dt.datetime) -> None:
    old, new = root_of(1, now), root_of(2, now)
    accepted = pki.accepted_roots(
        [old.certificate, new.certificate], update([new.certificate]), now
    )
    assert accepted == [new.certificate]


@pytest.mark.parametrize("offered", ["nothing", "a-stranger"])
def test_accepted_roots_keep_the_current_ones_when_no_trusted_root_is_listed(
    now: dt.datetime, offered: str
) -> None:
    old = root_of(1, now)
    roots = [] if offered == "nothing" else [foreign_ca(now).certificate]
    assert pki.accepted_roots([old.certificate], update(roots), now) == [old.certificate]


# --- root rollover on the CA folder -------------------------------------------------------------


def test_rollover_begin_introduces_a_cross_certified_root(
    ca_folder: pki.CaFolder, now: dt.datetime, tmp_path: Path
) -> None:
    assert ca_folder.rollover_begin(now=now, actor="ca-admin") == 2
    assert (ca_folder.trusted, ca_folder.active) == ([1, 2], 1)
    old, new = ca_folder.generation(1), ca_folder.generation(2)
    assert new.cross is not None
    assert (new.cross.subject, new.cross.public_key()) == (new.root.subject, new.root.public_key())
    new.cross.verify_directly_issued_by(old.root)
    shown = openssl(
        "verify",
        "-CAfile",
        write_pem(tmp_path / "g1-root.pem", old.root),
        write_pem(tmp_path / "cross.pem", new.cross),
    )
    assert shown.returncode == 0, shown.stderr
    bundle = ca_folder.trust_bundle()
    assert bundle.roots == (old.root, new.root)
    assert bundle.cross_certificates == (new.cross,)
    assert bundle.issuing == ((1, old.issuing), (2, new.issuing))
    assert pki.accepted_roots(
        [old.root],
        pki.TrustUpdate(
            roots=bundle.roots,
            cross_certificates=bundle.cross_certificates,
            crl_url=bundle.crl_url,
            ocsp_url=bundle.ocsp_url,
            issuing=bundle.issuing,
            renewal_address=bundle.renewal_address,
        ),
        now,
    ) == [old.root, new.root]


def test_rollover_switch_issues_from_the_new_generation(
    ca_folder: pki.CaFolder,
    server: SecurityServerId,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    ca_folder.rollover_begin(now=now, actor="ca-admin")
    assert ca_folder.rollover_switch(now=now, actor="ca-admin") == 2
    assert (ca_folder.trusted, ca_folder.active) == ([1, 2], 2)
    old, new = ca_folder.generation(1), ca_folder.generation(2)
    assert new.cross is not None
    with contextlib.closing(ca_folder.ledger()) as ledger:
        enrolled = enroll(ca_folder.authority(2, ledger), server, now)
    assert enrolled.authentication.chain == (new.issuing,)
    leaf = write_pem(tmp_path / "leaf.pem", enrolled.authentication.certificate)
    g2_root = write_pem(tmp_path / "g2-root.pem", new.root)
    g1_root = write_pem(tmp_path / "g1-root.pem", old.root)
    issuing = write_pem(tmp_path / "g2-issuing.pem", new.issuing)
    shown = openssl("verify", "-CAfile", g2_root, "-untrusted", issuing, leaf)
    assert shown.returncode == 0, shown.stderr
    assert openssl("verify", "-CAfile", g1_root, "-untrusted", issuing, leaf).returncode != 0


def test_rollover_retire_stops_trusting_the_old_root(
    ca_folder: pki.CaFolder, now: dt.datetime
) -> None:
    ca_folder.rollover_begin(now=now, actor="ca-admin")
    ca_folder.rollover_switch(now=now, actor="ca-admin")
    assert ca_folder.rollover_retire(now=now, actor="ca-admin") == [1]
    assert (ca_folder.trusted, ca_folder.active) == ([2], 2)
    new = ca_folder.generation(2)
    bundle = ca_folder.trust_bundle()
    assert bundle.roots == (new.root,)
    assert bundle.issuing == ((2, new.issuing),)
    with contextlib.closing(ca_folder.ledger()) as ledger:
        steps = [(e.action, e.actor, e.detail) for e in ledger.journal()][1:]
    assert steps == [
        ("rollover_begin", "ca-admin", {"generation": 2}),
        ("rollover_switch", "ca-admin", {"generation": 2}),
        ("rollover_retire", "ca-admin", {"generations": [1]}),
    ]


def _refuse_step(folder: pki.CaFolder, step: str, now: dt.datetime) -> None:
    state = (folder.trusted, folder.active)
    with pytest.raises(pki.LedgerError) as caught:
        getattr(folder, f"rollover_{step}")(now=now, actor="ca-admin")
    assert type(caught.value) is pki.LedgerError
    assert caught.value.code == "ca_database_error"
    assert (folder.trusted, folder.active) == state


def test_rollover_switch_before_begin_is_refused(ca_folder: pki.CaFolder, now: dt.datetime) -> None:
    _refuse_step(ca_folder, "switch", now)


def test_rollover_retire_before_any_rollover_is_refused(
    ca_folder: pki.CaFolder, now: dt.datetime
) -> None:
    _refuse_step(ca_folder, "retire", now)


def test_rollover_retire_before_switch_is_refused(
    ca_folder: pki.CaFolder, now: dt.datetime
) -> None:
    ca_folder.rollover_begin(now=now, actor="ca-admin")
    _refuse_step(ca_folder, "retire", now)


def test_rollover_begin_twice_is_refused(ca_folder: pki.CaFolder, now: dt.datetime) -> None:
    ca_folder.rollover_begin(now=now, actor="ca-admin")
    _refuse_step(ca_folder, "begin", now)
    assert not (ca_folder.path / "G3").exists()


def test_rollover_switch_twice_is_refused(ca_folder: pki.CaFolder, now: dt.datetime) -> None:
    ca_folder.rollover_begin(now=now, actor="ca-admin")
    ca_folder.rollover_switch(now=now, actor="ca-admin")
    _refuse_step(ca_folder, "switch", now)
