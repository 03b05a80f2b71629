"""``pintu ca ...`` and ``pintu gateway enroll|register`` run as an operator runs them:
subprocesses on 127.0.0.1, checked with OpenSSL's command line; the PKCS#11 case with a SoftHSM2
token. Enrollment registers the new certificate with a real registry (``pintu registry serve``
made with ``pintu registry init`` from the same CA)."""

from __future__ import annotations

import getpass
import json
import re
import shutil
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

import pki
from tests.pintu.ca_support import (
    INSTANCE,
    MEMBER,
    CaDirectory,
    GatewayFiles,
    RegistryDirectory,
    certificates,
    enroll,
    environment,
    fingerprint,
    gateway_files,
    import_federation,
    init_ca,
    init_registry,
    mode,
    openssl,
    pintu,
    refused,
    register,
    serving,
    serving_registry,
    succeeded,
    trust_bundle,
    wait_until,
)
from tests.pki.softhsm import SOFTHSM_MODULE, SoftHsmStore, softhsm_token

pytestmark = pytest.mark.integration

SS1 = f"{MEMBER}/ss1"
SS2 = f"{MEMBER}/ss2"
SS3 = f"{MEMBER}/ss3"  # a server the registry does not know
PASSPHRASE = "correct horse battery staple"
PIN = "4321"
SO_PIN = "8765"
TOKEN_LABEL = "pintu-ca"
CA_KEY_LABELS = ("G1-root", "G1-issuing", "G1-ocsp")


def uris(certificate: x509.Certificate) -> list[str]:
    """The certificate's URI SANs."""
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return names.get_values_for_type(x509.UniformResourceIdentifier)


def public_der(key: object) -> bytes:
    """A public key (or a certificate's) as DER SubjectPublicKeyInfo."""
    if isinstance(key, x509.Certificate):
        key = key.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey), key
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def verify_chain(root: Path, chain: Path) -> None:
    """``openssl verify`` of the first certificate in ``chain`` with the rest as untrusted."""
    result = openssl("verify", "-CAfile", root, "-untrusted", chain, chain)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{chain}: OK"


