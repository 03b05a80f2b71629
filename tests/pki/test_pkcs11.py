"""CA keys in a PKCS#11 token: SoftHSM2 for real, a fresh token store per test, OpenSSL to check."""

from __future__ import annotations

import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

import pki
from pki._pkcs11 import Pkcs11Key, Pkcs11Token, TokenKeyUnavailable
from proto import SecurityServerId
from tests.pki.conftest import CA_LIFETIME, LEAF_LIFETIME
from tests.pki.softhsm import SOFTHSM_MODULE, SoftHsmStore, softhsm_token

OPENSSL = "/usr/bin/openssl"
TOKEN = "ca"
PIN = "1234"
SO_PIN = "5678"
KEY = "federation-root"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsmStore:
    """A token ``ca`` in a store of this test's own; SoftHSM2 reads the variable on initialise."""
    created = softhsm_token(tmp_path / "softhsm", TOKEN, PIN, SO_PIN)
    for name, value in created.environment.items():
        monkeypatch.setenv(name, value)
    return created


@pytest.fixture
def token(store: SoftHsmStore) -> Iterator[Pkcs11Token]:
    # Closing the last token finalises the module, so the next test's store is read afresh.
    with Pkcs11Token(SOFTHSM_MODULE, store.label, store.pin) as opened:
        yield opened


@pytest.fixture
def key(token: Pkcs11Token) -> Pkcs11Key:
    return Pkcs11Key.generate(token, KEY)


