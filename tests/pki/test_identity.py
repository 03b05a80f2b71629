"""Identities in certificates, the TLS name of a member's servers, and loading TLS material."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.oid import NameOID

import pki
from proto import IdentifierError, MemberId, SecurityServerId, SubsystemId
from tests.pki.conftest import LEAF_LIFETIME

DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def self_signed(sans: list[x509.GeneralName] | None) -> x509.Certificate:
    """A bare certificate with the given SANs (none: no SAN extension at all)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def uri(text: str) -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier(text)


# --- certificate_identity -----------------------------------------------------------------------


def test_identity_of_a_server_certificate(
    ca: pki.CertificateAuthority,
    server: SecurityServerId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
) -> None:
    leaf = ca.issue_server_certificate(
        server, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    identity = pki.certificate_identity(leaf)
    assert isinstance(identity, SecurityServerId)
    assert identity == server


def test_identity_of_a_signing_certificate(
    ca: pki.CertificateAuthority,
    member: MemberId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
) -> None:
    leaf = ca.issue_signing_certificate(
        member, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    identity = pki.certificate_identity(leaf)
    assert isinstance(identity, MemberId)
    assert identity == member


def test_identity_of_a_client_certificate(
    ca: pki.CertificateAuthority,
    subsystem: SubsystemId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
) -> None:
    leaf = ca.issue_client_certificate(
        subsystem, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    identity = pki.certificate_identity(leaf)
    assert isinstance(identity, SubsystemId)
    assert identity == subsystem


def test_identity_of_a_listener_certificate(
    ca: pki.CertificateAuthority,
    server: SecurityServerId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
) -> None:
    leaf = ca.issue_listener_certificate(
        server, ["localhost", "127.0.0.1"], leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    identity = pki.certificate_identity(leaf)
    assert isinstance(identity, SecurityServerId)
    assert identity == server


def test_identity_ignores_other_sans() -> None:
    certificate = self_signed(
        [
            x509.DNSName("example.org"),
            uri("https://example.org/x"),
            uri("urn:pintu:member:DEMO/GOV/POPREG"),
            x509.RFC822Name("a@example.org"),
        ]
    )
    assert pki.certificate_identity(certificate) == MemberId.parse("DEMO/GOV/POPREG")


def test_certificate_without_subject_alt_name() -> None:
    with pytest.raises(pki.CertificateIdentityError, match="no subjectAltName"):
        pki.certificate_identity(self_signed(None))


def test_certificate_without_pintu_uri() -> None:
    certificate = self_signed([x509.DNSName("example.org"), uri("https://example.org/")])
    with pytest.raises(pki.CertificateIdentityError, match="found 0"):
        pki.certificate_identity(certificate)


def test_certificate_with_a_pintu_identity_only_as_dns_name() -> None:
    certificate = self_signed([x509.DNSName("urn.pintu.member.example")])
    with pytest.raises(pki.CertificateIdentityError, match="found 0"):
        pki.certificate_identity(certificate)


def test_certificate_with_two_pintu_uris() -> None:
    certificate = self_signed(
        [uri("urn:pintu:member:DEMO/GOV/POPREG"), uri("urn:pintu:server:DEMO/GOV/POPREG/ss1")]
    )
    with pytest.raises(pki.CertificateIdentityError, match="found 2"):
        pki.certificate_identity(certificate)


def test_certificate_with_the_same_pintu_uri_twice() -> None:
    certificate = self_signed(
        [uri("urn:pintu:member:DEMO/GOV/POPREG"), uri("urn:pintu:member:DEMO/GOV/POPREG")]
    )
    with pytest.raises(pki.CertificateIdentityError, match="found 2"):
        pki.certificate_identity(certificate)


@pytest.mark.parametrize(
    "text",
    [
        "urn:pintu:member:DEMO/GOV",
        "urn:pintu:member:DEMO/GOV/POPREG/extra",
        "urn:pintu:service:DEMO/GOV/POPREG/sub/pkg.S",
        "urn:pintu:member:DEMO/GOV/POP%52EG",
        "urn:pintu:member:",
        "urn:pintu:",
    ],
    ids=["too_few_parts", "too_many_parts", "unknown_kind", "percent", "empty", "prefix_only"],
)
def test_certificate_with_a_malformed_pintu_uri(text: str) -> None:
    with pytest.raises(pki.CertificateIdentityError) as info:
        pki.certificate_identity(self_signed([uri(text)]))
    assert isinstance(info.value.__cause__, IdentifierError)
    assert info.value.code == "certificate_identity_invalid"


def test_malformed_uri_error_message_is_printable_ascii() -> None:
    hostile = "urn:pintu:member:DEMO/GOV/\x1b[2J" + "\u202e" * 500
    with pytest.raises(pki.CertificateIdentityError) as info:
        pki.identity_from_uris([hostile])
    assert all(" " <= c <= "~" for c in str(info.value))
    assert len(str(info.value)) <= 400


def test_identity_from_uris_takes_lists_and_tuples() -> None:
    expected = SubsystemId.parse("DEMO/GOV/POPREG/civilregistry")
    assert pki.identity_from_uris([expected.uri]) == expected
    assert pki.identity_from_uris(("https://x.example/", expected.uri)) == expected


def test_identity_from_uris_ignores_foreign_uris_but_not_a_second_pintu_uri() -> None:
    server = "urn:pintu:server:DEMO/GOV/A/ss1"
    assert str(pki.identity_from_uris([server, "https://example.org/x"])) == "DEMO/GOV/A/ss1"
    with pytest.raises(pki.CertificateIdentityError):
        pki.identity_from_uris([server, "urn:pintu:server:DEMO/GOV/B/ss1"])


def test_identity_from_uris_refuses_an_upper_case_pintu_urn() -> None:
    with pytest.raises(pki.CertificateIdentityError):
        pki.identity_from_uris(["URN:PINTU:server:DEMO/GOV/A/ss1"])


def test_identity_from_no_uris() -> None:
    with pytest.raises(pki.CertificateIdentityError, match="found 0"):
        pki.identity_from_uris([])


def test_certificate_identity_error_is_a_pki_error() -> None:
    assert issubclass(pki.CertificateIdentityError, pki.PkiError)
    assert pki.CertificateIdentityError.code == "certificate_identity_invalid"


# --- tls_server_name ----------------------------------------------------------------------------

SERVERS = [
    "DEMO/GOV/POPREG/ss1",
    "DEMO/GOV/popreg/ss1",
    "DEMO/GOV/PopReg/ss1",
    "a/b/c/d",
    "A/B/C/D",
    "EE/GOV/70000740/ss1",
    f"{'I' * 64}/{'C' * 64}/{'M' * 64}/{'S' * 64}",
]


def test_tls_server_name_is_deterministic() -> None:
    first = pki.tls_server_name(SecurityServerId.parse("DEMO/GOV/POPREG/ss1"))
    assert first == pki.tls_server_name(MemberId("DEMO", "GOV", "POPREG").server("ss1"))
    # The name is carried in certificates already issued: it must not change between versions.
    assert first == "s-548ba05d73fa53877f47c12cb04922577332864c9d213dcbc7bb91f3.pintu.invalid"


@pytest.mark.parametrize("text", SERVERS)
def test_tls_server_name_is_a_lowercase_dns_name(text: str) -> None:
    name = pki.tls_server_name(SecurityServerId.parse(text))
    assert name == name.lower()
    assert name.endswith(pki.TLS_NAME_SUFFIX)
    assert len(name) <= 253
    labels = name.split(".")
    assert all(DNS_LABEL.fullmatch(label) for label in labels), labels
    assert all(len(label) <= 63 for label in labels)
    x509.DNSName(name)  # cryptography accepts it as a SAN value


def test_tls_server_name_differs_between_servers_that_differ_only_in_case() -> None:
    names = {pki.tls_server_name(SecurityServerId.parse(text)) for text in SERVERS[:3]}
    assert len(names) == 3
    assert pki.tls_server_name(SecurityServerId.parse("a/b/c/d")) != pki.tls_server_name(
        SecurityServerId.parse("A/B/C/D")
    )


def test_tls_server_name_differs_when_parts_shift() -> None:
    assert pki.tls_server_name(SecurityServerId.parse("AB/C/D/E")) != pki.tls_server_name(
        SecurityServerId.parse("A/BC/D/E")
    )


def test_tls_server_name_differs_between_servers_of_one_member() -> None:
    member = MemberId("DEMO", "GOV", "POPREG")
    assert pki.tls_server_name(member.server("ss1")) != pki.tls_server_name(member.server("ss2"))


def test_tls_server_name_is_distinct_for_many_servers() -> None:
    servers = [MemberId("DEMO", "GOV", f"M{i % 50}").server(f"ss{i}") for i in range(2_000)]
    assert len({pki.tls_server_name(s) for s in servers}) == len(servers)


# --- TlsIdentity --------------------------------------------------------------------------------


@pytest.fixture
def tls_files(
    ca: pki.CertificateAuthority,
    server: SecurityServerId,
    leaf_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    tmp_path: Path,
) -> tuple[Path, Path, Path]:
    leaf = ca.issue_server_certificate(
        server, leaf_key.public_key(), now=now, lifetime=LEAF_LIFETIME
    )
    key = tmp_path / "server.key"
    chain = tmp_path / "server.pem"
    anchors = tmp_path / "ca.pem"
    pki.write_private(key, pki.key_pem(leaf_key))
    pki.write_public(chain, pki.certificate_pem(leaf))
    pki.write_public(anchors, pki.certificate_pem(ca.certificate))
    return key, chain, anchors


def test_tls_identity_load(
    tls_files: tuple[Path, Path, Path],
    ca: pki.CertificateAuthority,
    server: SecurityServerId,
    leaf_key: ec.EllipticCurvePrivateKey,
) -> None:
    key, chain, anchors = tls_files
    identity = pki.TlsIdentity.load(key, chain, anchors)
    assert identity.certificate_chain == chain.read_bytes()
    assert identity.trust_anchors == pki.certificate_pem(ca.certificate)
    assert pki.certificate_identity(identity.leaf) == server
    reloaded = pki.load_private_key(key)
    assert reloaded.public_key() == leaf_key.public_key()
    assert identity.private_key.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_tls_identity_keeps_the_chain_in_order(
    tls_files: tuple[Path, Path, Path], ca: pki.CertificateAuthority
) -> None:
    key, chain, anchors = tls_files
    leaf = x509.load_pem_x509_certificate(chain.read_bytes())
    chain.write_bytes(pki.certificate_pem(leaf, ca.certificate))
    identity = pki.TlsIdentity.load(key, chain, anchors)
    assert identity.leaf == leaf
    assert identity.certificate_chain == pki.certificate_pem(leaf, ca.certificate)


def test_tls_identity_with_a_key_that_does_not_match(tls_files: tuple[Path, Path, Path]) -> None:
    key, chain, anchors = tls_files
    pki.write_private(key, pki.key_pem(pki.generate_key()))
    with pytest.raises(pki.KeyMaterialError, match="does not match"):
        pki.TlsIdentity.load(key, chain, anchors)


def test_tls_identity_with_the_ca_key_for_a_leaf(
    tls_files: tuple[Path, Path, Path], ca: pki.CertificateAuthority
) -> None:
    key, chain, anchors = tls_files
    pki.write_private(key, pki.key_pem(ca.key))
    with pytest.raises(pki.KeyMaterialError, match="does not match"):
        pki.TlsIdentity.load(key, chain, anchors)


@pytest.mark.parametrize("which", ["key", "certificate", "trust anchors"])
def test_tls_identity_with_a_missing_file(
    tls_files: tuple[Path, Path, Path], which: str, tmp_path: Path
) -> None:
    paths = list(tls_files)
    paths[["key", "certificate", "trust anchors"].index(which)] = tmp_path / "missing.pem"
    with pytest.raises(pki.KeyMaterialError, match=r"missing\.pem"):
        pki.TlsIdentity.load(*paths)


def test_tls_identity_with_a_directory_for_a_file(
    tls_files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    key, chain, _ = tls_files
    (tmp_path / "folder").mkdir()
    with pytest.raises(pki.KeyMaterialError):
        pki.TlsIdentity.load(key, chain, tmp_path / "folder")


@pytest.mark.parametrize("which", ["key", "certificate", "trust anchors"])
@pytest.mark.parametrize("content", [b"", b"garbage\n", b"-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_tls_identity_with_an_unreadable_file(
    tls_files: tuple[Path, Path, Path], which: str, content: bytes
) -> None:
    path = tls_files[["key", "certificate", "trust anchors"].index(which)]
    path.write_bytes(content)
    with pytest.raises(pki.KeyMaterialError):
        pki.TlsIdentity.load(*tls_files)


def test_tls_identity_with_an_encrypted_key(
    tls_files: tuple[Path, Path, Path], leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    key, chain, anchors = tls_files
    pki.write_private(key, pki.key_pem(leaf_key, b"passphrase"))
    with pytest.raises(pki.KeyMaterialError):
        pki.TlsIdentity.load(key, chain, anchors)


def test_load_private_key_of_an_unsupported_type(tmp_path: Path) -> None:
    path = tmp_path / "x25519.key"
    path.write_bytes(
        x25519.X25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
    )
    with pytest.raises(pki.KeyMaterialError, match="unsupported key type"):
        pki.load_private_key(path)