@dataclass(frozen=True, slots=True)
class Enrollment:
    """A security server enrolled through the running CA service, and the token it used."""

    gateway: GatewayFiles
    token: str

    @property
    def serial(self) -> int:
        return int(certificates(self.gateway.certificate)[0].serial_number)

    @property
    def signing_serial(self) -> int:
        return int(certificates(self.gateway.signing_certificate)[0].serial_number)


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Path:
    path = tmp_path / "passphrase"
    path.write_text(PASSPHRASE + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def ca(tmp_path: Path, passphrase_file: Path) -> CaDirectory:
    """``pintu ca init`` with a passphrase file, on fresh ports."""
    return init_ca(tmp_path / "ca", passphrase_file)


@pytest.fixture
def served_ca(ca: CaDirectory, tmp_path: Path) -> Iterator[CaDirectory]:
    """The CA, with ``pintu ca serve`` running (stopped by SIGTERM after the test)."""
    with serving(ca, tmp_path / "run"):
        yield ca


@pytest.fixture
def registry(ca: CaDirectory, tmp_path: Path) -> RegistryDirectory:
    """A registry of the CA (``pintu registry init``, an admin operator) that knows member
    DEMO/GOV/X and its servers ss1 and ss2 (imported while it ran); not running."""
    made = init_registry(ca, tmp_path / "registry")
    with serving_registry(made, tmp_path / "run"):
        import_federation(made)
    return made


@pytest.fixture
def served_registry(registry: RegistryDirectory, tmp_path: Path) -> Iterator[RegistryDirectory]:
    """The registry, with ``pintu registry serve`` running (stopped after the test)."""
    with serving_registry(registry, tmp_path / "run"):
        yield registry


@pytest.fixture
def enrolled(
    served_ca: CaDirectory, served_registry: RegistryDirectory, tmp_path: Path
) -> Enrollment:
    """``pintu gateway enroll`` of DEMO/GOV/X/ss1 with a token from ``pintu ca token``."""
    gateway = gateway_files(tmp_path / "ss1", SS1, served_ca, anchor=served_registry.anchor)
    token = served_ca.token(SS1)
    succeeded(enroll(gateway, token))
    return Enrollment(gateway, token)


@dataclass(frozen=True, slots=True)
class EnrolledCa:
    """A CA folder with one enrollment done, the security server's files, and the registry."""

    ca: CaDirectory
    enrollment: Enrollment
    registry: Path


@pytest.fixture(scope="module")
def enrolled_original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a CA (``ca/``) and its registry (``registry/``) whose services enrolled
    and registered DEMO/GOV/X/ss1 (``ss1/``), made once for the module; the services are
    stopped again. Tests get copies (``after_enrollment``)."""
    base = tmp_path_factory.mktemp("enrolled")
    secret = base / "passphrase"
    secret.write_text(PASSPHRASE + "\n", encoding="utf-8")
    secret.chmod(0o600)
    ca = init_ca(base / "ca", secret)
    registry = init_registry(ca, base / "registry")
    with serving(ca, base / "run"), serving_registry(registry, base / "run"):
        import_federation(registry)
        token = ca.token(SS1)
        succeeded(enroll(gateway_files(base / "ss1", SS1, ca, anchor=registry.anchor), token))
    (base / "token").write_text(token, encoding="utf-8")
    return base


@pytest.fixture
def after_enrollment(enrolled_original: Path, tmp_path: Path) -> EnrolledCa:
    """This test's own copy of ``enrolled_original`` (modes kept): a CA right after a real
    enrollment through its service, for the commands that need no running service."""
    base = tmp_path / "after-enrollment"
    shutil.copytree(enrolled_original, base, ignore=shutil.ignore_patterns("run"))
    copy = CaDirectory.of(base / "ca", base / "passphrase", environment())
    gateway = GatewayFiles(base / "ss1" / "gateway.toml", SS1)
    return EnrolledCa(
        copy,
        Enrollment(gateway, (base / "token").read_text(encoding="utf-8")),
        base / "registry",
    )


@pytest.fixture
def softhsm(tmp_path: Path) -> SoftHsmStore:
    """A fresh SoftHSM2 token store of this test's own, with one initialised token."""
    return softhsm_token(tmp_path / "softhsm", TOKEN_LABEL, PIN, SO_PIN)


@pytest.fixture
def pin_file(tmp_path: Path) -> Path:
    path = tmp_path / "pin"
    path.write_text(PIN + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def hsm_ca(tmp_path: Path, softhsm: SoftHsmStore, pin_file: Path) -> CaDirectory:
    """``pintu ca init`` with the CA keys in the SoftHSM2 token (SOFTHSM2_CONF passed along)."""
    return init_ca(
        tmp_path / "ca",
        pin_file,
        environment(**softhsm.environment),
        "--pkcs11-module",
        str(SOFTHSM_MODULE),
        "--pkcs11-token",
        TOKEN_LABEL,
    )


@pytest.fixture
def token_keys(
    hsm_ca: CaDirectory, softhsm: SoftHsmStore, monkeypatch: pytest.MonkeyPatch
) -> dict[str, bytes]:
    """The public keys of the CA's key pairs as the token holds them, by label."""
    for name, value in softhsm.environment.items():
        monkeypatch.setenv(name, value)
    # Closing the only token finalises the module: the next test's store is read afresh.
    with pki.Pkcs11Token(SOFTHSM_MODULE, softhsm.label, softhsm.pin) as token:
        return {
            label: public_der(pki.Pkcs11Key.find(token, label).public_key())
            for label in CA_KEY_LABELS
        }


# --- ca init -------------------------------------------------------------------------------------


def test_init_keeps_ca_keys_encrypted_and_owner_only(ca: CaDirectory) -> None:
    assert mode(ca.path) == 0o700
    keys = sorted(ca.path.glob("*.key"))
    assert [k.name for k in keys] == ["G1-issuing.key", "G1-ocsp.key", "G1-root.key"]
    for key in keys:
        assert mode(key) == 0o600, key
        data = key.read_bytes()
        assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"), key
        # Encrypted with the passphrase from the file (its line ending is not part of it).
        serialization.load_pem_private_key(data, PASSPHRASE.encode())
    assert mode(ca.path / "service" / "tls.key") == 0o600
    assert mode(ca.path / "ca.sqlite") == 0o600


def test_init_certificates_verify_with_openssl(ca: CaDirectory) -> None:
    root, issuing = ca.pem(1, "root"), ca.pem(1, "issuing")
    result = openssl("verify", "-CAfile", root, issuing)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{issuing}: OK"
    result = openssl("verify", "-CAfile", root, "-untrusted", issuing, ca.pem(1, "ocsp"))
    assert result.returncode == 0, result.stdout + result.stderr
    verify_chain(root, ca.path / "service" / "tls.pem")
    assert f"O=Pintu federation {INSTANCE}" in certificates(root)[0].subject.rfc4514_string()


def test_init_twice_is_refused(ca: CaDirectory) -> None:
    before = {p: p.read_bytes() for p in [*ca.path.glob("*.key"), *ca.path.glob("G1/*.pem")]}
    refusal = refused(
        pintu(
            "ca",
            "init",
            "--dir",
            ca.path,
            "--instance",
            INSTANCE,
            "--passphrase-file",
            ca.secret,
        )
    )
    assert refusal.code == "ca_database_error"
    assert refusal.message == f"{ca.path} already holds a CA"
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in ca.path.glob("G*")) == [
        "G1",
        "G1-issuing.key",
        "G1-ocsp.key",
        "G1-root.key",
    ]


@pytest.mark.parametrize("given", ["nothing", "empty file"])
def test_init_without_passphrase_is_refused(tmp_path: Path, given: str) -> None:
    options: list[str | Path] = []
    if given == "empty file":
        (tmp_path / "empty").write_text("\n")
        options = ["--passphrase-file", tmp_path / "empty"]
    refusal = refused(
        pintu("ca", "init", "--dir", tmp_path / "ca", "--instance", INSTANCE, *options)
    )
    assert refusal.code == "config_invalid"
    assert "--passphrase-file" in refusal.message
    assert "PINTU_CA_PASSPHRASE" in refusal.message
    assert not (tmp_path / "ca").exists()


def test_passphrase_may_come_from_the_environment(tmp_path: Path) -> None:
    env = environment(PINTU_CA_PASSPHRASE=PASSPHRASE)
    directory = tmp_path / "ca"
    succeeded(pintu("ca", "init", "--dir", directory, "--instance", INSTANCE, env=env))
    key = (directory / "G1-issuing.key").read_bytes()
    serialization.load_pem_private_key(key, PASSPHRASE.encode())
    token = succeeded(pintu("ca", "token", "--dir", directory, "--server", SS1, env=env))
    assert token.strip()


def test_token_with_wrong_passphrase_is_refused(ca: CaDirectory, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    result = pintu("ca", "token", "--dir", ca.path, "--server", SS1, "--passphrase-file", wrong)
    refusal = refused(result)
    assert refusal.code == "key_material_invalid"
    assert result.stdout == ""
    assert [e["action"] for e in ca.journal()] == ["init"]


# --- enrollment, listing, revocation ------------------------------------------------------------


def test_enroll_writes_owner_only_keys_and_verifiable_chains(
    after_enrollment: EnrolledCa,
) -> None:
    ca, gateway = after_enrollment.ca, after_enrollment.enrollment.gateway
    root = ca.pem(1, "root")
    assert mode(gateway.key) == 0o600
    assert mode(gateway.signing_key) == 0o600

    chain = certificates(gateway.certificate)
    assert chain[1:] == certificates(ca.pem(1, "issuing"))
    verify_chain(root, gateway.certificate)
    assert uris(chain[0]) == [f"urn:pintu:server:{SS1}"]
    key = serialization.load_pem_private_key(gateway.key.read_bytes(), None)
    assert public_der(key.public_key()) == public_der(chain[0])

    signing = certificates(gateway.signing_certificate)
    verify_chain(root, gateway.signing_certificate)
    assert uris(signing[0]) == [f"urn:pintu:member:{MEMBER}"]
    signing_key = serialization.load_pem_private_key(gateway.signing_key.read_bytes(), None)
    assert public_der(signing_key.public_key()) == public_der(signing[0])
    assert public_der(signing[0]) != public_der(chain[0])


def test_enroll_with_used_token_is_refused(enrolled: Enrollment) -> None:
    gateway = enrolled.gateway
    written = [gateway.key, gateway.certificate, gateway.signing_key, gateway.signing_certificate]
    before = {p: p.read_bytes() for p in written}
    refusal = refused(enroll(gateway, enrolled.token))
    assert refusal.code == "ca_refused"
    assert refusal.message.startswith("token_used:")
    assert {p: p.read_bytes() for p in written} == before, "a refused enrollment wrote files"


def test_enroll_with_token_of_another_server_is_refused(
    served_ca: CaDirectory, served_registry: RegistryDirectory, tmp_path: Path
) -> None:
    anchor = served_registry.anchor
    gateway = gateway_files(tmp_path / "ss1", SS1, served_ca, anchor=anchor)
    token = served_ca.token(SS2)
    issued_before = served_ca.listing()
    refusal = refused(enroll(gateway, token))
    assert refusal.code == "ca_refused"
    assert refusal.message.startswith("csr_identity_mismatch:")
    assert f"urn:pintu:server:{SS2}" in refusal.message
    assert sorted(p.name for p in gateway.config.parent.iterdir()) == [
        "anchor.json",
        "anchors.pem",
        "gateway.toml",
    ]
    assert served_ca.listing() == issued_before
    assert served_registry.certificates_of(SS1) == []
    # The token is used up only by an enrollment that passes every check.
    succeeded(enroll(gateway_files(tmp_path / "ss2", SS2, served_ca, anchor=anchor), token))


def registry_serials(registry: Path) -> tuple[int, int, int]:
    """Serials of what ``pintu registry init|operator`` had the CA issue: the configuration-signing
    certificate, the management service's TLS certificate, the admin operator's certificate."""
    return (
        int(certificates(registry / "signing.pem")[0].serial_number),
        int(certificates(registry / "tls.pem")[0].serial_number),
        int(certificates(registry.parent / "registry-admin" / "cert.pem")[0].serial_number),
    )


def test_list_shows_every_certificate_valid(after_enrollment: EnrolledCa) -> None:
    ca, enrolled = after_enrollment.ca, after_enrollment.enrollment
    signer, tls, admin = registry_serials(after_enrollment.registry)
    listing = ca.listing()
    assert {
        serial: (row["kind"], row["identity"], row["state"]) for serial, row in listing.items()
    } == {
        signer: ("configuration-signing", INSTANCE, "valid"),
        tls: ("registry", f"Pintu registry {INSTANCE}", "valid"),
        admin: ("operator", "admin", "valid"),
        enrolled.serial: ("authentication", SS1, "valid"),
        enrolled.signing_serial: ("signing", MEMBER, "valid"),
    }


def test_revoke_reaches_the_listing_and_the_running_responder(
    served_ca: CaDirectory, enrolled: Enrollment
) -> None:
    certificate = enrolled.gateway.certificate
    before = served_ca.ocsp(certificate)
    assert before.returncode == 0, before.stdout + before.stderr
    assert f"{certificate}: good" in before.stdout
    assert "Response verify OK" in before.stderr

    output = succeeded(served_ca.run("revoke", str(enrolled.serial), "--reason", "key_compromise"))
    assert str(enrolled.serial) in output

    listing = served_ca.listing()
    assert listing[enrolled.serial]["state"].startswith("revoked ")
    assert listing[enrolled.serial]["state"].endswith("(key_compromise)")
    assert listing[enrolled.signing_serial]["state"] == "valid"

    def revoked() -> bool:
        result = served_ca.ocsp(certificate)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Response verify OK" in result.stderr
        return (
            f"{certificate}: revoked" in result.stdout and "Reason: keyCompromise" in result.stdout
        )

    wait_until(revoked, "the running service answering OCSP with the CLI's revocation")


def test_revoke_accepts_a_hex_serial(after_enrollment: EnrolledCa) -> None:
    ca, enrolled = after_enrollment.ca, after_enrollment.enrollment
    succeeded(ca.run("revoke", hex(enrolled.signing_serial), "--reason", "superseded"))
    listing = ca.listing()
    assert listing[enrolled.signing_serial]["state"].endswith("(superseded)")
    assert listing[enrolled.serial]["state"] == "valid"


def test_revoke_unknown_serial_is_refused(ca: CaDirectory) -> None:
    refusal = refused(ca.run("revoke", "12345", "--reason", "key_compromise"))
    assert refusal.code == "ca_database_error"
    assert refusal.message == "no certificate with serial 12345"
    assert [e["action"] for e in ca.journal()] == ["init"]


def test_revoke_malformed_serial_is_refused(ca: CaDirectory) -> None:
    refusal = refused(ca.run("revoke", "12ab", "--reason", "key_compromise"))
    assert refusal.code == "config_invalid"
    assert "'12ab'" in refusal.message


def test_revoke_unknown_reason_is_refused(after_enrollment: EnrolledCa) -> None:
    ca, enrolled = after_enrollment.ca, after_enrollment.enrollment
    refusal = refused(ca.run("revoke", str(enrolled.serial), "--reason", "bored"))
    assert refusal.code == "ca_database_error"
    assert refusal.message.startswith("unknown reason 'bored'")
    assert "key_compromise" in refusal.message
    assert ca.listing()[enrolled.serial]["state"] == "valid"


def test_revoke_twice_is_refused(after_enrollment: EnrolledCa) -> None:
    ca, enrolled = after_enrollment.ca, after_enrollment.enrollment
    succeeded(ca.run("revoke", str(enrolled.serial), "--reason", "key_compromise"))
    refusal = refused(ca.run("revoke", str(enrolled.serial), "--reason", "superseded"))
    assert refusal.code == "ca_database_error"
    assert "already revoked" in refusal.message
    assert ca.listing()[enrolled.serial]["state"].endswith("(key_compromise)")


def test_journal_lists_each_step_in_order_with_its_actor(after_enrollment: EnrolledCa) -> None:
    ca, enrolled = after_enrollment.ca, after_enrollment.enrollment
    succeeded(ca.run("revoke", str(enrolled.serial), "--reason", "key_compromise"))
    journal = ca.journal()
    assert [e["action"] for e in journal] == [
        "init",
        "certify",
        "certify",
        "certify",
        "token",
        "enroll",
        "enroll",
        "revoke",
    ]
    assert [int(e["sequence"]) for e in journal] == sorted(int(e["sequence"]) for e in journal)
    init, signer, tls, admin, token, auth, signing, revoke = journal
    operator = init["actor"]
    assert getpass.getuser() in operator
    assert token["actor"] == revoke["actor"] == operator
    # `pintu registry init` and `pintu registry operator`, run with the CA's folder.
    serials = registry_serials(after_enrollment.registry)
    for entry, kind, serial in zip(
        (signer, tls, admin),
        ("configuration-signing", "registry", "operator"),
        serials,
        strict=True,
    ):
        assert entry["actor"] == operator
        assert (entry["serial"], f"'kind': '{kind}'" in entry["detail"]) == (str(serial), True)
    assert token["identity"] == SS1
    # Enrollment is done by the token's holder, on the strength of who made the token.
    for entry in (auth, signing):
        assert SS1 in entry["actor"]
        assert operator in entry["actor"]
    assert (auth["identity"], auth["serial"]) == (SS1, str(enrolled.serial))
    assert (signing["identity"], signing["serial"]) == (MEMBER, str(enrolled.signing_serial))
    assert (revoke["identity"], revoke["serial"]) == (SS1, str(enrolled.serial))
    assert "key_compromise" in revoke["detail"]


# --- registering with the registry ------------------------------------------------------------

REGISTERED = re.compile(r"^registered the certificate with the registry \(version (\d+)\)$")


def test_enroll_registers_the_certificate_with_the_registry(
    served_ca: CaDirectory, served_registry: RegistryDirectory, tmp_path: Path
) -> None:
    gateway = gateway_files(tmp_path / "ss1", SS1, served_ca, anchor=served_registry.anchor)

    output = succeeded(enroll(gateway, served_ca.token(SS1))).splitlines()

    serial = certificates(gateway.certificate)[0].serial_number
    assert len(output) == 2, output
    assert output[0].startswith(f"enrolled {SS1}: authentication certificate {serial} until ")
    registered = REGISTERED.match(output[1])
    assert registered, output
    state = served_registry.state()
    assert state["registry_version"] == int(registered[1])
    assert served_registry.certificates_of(SS1) == [fingerprint(gateway.certificate)]
    assert served_registry.certificates_of(SS2) == []
    journal = succeeded(served_registry.run("journal")).splitlines()
    assert any(
        f"security server {SS1}  its authentication certificate" in line for line in journal
    ), journal


def test_second_enrollment_replaces_the_registered_certificate(
    enrolled: Enrollment, served_ca: CaDirectory, served_registry: RegistryDirectory
) -> None:
    gateway = enrolled.gateway
    first = fingerprint(gateway.certificate)
    assert served_registry.certificates_of(SS1) == [first]

    succeeded(enroll(gateway, served_ca.token(SS1)))

    second = fingerprint(gateway.certificate)
    assert second != first
    assert served_registry.certificates_of(SS1) == [second]


def test_enroll_with_the_registry_unreachable_fails_registration_and_register_retries(
    served_ca: CaDirectory, registry: RegistryDirectory, tmp_path: Path
) -> None:
    gateway = gateway_files(tmp_path / "ss1", SS1, served_ca, anchor=registry.anchor)

    result = enroll(gateway, served_ca.token(SS1))

    refusal = refused(result)
    assert refusal.code == "registration_failed"
    assert result.stdout == ""
    # The certificates were issued and written: only registering them is left to do.
    serial = certificates(gateway.certificate)[0].serial_number
    assert refusal.message.startswith(f"enrolled {SS1}: authentication certificate {serial} ")
    assert refusal.message.endswith(
        f"run `pintu gateway register --config {gateway.config}` once the registry is reachable"
    )
    assert mode(gateway.key) == 0o600
    assert served_ca.listing()[serial]["state"] == "valid"

    with serving_registry(registry, tmp_path / "run-later"):
        output = succeeded(register(gateway))
        assert REGISTERED.match(output.strip()), output
        assert registry.certificates_of(SS1) == [fingerprint(gateway.certificate)]


def test_register_for_a_server_the_registry_does_not_know_is_refused(
    served_ca: CaDirectory, served_registry: RegistryDirectory, tmp_path: Path
) -> None:
    gateway = gateway_files(tmp_path / "ss3", SS3, served_ca, anchor=served_registry.anchor)
    version = served_registry.state()["registry_version"]

    enrolling = refused(enroll(gateway, served_ca.token(SS3)))
    registering = refused(register(gateway))

    assert enrolling.code == "registration_failed"
    assert f"change_refused: registry at {served_registry_address(served_registry)}" in (
        enrolling.message
    )
    assert registering.code == "change_refused"
    assert registering.message.startswith(f"registry at {served_registry_address(served_registry)}")
    assert registering.message.endswith(f"{SS3} is not a registered security server")
    state = served_registry.state()
    assert state["registry_version"] == version
    assert SS3 not in [entry["id"] for entry in state["security_servers"]]


def served_registry_address(registry: RegistryDirectory) -> str:
    """The management address the registry's anchor names."""
    return str(json.loads(registry.anchor.read_text(encoding="utf-8"))["registry"])


def test_enroll_without_a_registry_anchor_is_refused_before_using_the_token(
    served_ca: CaDirectory, served_registry: RegistryDirectory, tmp_path: Path
) -> None:
    gateway = gateway_files(tmp_path / "ss1", SS1, served_ca, anchor=served_registry.anchor)
    written = gateway.config.read_text(encoding="utf-8")
    gateway.config.write_text(
        written.replace('[registry]\nanchor = "anchor.json"\n\n', ""), encoding="utf-8"
    )
    token = served_ca.token(SS1)

    refusal = refused(enroll(gateway, token))

    # Like every other setting enrollment needs, checked before the one-time token is spent.
    assert refusal.code == "config_invalid"
    assert refusal.message.startswith(f"{gateway.config}: registry.anchor: "), refusal.message
    assert not gateway.certificate.exists()
    gateway.config.write_text(written, encoding="utf-8")
    succeeded(enroll(gateway, token))


def test_enroll_after_a_root_switch_registers_the_certificate(
    served_ca: CaDirectory, served_registry: RegistryDirectory, tmp_path: Path
) -> None:
    ca = served_ca
    g1, g2 = ca.pem(1, "root"), ca.pem(2, "root")
    log = tmp_path / "run" / "registry-serve.log"
    succeeded(ca.run("rollover", "begin"))
    # As docs/pki.md says: the registry takes the new root after `begin` ...
    served_registry.rotate()
    wait_until(lambda: log.read_text().count('"registry_tls_replaced"') == 1, "TLS taken")
    succeeded(ca.run("rollover", "switch"))
    # ... and a signing key under it after `switch`.
    served_registry.rotate()
    wait_until(lambda: log.read_text().count('"registry_tls_replaced"') == 2, "TLS taken again")

    def switched() -> bool:
        try:
            trust_bundle(ca, g2)
        except pki.CaUnavailable:
            return False
        return True

    wait_until(switched, "the service under the new generation after `rollover switch`")
    gateway = gateway_files(tmp_path / "ss1", SS1, ca, g1, g2, anchor=served_registry.anchor)

    succeeded(enroll(gateway, ca.token(SS1)))

    verify_chain(g2, gateway.certificate)
    assert served_registry.certificates_of(SS1) == [fingerprint(gateway.certificate)]


# --- root rollover -------------------------------------------------------------------------------


def test_rollover_switch_before_begin_is_refused(ca: CaDirectory) -> None:
    refusal = refused(ca.run("rollover", "switch"))
    assert refusal.code == "ca_database_error"
    assert "rollover begin" in refusal.message
    assert not (ca.path / "G2").exists()
    assert [e["action"] for e in ca.journal()] == ["init"]


def test_rollover_retire_before_begin_is_refused(ca: CaDirectory) -> None:
    refusal = refused(ca.run("rollover", "retire"))
    assert refusal.code == "ca_database_error"
    assert "no older root" in refusal.message


def test_rollover_begin_twice_is_refused(ca: CaDirectory) -> None:
    succeeded(ca.run("rollover", "begin"))
    refusal = refused(ca.run("rollover", "begin"))
    assert refusal.code == "ca_database_error"
    assert "already introduced" in refusal.message
    assert not (ca.path / "G3").exists()


def test_rollover_begin_cross_certifies_the_new_root(ca: CaDirectory) -> None:
    assert "G2" in succeeded(ca.run("rollover", "begin"))
    assert sorted(p.name for p in (ca.path / "G2").iterdir()) == [
        "cross.pem",
        "issuing.pem",
        "ocsp.pem",
        "root.pem",
    ]
    for name in ("root", "issuing", "ocsp"):
        key = ca.path / f"G2-{name}.key"
        assert mode(key) == 0o600
        assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")

    cross_pem = ca.pem(2, "cross")
    result = openssl("verify", "-partial_chain", "-CAfile", ca.pem(1, "root"), cross_pem)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{cross_pem}: OK"
    [cross], [old_root], [new_root] = (
        certificates(cross_pem),
        certificates(ca.pem(1, "root")),
        certificates(ca.pem(2, "root")),
    )
    cross.verify_directly_issued_by(old_root)
    assert cross.subject == new_root.subject
    assert public_der(cross) == public_der(new_root)
    verify_chain(ca.pem(2, "root"), ca.pem(2, "issuing"))
    assert [e["action"] for e in ca.journal()] == ["init", "rollover_begin"]


def test_rollover_steps_reach_the_running_service(
    served_ca: CaDirectory, registry: RegistryDirectory, tmp_path: Path
) -> None:
    ca = served_ca
    g1, g2 = ca.pem(1, "root"), ca.pem(2, "root")
    [g1_root] = certificates(g1)
    assert trust_bundle(ca, g1).roots == (g1_root,)

    succeeded(ca.run("rollover", "begin"))
    [g2_root], [cross] = certificates(g2), certificates(ca.pem(2, "cross"))

    def introduced() -> bool:
        bundle = trust_bundle(ca, g1)
        return bundle.roots == (g1_root, g2_root) and bundle.cross_certificates == (cross,)

    wait_until(introduced, "the trust bundle listing the new root after `rollover begin`")

    with pytest.raises(pki.CaUnavailable):
        trust_bundle(ca, g2)  # not yet: G1 still issues, the service's own certificate too
    succeeded(ca.run("rollover", "switch"))

    def switched() -> bool:
        try:
            # The service's own TLS certificate comes from the issuing generation.
            trust_bundle(ca, g2)
        except pki.CaUnavailable:
            return False
        return True

    wait_until(switched, "the service under the new generation after `rollover switch`")
    # What it issues now comes from G2 too.
    gateway = gateway_files(tmp_path / "ss1", SS1, ca, g1, g2, anchor=registry.anchor)
    # What the CA issues is all this test is about: the registry is not running, so enrollment
    # writes the certificates and then reports that registering them failed (for registering
    # after a switch, see test_enroll_after_a_root_switch_registers_the_certificate).
    assert refused(enroll(gateway, ca.token(SS1))).code == "registration_failed"
    verify_chain(g2, gateway.certificate)
    assert certificates(gateway.certificate)[1:] == certificates(ca.pem(2, "issuing"))

    succeeded(ca.run("rollover", "retire"))
    wait_until(
        lambda: trust_bundle(ca, g2).roots == (g2_root,),
        "the trust bundle without the old root after `rollover retire`",
    )
    bundle = trust_bundle(ca, g2)
    assert [number for number, _ in bundle.issuing] == [2]


# --- keys in a PKCS#11 token (SoftHSM2) ---------------------------------------------------------


def test_pkcs11_init_keeps_ca_keys_in_the_token(
    hsm_ca: CaDirectory, token_keys: dict[str, bytes]
) -> None:
    ca = hsm_ca
    # Only the CA service's own TLS key is a file; no CA key is.
    assert [p.relative_to(ca.path) for p in ca.path.rglob("*.key")] == [Path("service/tls.key")]
    settings = tomllib.loads((ca.path / "ca.toml").read_text())["keys"]
    assert settings == {
        "storage": "pkcs11",
        "pkcs11_module": str(SOFTHSM_MODULE),
        "pkcs11_token": TOKEN_LABEL,
    }
    root, issuing, responder = ca.pem(1, "root"), ca.pem(1, "issuing"), ca.pem(1, "ocsp")
    result = openssl("verify", "-CAfile", root, issuing)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{issuing}: OK"
    result = openssl("verify", "-CAfile", root, "-untrusted", issuing, responder)
    assert result.returncode == 0, result.stdout + result.stderr
    for label, pem in zip(CA_KEY_LABELS, (root, issuing, responder), strict=True):
        assert public_der(certificates(pem)[0]) == token_keys[label], label


def test_pkcs11_serve_enrolls_and_answers_ocsp(
    hsm_ca: CaDirectory, token_keys: dict[str, bytes], tmp_path: Path
) -> None:
    ca = hsm_ca
    registry = init_registry(ca, tmp_path / "registry")
    with serving(ca, tmp_path / "run"), serving_registry(registry, tmp_path / "run"):
        import_federation(registry)
        gateway = gateway_files(tmp_path / "ss1", SS1, ca, anchor=registry.anchor)
        succeeded(enroll(gateway, ca.token(SS1), ca.env))
        assert registry.certificates_of(SS1) == [fingerprint(gateway.certificate)]
        verify_chain(ca.pem(1, "root"), gateway.certificate)
        leaf, issuing = certificates(gateway.certificate)
        # Signed by the issuing CA, whose key is the token's.
        leaf.verify_directly_issued_by(issuing)
        assert public_der(issuing) == token_keys["G1-issuing"]

        answer = tmp_path / "ocsp.der"
        result = ca.ocsp(gateway.certificate, 1, "-respout", answer)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{gateway.certificate}: good" in result.stdout
    assert "Response verify OK" in result.stderr
    response = ocsp.load_der_ocsp_response(answer.read_bytes())
    assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert response.certificates == certificates(ca.pem(1, "ocsp"))
    responder_key = serialization.load_der_public_key(token_keys["G1-ocsp"])
    assert isinstance(responder_key, ec.EllipticCurvePublicKey)
    assert response.signature_hash_algorithm is not None
    responder_key.verify(
        response.signature,
        response.tbs_response_bytes,
        ec.ECDSA(response.signature_hash_algorithm),
    )


def test_pkcs11_wrong_pin_is_refused(hsm_ca: CaDirectory, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("0000\n")
    result = pintu(
        "ca",
        "token",
        "--dir",
        hsm_ca.path,
        "--server",
        SS1,
        "--passphrase-file",
        wrong,
        env=hsm_ca.env,
    )
    refusal = refused(result)
    assert refusal.code == "token_key_unavailable"
    assert "rejected the PIN" in refusal.message
    assert result.stdout == ""


def test_pkcs11_init_with_wrong_pin_is_refused(softhsm: SoftHsmStore, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("0000\n")
    refusal = refused(
        pintu(
            "ca",
            "init",
            "--dir",
            tmp_path / "ca",
            "--instance",
            INSTANCE,
            "--pkcs11-module",
            SOFTHSM_MODULE,
            "--pkcs11-token",
            TOKEN_LABEL,
            "--passphrase-file",
            wrong,
            env=environment(**softhsm.environment),
        )
    )
    assert refusal.code == "token_key_unavailable"
    assert "rejected the PIN" in refusal.message
    assert not (tmp_path / "ca").exists()


def test_pkcs11_pin_may_come_from_the_environment(hsm_ca: CaDirectory) -> None:
    env = {**hsm_ca.env, "PINTU_CA_PIN": PIN}
    token = succeeded(pintu("ca", "token", "--dir", hsm_ca.path, "--server", SS1, env=env))
    assert token.strip()


def test_pkcs11_without_pin_names_the_option_to_give_it(hsm_ca: CaDirectory) -> None:
    refusal = refused(pintu("ca", "token", "--dir", hsm_ca.path, "--server", SS1, env=hsm_ca.env))
    assert refusal.code == "config_invalid"
    # The PIN is given with --passphrase-file (there is no --pin-file option) or PINTU_CA_PIN.
    assert "--passphrase-file" in refusal.message
    assert "PINTU_CA_PIN" in refusal.message