def self_signed_root(key: ec.EllipticCurvePrivateKey, now: dt.datetime) -> x509.Certificate:
    """A root certificate like ``CertificateAuthority.create`` makes, signed by ``key``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Pintu federation root CA (DEMO)")])
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPENSSL, *map(str, args)], capture_output=True, text=True, check=False, timeout=30
    )


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


@pytest.fixture
def ca(key: Pkcs11Key, now: dt.datetime) -> pki.CertificateAuthority:
    return pki.CertificateAuthority(key, self_signed_root(key, now))


def test_root_in_token_issues_a_server_certificate_openssl_verifies(
    ca: pki.CertificateAuthority,
    server: SecurityServerId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    leaf = ca.issue_server_certificate(
        server, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )

    root = ca.certificate
    root.verify_directly_issued_by(root)  # each raises on a bad signature
    leaf.verify_directly_issued_by(root)
    result = openssl(
        "verify",
        "-x509_strict",
        "-purpose",
        "sslserver",
        "-CAfile",
        write(tmp_path, "root.pem", pki.certificate_pem(root)),
        write(tmp_path, "leaf.pem", pki.certificate_pem(leaf)),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": OK")


def test_crl_signed_in_token_verifies(
    ca: pki.CertificateAuthority,
    server: SecurityServerId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    leaf = ca.issue_server_certificate(
        server, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    revoked = (
        x509.RevokedCertificateBuilder()
        .serial_number(leaf.serial_number)
        .revocation_date(now)
        .build()
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=1))
        .add_revoked_certificate(revoked)
        .add_extension(x509.CRLNumber(1), critical=False)
        .sign(ca.key, hashes.SHA256())
    )

    assert crl.is_signature_valid(ca.key.public_key())
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
    result = openssl(
        "crl",
        "-noout",
        "-verify",
        "-CAfile",
        write(tmp_path, "root.pem", pki.certificate_pem(ca.certificate)),
        "-in",
        write(tmp_path, "crl.pem", crl.public_bytes(serialization.Encoding.PEM)),
    )
    assert result.returncode == 0, result.stderr
    assert "verify OK" in result.stdout + result.stderr


def test_ocsp_response_signed_in_token_verifies(
    ca: pki.CertificateAuthority,
    server: SecurityServerId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    root = ca.certificate
    leaf = ca.issue_server_certificate(
        server, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=leaf,
            issuer=root,
            algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + dt.timedelta(hours=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, root)
        .sign(ca.key, hashes.SHA256())
    )

    parsed = ocsp.load_der_ocsp_response(response.public_bytes(serialization.Encoding.DER))
    public = root.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert parsed.signature_hash_algorithm is not None
    public.verify(  # raises InvalidSignature on a bad signature
        parsed.signature, parsed.tbs_response_bytes, ec.ECDSA(parsed.signature_hash_algorithm)
    )
    result = openssl(
        "ocsp",
        "-respin",
        write(tmp_path, "response.der", parsed.public_bytes(serialization.Encoding.DER)),
        "-CAfile",
        write(tmp_path, "root.pem", pki.certificate_pem(root)),
        "-issuer",
        tmp_path / "root.pem",
        "-sha256",  # the certificate ID's hash, as in the response (OpenSSL's default is SHA-1)
        "-cert",
        write(tmp_path, "leaf.pem", pki.certificate_pem(leaf)),
    )
    assert result.returncode == 0, result.stderr
    assert "Response verify OK" in result.stderr
    assert ": good" in result.stdout


def test_private_key_never_leaves_the_token(token: Pkcs11Token, key: Pkcs11Key) -> None:
    # Look at the objects through a session of our own: the process is logged in to the token.
    library = pkcs11.lib(str(SOFTHSM_MODULE))
    with library.get_token(token_label=token.label).open() as session:
        private = session.get_key(pkcs11.ObjectClass.PRIVATE_KEY, pkcs11.KeyType.EC, KEY)
        attributes = private.get_attributes(
            [
                pkcs11.Attribute.TOKEN,
                pkcs11.Attribute.PRIVATE,
                pkcs11.Attribute.SENSITIVE,
                pkcs11.Attribute.ALWAYS_SENSITIVE,
                pkcs11.Attribute.EXTRACTABLE,
                pkcs11.Attribute.NEVER_EXTRACTABLE,
                pkcs11.Attribute.LOCAL,
                pkcs11.Attribute.SIGN,
                pkcs11.Attribute.DERIVE,
                pkcs11.Attribute.DECRYPT,
                pkcs11.Attribute.UNWRAP,
            ]
        )
        with pytest.raises(pkcs11.AttributeSensitive):
            private[pkcs11.Attribute.VALUE]
    assert attributes == {
        pkcs11.Attribute.TOKEN: True,
        pkcs11.Attribute.PRIVATE: True,
        pkcs11.Attribute.SENSITIVE: True,
        pkcs11.Attribute.ALWAYS_SENSITIVE: True,
        pkcs11.Attribute.EXTRACTABLE: False,
        pkcs11.Attribute.NEVER_EXTRACTABLE: True,
        pkcs11.Attribute.LOCAL: True,
        pkcs11.Attribute.SIGN: True,
        pkcs11.Attribute.DERIVE: False,
        pkcs11.Attribute.DECRYPT: False,
        pkcs11.Attribute.UNWRAP: False,
    }
    with pytest.raises(TokenKeyUnavailable, match="serialising the private key") as error:
        pki.key_pem(key)
    assert error.value.code == "token_key_unavailable"
    assert isinstance(error.value, pki.KeyMaterialError)
    with pytest.raises(TokenKeyUnavailable, match="private numbers"):
        key.private_numbers()
    with pytest.raises(TokenKeyUnavailable, match="key agreement"):
        key.exchange(ec.ECDH(), pki.generate_key().public_key())


def test_key_is_found_again_in_a_new_session(store: SoftHsmStore) -> None:
    with Pkcs11Token(SOFTHSM_MODULE, TOKEN, PIN) as first:
        public = Pkcs11Key.generate(first, KEY).public_key()

    with Pkcs11Token(SOFTHSM_MODULE, TOKEN, PIN) as second:
        found = Pkcs11Key.find(second, KEY)
        signature = found.sign(b"consent record", ec.ECDSA(hashes.SHA256()))

    assert found.public_key() == public
    assert found.curve.name == "secp256r1"
    assert found.key_size == 256
    public.verify(signature, b"consent record", ec.ECDSA(hashes.SHA256()))


def test_closing_the_last_token_lets_the_module_read_a_new_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = softhsm_token(tmp_path / "one", "store-one", PIN, SO_PIN)
    two = softhsm_token(tmp_path / "two", "store-two", PIN, SO_PIN)
    monkeypatch.setenv("SOFTHSM2_CONF", str(one.conf))
    with Pkcs11Token(SOFTHSM_MODULE, "store-one", PIN):
        pass

    monkeypatch.setenv("SOFTHSM2_CONF", str(two.conf))
    with Pkcs11Token(SOFTHSM_MODULE, "store-two", PIN) as opened:
        assert opened.label == "store-two"
    assert opened.closed
    with pytest.raises(TokenKeyUnavailable, match="no token labelled 'store-one'"):
        Pkcs11Token(SOFTHSM_MODULE, "store-one", PIN)


def test_signing_after_close_is_refused(token: Pkcs11Token, key: Pkcs11Key) -> None:
    token.close()

    with pytest.raises(TokenKeyUnavailable, match="token 'ca' is closed"):
        key.sign(b"data", ec.ECDSA(hashes.SHA256()))


# One named test per failure mode.


def test_wrong_pin_is_refused(store: SoftHsmStore) -> None:
    with pytest.raises(
        TokenKeyUnavailable, match=r"token 'ca' .*: the token rejected the PIN"
    ) as e:
        Pkcs11Token(SOFTHSM_MODULE, TOKEN, "0000")
    assert e.value.code == "token_key_unavailable"
    assert not isinstance(e.value.__cause__, TokenKeyUnavailable)
    # The failed login leaves nothing behind: the right PIN works next.
    with Pkcs11Token(SOFTHSM_MODULE, TOKEN, PIN):
        pass


def test_unknown_token_label_is_refused(store: SoftHsmStore) -> None:
    with pytest.raises(
        TokenKeyUnavailable, match=r"has no token labelled 'other' \(its tokens: 'ca'\)"
    ) as e:
        Pkcs11Token(SOFTHSM_MODULE, "other", PIN)
    assert e.value.code == "token_key_unavailable"


def test_unknown_key_label_is_refused(token: Pkcs11Token) -> None:
    with pytest.raises(TokenKeyUnavailable, match="key 'missing' in token 'ca': no such") as e:
        Pkcs11Key.find(token, "missing")
    assert e.value.code == "token_key_unavailable"


def test_missing_module_is_refused(store: SoftHsmStore, tmp_path: Path) -> None:
    missing = tmp_path / "libnothing.so"
    with pytest.raises(TokenKeyUnavailable, match=f"PKCS#11 module {missing}: no such file") as e:
        Pkcs11Token(missing, TOKEN, PIN)
    assert e.value.code == "token_key_unavailable"


def test_a_file_that_is_no_module_is_refused(store: SoftHsmStore, tmp_path: Path) -> None:
    bogus = write(tmp_path, "libbogus.so", b"not an ELF file")
    with pytest.raises(TokenKeyUnavailable, match=f"PKCS#11 module {bogus} cannot be loaded") as e:
        Pkcs11Token(bogus, TOKEN, PIN)
    assert e.value.code == "token_key_unavailable"


def test_generate_with_an_existing_label_is_refused(token: Pkcs11Token, key: Pkcs11Key) -> None:
    with pytest.raises(
        TokenKeyUnavailable, match=r"key 'federation-root' .*: the label is taken"
    ) as e:
        Pkcs11Key.generate(token, key.label)
    assert e.value.code == "token_key_unavailable"
    assert Pkcs11Key.find(token, key.label).public_key() == key.public_key()


def test_deterministic_signing_is_refused(key: Pkcs11Key) -> None:
    with pytest.raises(TokenKeyUnavailable, match="deterministically") as e:
        key.sign(b"data", ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    assert e.value.code == "token_key_unavailable"
