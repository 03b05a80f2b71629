"""Signed policy bundles: a security server takes one only when its member signed it with a
signing certificate of the federation and nothing was altered, and only after its policies
compile and pass their own cases; otherwise the previous policies keep deciding."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import io
import json
import logging
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

import pki
import policy
from policy import PolicyBundleInvalid, PolicyError, PolicyPoint, build_bundle, verify_bundle
from proto import MemberId, SecurityServerId
from tests.pintu.ca_support import pintu, refused, succeeded
from tests.policy.rego_support import birth_support

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)
POPREG = MemberId.parse("DEMO/GOV/POPREG")
TAX = MemberId.parse("DEMO/GOV/TAX")


@dataclass
class Signer:
    key: ec.EllipticCurvePrivateKey
    chain: list[x509.Certificate]


@dataclass
class Federation:
    ca: pki.CertificateAuthority

    @property
    def roots(self) -> list[x509.Certificate]:
        return [self.ca.certificate]

    def signer(self, member: MemberId = POPREG, *, now: dt.datetime = NOW) -> Signer:
        key = pki.generate_key()
        certificate = self.ca.issue_signing_certificate(
            member, key.public_key(), now=now, lifetime=DAY
        )
        return Signer(key, [certificate])


@pytest.fixture(scope="module")
def federation() -> Federation:
    # The root is older than the tests, so that certificates can be issued in the past.
    return Federation(
        pki.CertificateAuthority.create("DEMO", now=NOW - DAY * 10, lifetime=DAY * 30)
    )


def shipped_files() -> dict[str, bytes]:
    policies = policy.PolicySet.load(policy.DEFAULT_POLICIES)
    return {name: text.encode() for name, text in {**policies.modules, **policies.tests}.items()}


def bundle(
    federation: Federation, files: dict[str, bytes] | None = None, **signer: object
) -> bytes:
    who = federation.signer(**signer)  # type: ignore[arg-type]
    return build_bundle(
        shipped_files() if files is None else files, who.key, who.chain, revision="v1"
    )


def unpacked(blob: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}  # type: ignore[union-attr]


def packed(
    files: dict[str, bytes], extra: Callable[[tarfile.TarFile], None] | None = None
) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        if extra is not None:
            extra(archive)
    return out.getvalue()


def invalid(federation: Federation, blob: bytes, member: MemberId = POPREG) -> str:
    with pytest.raises(PolicyBundleInvalid) as error:
        verify_bundle(blob, federation.roots, member, now=NOW)
    assert error.value.code == "policy_bundle_invalid"
    return str(error.value)


# --- accepted ------------------------------------------------------------------------------------


def test_a_bundle_signed_by_the_member_verifies(federation: Federation) -> None:
    policies, revision = verify_bundle(bundle(federation), federation.roots, POPREG, now=NOW)
    assert revision == "v1"
    assert policies.revision == policy.PolicySet.load(policy.DEFAULT_POLICIES).revision
    # OPA's layout: the files, a manifest and the signatures.
    names = set(unpacked(bundle(federation)))
    assert {".manifest", ".signatures.json", "pintu/authz.rego", "pintu/authz_test.rego"} == names


def test_the_signature_is_a_compact_es256_jws_over_every_files_hash(federation: Federation) -> None:
    files = unpacked(bundle(federation))
    (token,) = json.loads(files[".signatures.json"])["signatures"]
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(header + "=="))
    listed = json.loads(base64.urlsafe_b64decode(payload + "=="))["files"]
    assert decoded["alg"] == "ES256"
    assert len(decoded["x5c"]) == 1
    assert {f["name"] for f in listed} == set(files) - {".signatures.json"}
    assert {f["algorithm"] for f in listed} == {"SHA-256"}
    assert len(base64.urlsafe_b64decode(signature + "==")) == 64


# --- refused -------------------------------------------------------------------------------------


def test_bundle_with_a_bad_signature(federation: Federation) -> None:
    files = unpacked(bundle(federation))
    token = json.loads(files[".signatures.json"])["signatures"][0]
    head, body, signature = token.split(".")
    flipped = bytearray(base64.urlsafe_b64decode(signature + "=="))
    flipped[5] ^= 1
    forged = f"{head}.{body}.{base64.urlsafe_b64encode(bytes(flipped)).rstrip(b'=').decode()}"
    files[".signatures.json"] = json.dumps({"signatures": [forged]}).encode()
    assert invalid(federation, packed(files)) == "the bundle's signature does not verify"


def test_a_file_altered_after_signing(federation: Federation) -> None:
    files = unpacked(bundle(federation))
    files["pintu/authz.rego"] += b"\nallow := true\n"
    assert invalid(federation, packed(files)) == "pintu/authz.rego was altered after signing"


def test_a_file_added_after_signing(federation: Federation) -> None:
    files = unpacked(bundle(federation))
    files["pintu/backdoor.rego"] = b"package pintu.backdoor\n"
    assert "not signed ['pintu/backdoor.rego']" in invalid(federation, packed(files))


def test_a_file_removed_after_signing(federation: Federation) -> None:
    files = unpacked(bundle(federation))
    del files["pintu/authz_test.rego"]
    assert "missing ['pintu/authz_test.rego']" in invalid(federation, packed(files))


def test_an_unsigned_bundle(federation: Federation) -> None:
    files = unpacked(bundle(federation))
    del files[".signatures.json"]
    assert "not signed" in invalid(federation, packed(files))


def test_a_bundle_signed_by_another_member(federation: Federation) -> None:
    message = invalid(federation, bundle(federation, member=TAX))
    assert message == "the bundle is signed by DEMO/GOV/TAX, not by DEMO/GOV/POPREG"


def test_a_bundle_signed_under_another_federation(federation: Federation) -> None:
    other = Federation(pki.CertificateAuthority.create("DEMO", now=NOW - DAY, lifetime=DAY * 30))
    message = invalid(federation, bundle(other))
    assert message == (
        "the signing certificate does not chain to the federation's roots (through CAs valid now)"
    )


def test_a_member_certificate_cannot_vouch_for_another_member(federation: Federation) -> None:
    # TAX signs, with its own (non-CA) signing key, a certificate naming POPREG.
    tax = federation.signer(TAX)
    forger_key = pki.generate_key()
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=forged"))
        .issuer_name(tax.chain[0].subject)
        .public_key(forger_key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(POPREG.uri)]), False
        )
        .add_extension(x509.ExtendedKeyUsage([pki.DOCUMENT_SIGNING]), False)
        .sign(tax.key, hashes.SHA256())
    )
    blob = build_bundle(shipped_files(), forger_key, [forged, tax.chain[0]], revision="evil")
    assert invalid(federation, blob).startswith(
        "the signing certificate does not chain to the federation's roots"
    )


def test_a_bundle_signed_with_an_expired_certificate(federation: Federation) -> None:
    message = invalid(federation, bundle(federation, now=NOW - DAY * 3))
    assert message == "the signing certificate or its chain is not valid now"


def test_a_bundle_signed_with_an_authentication_certificate(federation: Federation) -> None:
    key = pki.generate_key()
    server = federation.ca.issue_server_certificate(
        SecurityServerId.parse("DEMO/GOV/POPREG/ss1"), key.public_key(), now=NOW, lifetime=DAY
    )
    blob = build_bundle(shipped_files(), key, [server], revision="v1")
    assert invalid(federation, blob) == "the bundle is not signed with a signing certificate"


@pytest.mark.parametrize(
    "name", ["../evil.rego", "/etc/evil.rego", "pintu/../../evil.rego", "run.sh", "a\\b.rego"]
)
def test_a_bundle_naming_a_file_outside_it(federation: Federation, name: str) -> None:
    files = unpacked(bundle(federation))
    files[name] = b"package x\n"
    assert "may not hold a file named" in invalid(federation, packed(files))


def test_a_bundle_with_a_link(federation: Federation) -> None:
    def link(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("pintu/link.rego")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        archive.addfile(info)

    blob = packed(unpacked(bundle(federation)), link)
    assert "not a file" in invalid(federation, blob)


@pytest.mark.parametrize("blob", [b"", b"not a tar", b"\x1f\x8b\x08garbage"])
def test_something_that_is_not_a_bundle(federation: Federation, blob: bytes) -> None:
    assert invalid(federation, blob).startswith("the bundle is not a gzipped tar")


def test_a_signature_file_that_is_not_a_jws(federation: Federation) -> None:
    files = unpacked(bundle(federation))
    files[".signatures.json"] = b'{"signatures": ["not.a-jws"]}'
    assert invalid(federation, packed(files)).startswith("the bundle's signature is malformed")


def test_a_p384_key_cannot_sign(federation: Federation) -> None:
    with pytest.raises(PolicyError, match="P-256"):
        build_bundle(shipped_files(), ec.generate_private_key(ec.SECP384R1()), [], revision="v")


# --- the decision point switches only to a good bundle --------------------------------------------


@pytest.fixture
def point() -> PolicyPoint:
    return PolicyPoint(policy.EmbeddedEngine(policy.PolicySet.load(policy.DEFAULT_POLICIES)))


async def test_a_good_bundle_switches_the_policies_at_once(
    federation: Federation, point: PolicyPoint
) -> None:
    files = shipped_files()
    # A new policy version: the civil registry is closed to everyone.
    files["pintu/authz.rego"] += b'\ndeny contains "registry_closed" if true\n'
    files["pintu/authz_test.rego"] = _expect_closed(files["pintu/authz_test.rego"])
    before = point.revision
    assert (await point.decide(birth_support())).allow is True
    revision = point.install(bundle(federation, files), federation.roots, POPREG, now=NOW)
    assert revision != before
    assert revision == point.revision
    decision = await point.decide(birth_support())
    assert (decision.allow, decision.revision) == (False, point.revision)
    assert "registry_closed" in decision.reasons


def _expect_closed(tests: bytes) -> bytes:
    """The shipped test file with its cases replaced by one: the base input is now denied."""
    text = tests.decode()
    start = text.index("cases := [")
    return (
        text[:start]
        + 'cases := [{"name": "closed", "input": base, '
        + '"expect": {"allow": false, "reasons": ["registry_closed"]}}]\n'
    ).encode()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("does not compile", "policy_error"),
        ("fails its tests", "policy_tests_failed"),
        ("is tampered with", "policy_bundle_invalid"),
    ],
)
async def test_a_bad_bundle_is_refused_and_the_old_policies_stay(
    federation: Federation,
    point: PolicyPoint,
    caplog: pytest.LogCaptureFixture,
    change: str,
    code: str,
) -> None:
    files = shipped_files()
    if change == "does not compile":
        files["pintu/authz.rego"] += b"\ndecision := {\n"
        blob = bundle(federation, files)
    elif change == "fails its tests":
        files["pintu/authz.rego"] += b'\ndeny contains "always" if true\n'
        blob = bundle(federation, files)
    else:
        unpacked_files = unpacked(bundle(federation, files))
        unpacked_files["pintu/authz.rego"] += b"\n"
        blob = packed(unpacked_files)
    before = point.revision
    with pytest.raises(PolicyError) as error:
        point.install(blob, federation.roots, POPREG, now=NOW)
    assert error.value.code == code
    assert point.revision == before
    assert (await point.decide(birth_support())).allow is True
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.pintu_event == {
        "event": "policy_bundle_refused",
        "code": code,
        "revision": before,
    }


# --- the commands ---------------------------------------------------------------------------------


@pytest.mark.integration
def test_pintu_policy_bundle_and_verify_bundle(federation: Federation, tmp_path: Path) -> None:
    who = federation.signer()
    pki.write_private(tmp_path / "signing.key", pki.key_pem(who.key))
    pki.write_public(tmp_path / "signing.pem", pki.certificate_pem(*who.chain))
    pki.write_public(tmp_path / "roots.pem", pki.certificate_pem(*federation.roots))
    out = tmp_path / "policy.tar.gz"
    made = succeeded(
        pintu(
            "policy",
            "bundle",
            "--dir",
            policy.DEFAULT_POLICIES,
            "--key",
            tmp_path / "signing.key",
            "--certificate",
            tmp_path / "signing.pem",
            "--revision",
            "2026-11-25",
            "--out",
            out,
        )
    )
    assert made.startswith(f"{out}: revision 2026-11-25, 2 files, ")
    checked = succeeded(
        pintu(
            "policy",
            "verify-bundle",
            out,
            "--roots",
            tmp_path / "roots.pem",
            "--member",
            "DEMO/GOV/POPREG",
        )
    )
    assert checked.startswith(f"{out}: signed by DEMO/GOV/POPREG, revision 2026-11-25")
    other = refused(
        pintu(
            "policy",
            "verify-bundle",
            out,
            "--roots",
            tmp_path / "roots.pem",
            "--member",
            "DEMO/GOV/TAX",
        )
    )
    assert other.code == "policy_bundle_invalid"
    assert other.message == "the bundle is signed by DEMO/GOV/POPREG, not by DEMO/GOV/TAX"


# --- hostile bundles fail as refusals, within bounded memory --------------------------------------


def test_a_small_bundle_that_unpacks_to_too_much(federation: Federation) -> None:
    # 64 MiB of zeros in a GNU long-name header: a few hundred KB compressed.
    size = 64 * 1024 * 1024
    header = tarfile.TarInfo("././@LongLink")
    header.type = tarfile.GNUTYPE_LONGNAME
    header.size = size
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9) as packed_stream:
        packed_stream.write(header.tobuf(format=tarfile.GNU_FORMAT))
        chunk = b"\0" * (1 << 20)
        for _ in range(size // len(chunk)):
            packed_stream.write(chunk)
    blob = raw.getvalue()
    assert len(blob) < 1024 * 1024
    assert "unpacks to more than" in invalid(federation, blob)


def test_a_deeply_nested_signature_file(federation: Federation) -> None:
    files = unpacked(bundle(federation))
    files[".signatures.json"] = b"[" * 100_000 + b"]" * 100_000
    assert invalid(federation, packed(files)).startswith("the bundle's signature is malformed")


async def test_whatever_a_bundle_causes_is_a_logged_refusal(
    federation: Federation,
    point: PolicyPoint,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(*arguments: object, **options: object) -> object:
        raise MemoryError

    monkeypatch.setattr(policy._point, "verify_bundle", explode)
    with pytest.raises(PolicyBundleInvalid, match="could not be read: MemoryError"):
        point.install(bundle(federation), federation.roots, POPREG, now=NOW)
    assert [r.pintu_event["event"] for r in caplog.records] == ["policy_bundle_refused"]
    assert (await point.decide(birth_support())).allow is True
