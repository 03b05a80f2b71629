"""The federation CA and its four certificate profiles, checked with cryptography and OpenSSL."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

import pki
from proto import MemberId, SecurityServerId, SubsystemId
from tests.pki.conftest import CA_LIFETIME, LEAF_LIFETIME

OPENSSL = "/usr/bin/openssl"
BACKDATE = dt.timedelta(minutes=5)
FIXED_NOW = dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
LISTENER_NAMES = ["localhost", "127.0.0.1", "::1"]
PROFILES = ["server", "signing", "client", "listener"]
profiles = pytest.mark.parametrize("profile", PROFILES)


def issue(
    ca: pki.CertificateAuthority,
    profile: str,
    member: MemberId,
    key: ec.EllipticCurvePrivateKey,
    *,
    now: dt.datetime,
    lifetime: dt.timedelta = LEAF_LIFETIME,
) -> x509.Certificate:
    """Issue ``profile`` for ``member``, its server ``ss1`` or its subsystem ``civilregistry``."""
    public = key.public_key()
    if profile == "server":
        return ca.issue_server_certificate(member.server("ss1"), public, now=now, lifetime=lifetime)
    if profile == "signing":
        return ca.issue_signing_certificate(member, public, now=now, lifetime=lifetime)
    if profile == "client":
        return ca.issue_client_certificate(
            member.subsystem("civilregistry"), public, now=now, lifetime=lifetime
        )
    assert profile == "listener"
    return ca.issue_listener_certificate(
        member.server("ss1"), LISTENER_NAMES, public, now=now, lifetime=lifetime
    )


def write_pem(directory: Path, name: str, *certificates: x509.Certificate) -> Path:
    path = directory / name
    path.write_bytes(pki.certificate_pem(*certificates))
    return path


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPENSSL, *map(str, args)], capture_output=True, text=True, check=False, timeout=30
    )


def verify(
    directory: Path, root: x509.Certificate, leaf: x509.Certificate, *options: str
) -> subprocess.CompletedProcess[str]:
    """``openssl verify`` of ``leaf`` against ``root`` as the only trust anchor."""
    return openssl(
        "verify",
        *options,
        "-CAfile",
        write_pem(directory, "root.pem", root),
        write_pem(directory, "leaf.pem", leaf),
    )


def extensions(directory: Path, certificate: x509.Certificate) -> dict[str, str]:
    """What ``openssl x509 -ext`` prints, as ``{"Key Usage (critical)": "Digital Signature"}``."""
    result = openssl(
        "x509",
        "-noout",
        "-ext",
        "subjectAltName,keyUsage,extendedKeyUsage,basicConstraints",
        "-in",
        write_pem(directory, "cert.pem", certificate),
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, str] = {}
    header = ""
    for line in result.stdout.splitlines():
        if not line.startswith(" "):
            name, _, flag = line.removeprefix("X509v3 ").partition(":")
            header = name + (" (critical)" if flag.strip() == "critical" else "")
            found[header] = ""
        else:
            found[header] = (found[header] + " " + line.strip()).strip()
    return found


def uris(certificate: x509.Certificate) -> list[str]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """Files get only the mode the code asks for: a umask cannot hide a lax mode."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


# --- the CA certificate -------------------------------------------------------------------------


def test_ca_certificate_is_a_root_for_certificate_signing(
    ca: pki.CertificateAuthority, tmp_path: Path
) -> None:
    shown = extensions(tmp_path, ca.certificate)
    # Roots constrain no path length: a new root cross-certified by the old one adds a level.
    assert shown["Basic Constraints (critical)"] == "CA:TRUE"
    assert shown["Key Usage (critical)"] == "Certificate Sign, CRL Sign"
    assert ca.certificate.subject == ca.certificate.issuer
    assert "DEMO" in ca.certificate.subject.rfc4514_string()
    assert verify(tmp_path, ca.certificate, ca.certificate).returncode == 0


def test_ca_validity_window_uses_the_given_now() -> None:
    ca = pki.CertificateAuthority.create("DEMO", now=FIXED_NOW, lifetime=CA_LIFETIME)
    assert ca.certificate.not_valid_before_utc == FIXED_NOW - BACKDATE
    assert ca.certificate.not_valid_after_utc == FIXED_NOW + CA_LIFETIME


def test_each_ca_has_its_own_key() -> None:
    first = pki.CertificateAuthority.create("DEMO", now=FIXED_NOW, lifetime=CA_LIFETIME)
    second = pki.CertificateAuthority.create("DEMO", now=FIXED_NOW, lifetime=CA_LIFETIME)
    assert first.certificate.public_key() != second.certificate.public_key()
    assert first.certificate.serial_number != second.certificate.serial_number


# --- every profile ------------------------------------------------------------------------------


@profiles
def test_openssl_verifies_the_leaf_against_the_root(
    profile: str,
    ca: pki.CertificateAuthority,
    member: MemberId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    leaf = issue(ca, profile, member, leaf_key, now=now)
    result = verify(tmp_path, ca.certificate, leaf)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


@profiles
def test_leaf_is_issued_by_the_ca(
    profile: str,
    ca: pki.CertificateAuthority,
    member: MemberId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
) -> None:
    leaf = issue(ca, profile, member, leaf_key, now=now)
    assert leaf.issuer == ca.certificate.subject
    assert leaf.public_key() == leaf_key.public_key()
    leaf.verify_directly_issued_by(ca.certificate)
    authority = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    subject = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert authority.key_identifier == subject.key_identifier


@profiles
def test_leaf_carries_exactly_its_identity_uri(
    profile: str,
    ca: pki.CertificateAuthority,
    member: MemberId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
) -> None:
    expected = {
        "server": member.server("ss1").uri,
        "signing": member.uri,
        "client": member.subsystem("civilregistry").uri,
        "listener": member.server("ss1").uri,
    }[profile]
    assert uris(issue(ca, profile, member, leaf_key, now=now)) == [expected]


@profiles
def test_leaf_validity_window_uses_the_given_now(
    profile: str, member: MemberId, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    ca = pki.CertificateAuthority.create("DEMO", now=FIXED_NOW, lifetime=CA_LIFETIME)
    issued_at = FIXED_NOW + dt.timedelta(days=3, hours=4)
    leaf = issue(ca, profile, member, leaf_key, now=issued_at)
    assert leaf.not_valid_before_utc == issued_at - BACKDATE
    assert leaf.not_valid_after_utc == issued_at + LEAF_LIFETIME


@profiles
def test_leaf_validity_never_ends_after_the_cas(
    profile: str,
    ca: pki.CertificateAuthority,
    member: MemberId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
) -> None:
    leaf = issue(ca, profile, member, leaf_key, now=now, lifetime=CA_LIFETIME * 3)
    assert leaf.not_valid_after_utc == ca.certificate.not_valid_after_utc
    assert leaf.not_valid_before_utc >= ca.certificate.not_valid_before_utc


@profiles
def test_leaf_validity_never_starts_before_the_cas(
    profile: str, member: MemberId, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    # Issuing at a time before the CA's own validity must either be refused or stay inside the
    # CA's window: a leaf must not claim validity from before its issuer existed.
    ca = pki.CertificateAuthority.create("DEMO", now=FIXED_NOW, lifetime=CA_LIFETIME)
    try:
        leaf = issue(ca, profile, member, leaf_key, now=FIXED_NOW - dt.timedelta(days=1))
    except pki.PkiError:
        return
    assert leaf.not_valid_before_utc >= ca.certificate.not_valid_before_utc


@profiles
def test_issuing_after_the_ca_expired_is_refused_with_a_pki_error(
    profile: str, member: MemberId, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    ca = pki.CertificateAuthority.create("DEMO", now=FIXED_NOW, lifetime=CA_LIFETIME)
    after = FIXED_NOW + CA_LIFETIME + dt.timedelta(days=1)
    with pytest.raises(pki.PkiError):
        issue(ca, profile, member, leaf_key, now=after)


@profiles
def test_each_leaf_gets_a_fresh_serial_number(
    profile: str,
    ca: pki.CertificateAuthority,
    member: MemberId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
) -> None:
    first = issue(ca, profile, member, leaf_key, now=now)
    second = issue(ca, profile, member, leaf_key, now=now)
    assert first.serial_number != second.serial_number


@profiles
def test_certificate_from_another_ca_fails_openssl_verify(
    profile: str,
    ca: pki.CertificateAuthority,
    member: MemberId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    other = pki.CertificateAuthority.create("DEMO", now=now, lifetime=CA_LIFETIME)
    leaf = issue(other, profile, member, leaf_key, now=now)
    result = verify(tmp_path, ca.certificate, leaf)
    assert result.returncode != 0
    assert "unable to get local issuer certificate" in result.stdout + result.stderr


@profiles
def test_expired_leaf_fails_openssl_verify(
    profile: str,
    member: MemberId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    # A CA from a month ago, still valid, issued a one-day leaf ten days ago.
    ca = pki.CertificateAuthority.create(
        "DEMO", now=now - dt.timedelta(days=30), lifetime=CA_LIFETIME
    )
    leaf = issue(
        ca, profile, member, leaf_key, now=now - dt.timedelta(days=10), lifetime=dt.timedelta(1)
    )
    assert verify(tmp_path, ca.certificate, ca.certificate).returncode == 0
    result = verify(tmp_path, ca.certificate, leaf)
    assert result.returncode != 0
    assert "certificate has expired" in result.stdout + result.stderr


@profiles
def test_leaf_issued_for_a_future_time_verifies_only_at_that_time(
    profile: str, member: MemberId, leaf_key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    ca = pki.CertificateAuthority.create("DEMO", now=FIXED_NOW, lifetime=CA_LIFETIME)
    leaf = issue(ca, profile, member, leaf_key, now=FIXED_NOW)
    at_issue = str(int((FIXED_NOW + dt.timedelta(hours=1)).timestamp()))
    assert verify(tmp_path, ca.certificate, leaf, "-attime", at_issue).returncode == 0
    today = verify(tmp_path, ca.certificate, leaf)
    assert today.returncode != 0
    assert "not yet valid" in today.stdout + today.stderr


# --- what each profile promises, as OpenSSL shows it --------------------------------------------


def test_server_certificate_profile(
    ca: pki.CertificateAuthority,
    server: SecurityServerId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    leaf = ca.issue_server_certificate(
        server, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    assert extensions(tmp_path, leaf) == {
        "Subject Alternative Name": (
            f"URI:urn:pintu:server:DEMO/GOV/POPREG/ss1, DNS:{pki.tls_server_name(server)}"
        ),
        "Key Usage (critical)": "Digital Signature",
        "Extended Key Usage": "TLS Web Server Authentication, TLS Web Client Authentication",
        "Basic Constraints (critical)": "CA:FALSE",
    }


def test_server_certificate_dns_name_is_the_servers_tls_server_name(
    ca: pki.CertificateAuthority,
    server: SecurityServerId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
) -> None:
    leaf = ca.issue_server_certificate(
        server, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [pki.tls_server_name(server)]


def test_server_certificate_is_for_tls_server_and_client(
    ca: pki.CertificateAuthority,
    server: SecurityServerId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    leaf = ca.issue_server_certificate(
        server, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    for purpose in ("sslserver", "sslclient"):
        result = verify(tmp_path, ca.certificate, leaf, "-purpose", purpose)
        assert result.returncode == 0, (purpose, result.stdout + result.stderr)


def test_server_certificate_matches_only_its_own_tls_name(
    ca: pki.CertificateAuthority,
    server: SecurityServerId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    leaf = ca.issue_server_certificate(
        server, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    own = pki.tls_server_name(server)
    other = pki.tls_server_name(server.owner.server("ss2"))  # another server of the same member
    assert verify(tmp_path, ca.certificate, leaf, "-verify_hostname", own).returncode == 0
    mismatch = verify(tmp_path, ca.certificate, leaf, "-verify_hostname", other)
    assert mismatch.returncode != 0
    assert "hostname mismatch" in mismatch.stdout + mismatch.stderr


def test_signing_certificate_profile(
    ca: pki.CertificateAuthority,
    member: MemberId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    leaf = ca.issue_signing_certificate(
        member, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    assert extensions(tmp_path, leaf) == {
        "Subject Alternative Name": "URI:urn:pintu:member:DEMO/GOV/POPREG",
        "Key Usage (critical)": "Digital Signature, Non Repudiation",
        "Extended Key Usage": "1.3.6.1.5.5.7.3.36",
        "Basic Constraints (critical)": "CA:FALSE",
    }


def test_signing_certificate_has_no_tls_usage(
    ca: pki.CertificateAuthority,
    member: MemberId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
) -> None:
    leaf = ca.issue_signing_certificate(
        member, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert usage.content_commitment  # nonRepudiation
    assert not usage.key_encipherment
    assert not usage.key_cert_sign
    # An explicit document-signing EKU (RFC 9336): without any EKU, TLS stacks would accept
    # the certificate for every purpose.
    extended = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(extended) == [pki.DOCUMENT_SIGNING]


def test_signing_certificate_is_refused_for_tls_by_openssl(
    ca: pki.CertificateAuthority,
    member: MemberId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    leaf = ca.issue_signing_certificate(
        member, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    assert verify(tmp_path, ca.certificate, leaf).returncode == 0
    for purpose in ("sslclient", "sslserver"):
        result = verify(tmp_path, ca.certificate, leaf, "-purpose", purpose)
        assert result.returncode != 0, purpose
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == []


def test_client_certificate_profile(
    ca: pki.CertificateAuthority,
    subsystem: SubsystemId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    leaf = ca.issue_client_certificate(
        subsystem, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    assert extensions(tmp_path, leaf) == {
        "Subject Alternative Name": "URI:urn:pintu:subsystem:DEMO/GOV/POPREG/civilregistry",
        "Key Usage (critical)": "Digital Signature",
        "Extended Key Usage": "TLS Web Client Authentication",
        "Basic Constraints (critical)": "CA:FALSE",
    }


def test_client_certificate_is_for_tls_client_only(
    ca: pki.CertificateAuthority,
    subsystem: SubsystemId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    leaf = ca.issue_client_certificate(
        subsystem, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert verify(tmp_path, ca.certificate, leaf, "-purpose", "sslclient").returncode == 0
    as_server = verify(tmp_path, ca.certificate, leaf, "-purpose", "sslserver")
    assert as_server.returncode != 0
    assert "unsuitable certificate purpose" in as_server.stdout + as_server.stderr


def test_listener_certificate_profile(
    ca: pki.CertificateAuthority,
    server: SecurityServerId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    leaf = ca.issue_listener_certificate(
        server, LISTENER_NAMES, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    assert extensions(tmp_path, leaf) == {
        "Subject Alternative Name": (
            "DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, "
            "URI:urn:pintu:server:DEMO/GOV/POPREG/ss1"
        ),
        "Key Usage (critical)": "Digital Signature",
        "Extended Key Usage": "TLS Web Server Authentication",
        "Basic Constraints (critical)": "CA:FALSE",
    }


def test_listener_certificate_is_for_tls_server_only_at_its_names(
    ca: pki.CertificateAuthority,
    server: SecurityServerId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    leaf = ca.issue_listener_certificate(
        server, LISTENER_NAMES, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    root = ca.certificate
    assert verify(tmp_path, root, leaf, "-purpose", "sslserver").returncode == 0
    as_client = verify(tmp_path, root, leaf, "-purpose", "sslclient")
    assert as_client.returncode != 0
    assert "unsuitable certificate purpose" in as_client.stdout + as_client.stderr
    assert verify(tmp_path, root, leaf, "-verify_hostname", "localhost").returncode == 0
    assert verify(tmp_path, root, leaf, "-verify_ip", "127.0.0.1").returncode == 0
    assert verify(tmp_path, root, leaf, "-verify_ip", "::1").returncode == 0
    assert verify(tmp_path, root, leaf, "-verify_hostname", "example.org").returncode != 0
    assert verify(tmp_path, root, leaf, "-verify_ip", "127.0.0.2").returncode != 0


# --- saving and loading the CA ------------------------------------------------------------------


def test_save_and_load_round_trip(
    ca: pki.CertificateAuthority,
    member: MemberId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    ca.save(tmp_path / "ca" / "ca.key", tmp_path / "ca" / "ca.pem")
    loaded = pki.CertificateAuthority.load(tmp_path / "ca" / "ca.key", tmp_path / "ca" / "ca.pem")
    assert loaded.certificate == ca.certificate
    assert loaded.key.public_key() == ca.key.public_key()
    leaf = issue(loaded, "server", member, leaf_key, now=now)
    assert verify(tmp_path, ca.certificate, leaf).returncode == 0


def test_saved_files_are_pem_openssl_reads(ca: pki.CertificateAuthority, tmp_path: Path) -> None:
    ca.save(tmp_path / "ca.key", tmp_path / "ca.pem")
    assert (tmp_path / "ca.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert openssl("pkey", "-noout", "-in", tmp_path / "ca.key").returncode == 0
    assert openssl("x509", "-noout", "-in", tmp_path / "ca.pem").returncode == 0


def test_save_and_load_with_a_passphrase(ca: pki.CertificateAuthority, tmp_path: Path) -> None:
    ca.save(tmp_path / "ca.key", tmp_path / "ca.pem", passphrase=b"correct horse")
    text = (tmp_path / "ca.key").read_bytes()
    assert text.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    read = openssl("pkey", "-noout", "-in", tmp_path / "ca.key", "-passin", "pass:correct horse")
    assert read.returncode == 0, read.stderr
    loaded = pki.CertificateAuthority.load(
        tmp_path / "ca.key", tmp_path / "ca.pem", passphrase=b"correct horse"
    )
    assert loaded.key.public_key() == ca.key.public_key()


def test_load_with_the_wrong_passphrase(ca: pki.CertificateAuthority, tmp_path: Path) -> None:
    ca.save(tmp_path / "ca.key", tmp_path / "ca.pem", passphrase=b"correct horse")
    with pytest.raises(pki.KeyMaterialError, match=r"ca\.key"):
        pki.CertificateAuthority.load(tmp_path / "ca.key", tmp_path / "ca.pem", b"wrong")


def test_load_an_encrypted_key_without_a_passphrase(
    ca: pki.CertificateAuthority, tmp_path: Path
) -> None:
    ca.save(tmp_path / "ca.key", tmp_path / "ca.pem", passphrase=b"correct horse")
    with pytest.raises(pki.KeyMaterialError):
        pki.CertificateAuthority.load(tmp_path / "ca.key", tmp_path / "ca.pem")


def test_load_a_plain_key_with_a_passphrase(ca: pki.CertificateAuthority, tmp_path: Path) -> None:
    ca.save(tmp_path / "ca.key", tmp_path / "ca.pem")
    with pytest.raises(pki.KeyMaterialError):
        pki.CertificateAuthority.load(tmp_path / "ca.key", tmp_path / "ca.pem", b"unexpected")


def test_load_a_key_that_does_not_match_the_certificate(
    ca: pki.CertificateAuthority, now: dt.datetime, tmp_path: Path
) -> None:
    other = pki.CertificateAuthority.create("DEMO", now=now, lifetime=CA_LIFETIME)
    ca.save(tmp_path / "ca.key", tmp_path / "ca.pem")
    other.save(tmp_path / "other.key", tmp_path / "other.pem")
    with pytest.raises(pki.KeyMaterialError, match="does not match"):
        pki.CertificateAuthority.load(tmp_path / "ca.key", tmp_path / "other.pem")


def test_load_a_missing_key(ca: pki.CertificateAuthority, tmp_path: Path) -> None:
    ca.save(tmp_path / "ca.key", tmp_path / "ca.pem")
    with pytest.raises(pki.KeyMaterialError, match=r"missing\.key"):
        pki.CertificateAuthority.load(tmp_path / "missing.key", tmp_path / "ca.pem")


def test_load_a_missing_certificate(ca: pki.CertificateAuthority, tmp_path: Path) -> None:
    ca.save(tmp_path / "ca.key", tmp_path / "ca.pem")
    with pytest.raises(pki.KeyMaterialError, match=r"missing\.pem"):
        pki.CertificateAuthority.load(tmp_path / "ca.key", tmp_path / "missing.pem")


def test_load_a_certificate_file_without_a_certificate(
    ca: pki.CertificateAuthority, tmp_path: Path
) -> None:
    ca.save(tmp_path / "ca.key", tmp_path / "ca.pem")
    (tmp_path / "ca.pem").write_bytes(pki.key_pem(ca.key))
    with pytest.raises(pki.KeyMaterialError):
        pki.CertificateAuthority.load(tmp_path / "ca.key", tmp_path / "ca.pem")


def test_load_a_key_file_that_is_not_a_key(ca: pki.CertificateAuthority, tmp_path: Path) -> None:
    ca.save(tmp_path / "ca.key", tmp_path / "ca.pem")
    (tmp_path / "ca.key").write_bytes(b"not a key\n")
    with pytest.raises(pki.KeyMaterialError):
        pki.CertificateAuthority.load(tmp_path / "ca.key", tmp_path / "ca.pem")


def test_key_material_error_code() -> None:
    assert pki.KeyMaterialError.code == "key_material_invalid"
    assert issubclass(pki.KeyMaterialError, pki.PkiError)
    assert pki.PkiError.code == "pki_error"


# --- file modes ---------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("permissive_umask")
@pytest.mark.parametrize("passphrase", [None, b"correct horse"], ids=["plain", "encrypted"])
def test_private_key_file_is_owner_only(
    ca: pki.CertificateAuthority, tmp_path: Path, passphrase: bytes | None
) -> None:
    ca.save(tmp_path / "ca.key", tmp_path / "ca.pem", passphrase)
    assert mode(tmp_path / "ca.key") == 0o600
    assert not (tmp_path / "ca.key.tmp").exists()
    assert not (tmp_path / "ca.pem.tmp").exists()


@pytest.mark.usefixtures("permissive_umask")
def test_overwritten_private_key_file_is_owner_only(
    ca: pki.CertificateAuthority, tmp_path: Path
) -> None:
    (tmp_path / "ca.key").write_bytes(b"old")
    (tmp_path / "ca.key").chmod(0o644)
    ca.save(tmp_path / "ca.key", tmp_path / "ca.pem")
    assert mode(tmp_path / "ca.key") == 0o600
    assert pki.load_private_key(tmp_path / "ca.key").public_key() == ca.key.public_key()


@pytest.mark.usefixtures("permissive_umask")
def test_private_key_file_is_owner_only_despite_a_stale_scratch_file(
    ca: pki.CertificateAuthority, tmp_path: Path
) -> None:
    # A scratch file left by an interrupted save (or planted) keeps its mode when re-opened.
    (tmp_path / "ca.key.tmp").write_bytes(b"left over")
    (tmp_path / "ca.key.tmp").chmod(0o644)
    ca.save(tmp_path / "ca.key", tmp_path / "ca.pem")
    assert mode(tmp_path / "ca.key") == 0o600


def test_private_key_is_not_written_through_a_symlinked_scratch_file(
    ca: pki.CertificateAuthority, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "ca.key.tmp").symlink_to(elsewhere)
    with contextlib.suppress(OSError, pki.PkiError):  # refusing is fine, writing elsewhere is not
        ca.save(tmp_path / "keys" / "ca.key", tmp_path / "keys" / "ca.pem")
    assert not elsewhere.exists()
    assert not (tmp_path / "keys" / "ca.key").is_symlink()


def test_load_a_certificate_that_is_not_a_ca(
    ca: pki.CertificateAuthority,
    server,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> None:
    leaf = ca.issue_server_certificate(
        server, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    pki.CertificateAuthority(leaf_key, leaf).save(tmp_path / "ca.key", tmp_path / "ca.pem")
    with pytest.raises(pki.KeyMaterialError, match="not a CA certificate"):
        pki.CertificateAuthority.load(tmp_path / "ca.key", tmp_path / "ca.pem")


def test_time_without_a_time_zone_is_refused(
    ca: pki.CertificateAuthority, server, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    naive = dt.datetime(2026, 11, 25, 12, 0)
    with pytest.raises(pki.IssuanceRefused) as refusal:
        ca.issue_server_certificate(
            server, leaf_key.public_key(), now=naive, lifetime=LEAF_LIFETIME
        )
    assert refusal.value.code == "issuance_refused"
    with pytest.raises(pki.IssuanceRefused):
        pki.CertificateAuthority.create("DEMO", now=naive, lifetime=LEAF_LIFETIME)


def test_listener_certificate_cannot_carry_a_security_servers_tls_name(
    ca: pki.CertificateAuthority,
    server: SecurityServerId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
) -> None:
    for name in (pki.tls_server_name(server), "anything.pintu.invalid", "X.PINTU.INVALID."):
        with pytest.raises(pki.IssuanceRefused):
            ca.issue_listener_certificate(
                server, [name], leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
            )
