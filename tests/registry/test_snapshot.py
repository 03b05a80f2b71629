"""Signed snapshots: what a security server accepts, and one test per reason it refuses one."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

import pki
from proto import RegistryId, SecurityServerId
from proto.pintu.v1 import registry_pb2
from registry import (
    ConfigurationExpired,
    ConfigurationMalformed,
    ConfigurationRollback,
    ConfigurationSignatureInvalid,
    ConfigurationSignerUntrusted,
    GlobalConfiguration,
    GlobalConfigurationInvalid,
    RegistryError,
    SnapshotVerifier,
    VerifiedSnapshot,
    accept,
    apply_changes,
    from_content,
    sign_snapshot,
    snapshot_tag,
    state_hash,
    to_content,
)
from tests.registry.support import (
    BANK,
    INSTANCE,
    LEAF_LIFETIME,
    POPREG_SS1,
    TAX_SS1,
    VALIDITY,
    Federation,
    put_member,
    sample_registry,
)


def sample() -> GlobalConfiguration:
    """Every kind of part, descriptor files included."""
    return apply_changes(GlobalConfiguration.build(INSTANCE, [], [], []), sample_registry())


def content(
    federation: Federation,
    version: int = 1,
    *,
    configuration: GlobalConfiguration | None = None,
    built_at: dt.datetime | None = None,
    validity: dt.timedelta = VALIDITY,
) -> registry_pb2.GlobalConfigurationContent:
    built = federation.now if built_at is None else built_at
    return to_content(
        sample() if configuration is None else configuration,
        version=version,
        built_at=built,
        expires_at=built + validity,
    )


def signed(
    federation: Federation,
    version: int = 1,
    *,
    key: pki.PrivateKey | None = None,
    chain: list[x509.Certificate] | None = None,
    **options: object,
) -> bytes:
    """A snapshot signed with the federation's configuration-signing key (or ``key``)."""
    return sign_snapshot(
        content(federation, version, **options),  # type: ignore[arg-type]
        federation.signing_key if key is None else key,
        [federation.signing_certificate] if chain is None else chain,
    )


def verify(federation: Federation, blob: bytes, at: dt.datetime | None = None) -> VerifiedSnapshot:
    return federation.verifier().verify(blob, now=federation.now if at is None else at)


def refused(
    error: type[RegistryError], federation: Federation, blob: bytes, at: dt.datetime | None = None
) -> str:
    """Verify ``blob``, which must be refused with exactly ``error``; the message."""
    with pytest.raises(GlobalConfigurationInvalid) as info:
        verify(federation, blob, at)
    assert type(info.value) is error
    assert info.value.code == error.code
    return str(info.value)


def envelope(blob: bytes) -> registry_pb2.SignedGlobalConfiguration:
    return registry_pb2.SignedGlobalConfiguration.FromString(blob)


def signer(
    federation: Federation,
    *,
    ca: pki.CertificateAuthority | None = None,
    registry: str = INSTANCE,
    now: dt.datetime | None = None,
    lifetime: dt.timedelta = LEAF_LIFETIME,
) -> tuple[pki.PrivateKey, x509.Certificate]:
    """A new configuration-signing key and certificate."""
    key = pki.generate_key()
    certificate = (ca or federation.ca).issue_configuration_signing_certificate(
        RegistryId(registry),
        key.public_key(),
        now=federation.now if now is None else now,
        lifetime=lifetime,
    )
    return key, certificate


# --- accepted -----------------------------------------------------------------------------------


def test_a_good_snapshot_verifies(federation: Federation) -> None:
    blob = signed(federation, 7)
    snapshot = verify(federation, blob)
    assert snapshot.blob == blob
    assert snapshot.tag == snapshot_tag(blob) == hashlib.sha256(blob).hexdigest()
    configuration = snapshot.configuration
    assert configuration.version == 7
    assert configuration.built_at == federation.now
    assert configuration.expires_at == federation.now + VALIDITY
    expected = sample()
    assert configuration.to_json() == expected.to_json()
    assert dict(configuration.services) == dict(expected.services)
    assert set(configuration.descriptor_files) == set(expected.descriptor_files)


def test_content_round_trips(federation: Federation) -> None:
    expected = sample()
    configuration = from_content(content(federation, 3))
    assert dict(configuration.members) == dict(expected.members)
    assert dict(configuration.security_servers) == dict(expected.security_servers)
    assert dict(configuration.services) == dict(expected.services)
    assert dict(configuration.groups) == dict(expected.groups)
    assert configuration.version == 3


def test_signing_is_deterministic(federation: Federation) -> None:
    # The same content gives the same content bytes, so the signature covers exactly them.
    first, second = envelope(signed(federation)), envelope(signed(federation))
    assert first.content == second.content
    assert first.signer_chain == second.signer_chain


def test_a_snapshot_signed_under_an_issuing_ca_verifies(federation: Federation) -> None:
    issuing_key = pki.generate_key()
    issuing = pki.CertificateAuthority(
        issuing_key,
        federation.ca.issue_intermediate(
            "issuing CA", issuing_key.public_key(), now=federation.now, lifetime=LEAF_LIFETIME
        ),
    )
    key, certificate = signer(federation, ca=issuing)
    blob = signed(federation, key=key, chain=[certificate, issuing.certificate])
    assert verify(federation, blob).configuration.version == 1
    # Without the issuing CA, the signer does not chain to the root.
    refused(
        ConfigurationSignerUntrusted, federation, signed(federation, key=key, chain=[certificate])
    )


def test_a_snapshot_signed_by_a_newer_signing_certificate_verifies(
    federation: Federation,
) -> None:
    # Key rotation: a second certificate, issued later, for a new key.
    later = federation.now + dt.timedelta(days=30)
    key, certificate = signer(federation, now=later)
    old = verify(federation, signed(federation, 1))
    new = verify(
        federation, signed(federation, 2, key=key, chain=[certificate], built_at=later), later
    )
    assert new.configuration.version == 2
    assert accept(old, new) is True
    # Both certificates are good during the rotation.
    assert verify(federation, signed(federation, 3, built_at=later), later)


def test_a_member_certificate_cannot_vouch_for_a_configuration_signer(
    federation: Federation,
) -> None:
    # A member's signing certificate is no CA: a "configuration-signing certificate" it signed,
    # sent with it and the root's own chain, must not be trusted.
    member_key = pki.generate_key()
    member = federation.ca.issue_signing_certificate(
        BANK, member_key.public_key(), now=federation.now, lifetime=LEAF_LIFETIME
    )
    forger_key = pki.generate_key()
    forged = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=forged registry"))
        .issuer_name(member.subject)
        .public_key(forger_key.public_key())
        .serial_number(1)
        .not_valid_before(federation.now - dt.timedelta(hours=1))
        .not_valid_after(federation.now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(RegistryId(INSTANCE).uri)]),
            False,
        )
        .add_extension(x509.ExtendedKeyUsage([pki.CONFIGURATION_SIGNING]), False)
        .sign(member_key, hashes.SHA256())
    )
    blob = signed(federation, key=forger_key, chain=[forged, member])
    assert "may not issue certificates" in refused(ConfigurationSignerUntrusted, federation, blob)


def test_a_snapshot_is_good_until_just_before_it_expires(federation: Federation) -> None:
    blob = signed(federation)
    moment = federation.now + VALIDITY - dt.timedelta(seconds=1)
    assert verify(federation, blob, moment).configuration.version == 1


# --- refused: signature and signer ---------------------------------------------------------------


def test_tampered_content(federation: Federation) -> None:
    signed_envelope = envelope(signed(federation))
    changed = bytearray(signed_envelope.content)
    position = changed.index(b"Population Registry")
    changed[position] ^= 0x20  # "population Registry": still a valid message
    signed_envelope.content = bytes(changed)
    message = refused(
        ConfigurationSignatureInvalid, federation, signed_envelope.SerializeToString()
    )
    assert "signature" in message


def test_tampered_signature(federation: Federation) -> None:
    signed_envelope = envelope(signed(federation))
    signature = bytearray(signed_envelope.signature)
    signature[-1] ^= 0x01
    signed_envelope.signature = bytes(signature)
    refused(ConfigurationSignatureInvalid, federation, signed_envelope.SerializeToString())


def test_content_from_another_snapshot(federation: Federation) -> None:
    first, second = envelope(signed(federation, 1)), envelope(signed(federation, 2))
    first.content = second.content
    refused(ConfigurationSignatureInvalid, federation, first.SerializeToString())


def test_signer_certified_by_a_foreign_ca(federation: Federation) -> None:
    # Same instance name, same kind of certificate, but not the federation's root.
    foreign = pki.CertificateAuthority.create(
        INSTANCE, now=federation.now, lifetime=dt.timedelta(days=365)
    )
    key, certificate = signer(federation, ca=foreign)
    message = refused(
        ConfigurationSignerUntrusted, federation, signed(federation, key=key, chain=[certificate])
    )
    assert "trusted root" in message


def test_foreign_root_sent_along_in_the_chain(federation: Federation) -> None:
    foreign = pki.CertificateAuthority.create(
        INSTANCE, now=federation.now, lifetime=dt.timedelta(days=365)
    )
    key, certificate = signer(federation, ca=foreign)
    blob = signed(federation, key=key, chain=[certificate, foreign.certificate])
    refused(ConfigurationSignerUntrusted, federation, blob)


def test_signer_certificate_expired(federation: Federation) -> None:
    issued = federation.now - dt.timedelta(days=2)
    key, certificate = signer(federation, now=issued, lifetime=dt.timedelta(days=1))
    blob = signed(federation, key=key, chain=[certificate])
    message = refused(ConfigurationSignerUntrusted, federation, blob)
    assert "expired" in message


def test_signer_certificate_not_yet_valid(federation: Federation) -> None:
    key, certificate = signer(federation, now=federation.now + dt.timedelta(days=1))
    refused(
        ConfigurationSignerUntrusted, federation, signed(federation, key=key, chain=[certificate])
    )


def test_signer_for_another_instances_registry(federation: Federation) -> None:
    key, certificate = signer(federation, registry="OTHER")
    message = refused(
        ConfigurationSignerUntrusted, federation, signed(federation, key=key, chain=[certificate])
    )
    assert f"{INSTANCE}'s registry" in message


def test_signer_without_the_configuration_signing_usage(federation: Federation) -> None:
    # A security server's authentication certificate: chains to the root, wrong usage.
    key = pki.generate_key()
    certificate = federation.ca.issue_server_certificate(
        POPREG_SS1, key.public_key(), now=federation.now, lifetime=LEAF_LIFETIME
    )
    refused(
        ConfigurationSignerUntrusted, federation, signed(federation, key=key, chain=[certificate])
    )


def test_signer_with_a_document_signing_certificate(federation: Federation) -> None:
    key = pki.generate_key()
    certificate = federation.ca.issue_signing_certificate(
        BANK, key.public_key(), now=federation.now, lifetime=LEAF_LIFETIME
    )
    refused(
        ConfigurationSignerUntrusted, federation, signed(federation, key=key, chain=[certificate])
    )


def test_signer_without_extended_key_usage(federation: Federation) -> None:
    key = pki.generate_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "registry")]))
        .issuer_name(federation.ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(federation.now - dt.timedelta(hours=1))
        .not_valid_after(federation.now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(RegistryId(INSTANCE).uri)]),
            critical=False,
        )
        .sign(federation.ca.key, hashes.SHA256())
    )
    refused(
        ConfigurationSignerUntrusted, federation, signed(federation, key=key, chain=[certificate])
    )


def test_snapshot_without_a_signer(federation: Federation) -> None:
    refused(ConfigurationSignerUntrusted, federation, signed(federation, chain=[]))


def test_signature_by_another_key_than_the_certificates(federation: Federation) -> None:
    key, _ = signer(federation)
    refused(ConfigurationSignatureInvalid, federation, signed(federation, key=key))


# --- refused: time ------------------------------------------------------------------------------


def test_expired_snapshot(federation: Federation) -> None:
    blob = signed(federation, 4)
    message = refused(ConfigurationExpired, federation, blob, federation.now + VALIDITY)
    assert "version 4" in message


def test_snapshot_that_expired_before_it_was_verified(federation: Federation) -> None:
    blob = signed(federation, built_at=federation.now - dt.timedelta(hours=2))
    refused(ConfigurationExpired, federation, blob)


# --- refused: malformed -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "blob", [b"\xff\xff\xff\xff", b"\x0a\x05abc"], ids=["not_protobuf", "truncated"]
)
def test_bytes_that_are_no_snapshot(federation: Federation, blob: bytes) -> None:
    refused(ConfigurationMalformed, federation, blob)


def test_signer_chain_that_is_not_a_certificate(federation: Federation) -> None:
    signed_envelope = envelope(signed(federation))
    signed_envelope.signer_chain[0] = b"not a certificate"
    refused(ConfigurationMalformed, federation, signed_envelope.SerializeToString())


def test_signed_content_that_is_not_a_content_message(federation: Federation) -> None:
    data = b"\xff\xff\xff"
    signing_key = federation.signing_key
    assert isinstance(signing_key, ec.EllipticCurvePrivateKey)
    blob = registry_pb2.SignedGlobalConfiguration(
        content=data,
        signature=signing_key.sign(data, ec.ECDSA(hashes.SHA256())),
        signer_chain=[federation.signing_certificate.public_bytes(serialization.Encoding.DER)],
    ).SerializeToString()
    refused(ConfigurationMalformed, federation, blob)


def sign_content(federation: Federation, message: registry_pb2.GlobalConfigurationContent) -> bytes:
    return sign_snapshot(message, federation.signing_key, [federation.signing_certificate])


def test_unknown_format(federation: Federation) -> None:
    message = content(federation)
    message.format = 2
    assert "format 2" in refused(
        ConfigurationMalformed, federation, sign_content(federation, message)
    )


def test_snapshot_for_another_instance(federation: Federation) -> None:
    message = content(federation)
    message.instance = "OTHER"
    assert "OTHER" in refused(ConfigurationMalformed, federation, sign_content(federation, message))


def test_snapshot_verified_for_another_instance(federation: Federation) -> None:
    verifier = SnapshotVerifier("OTHER", federation.roots)
    with pytest.raises(ConfigurationSignerUntrusted):
        verifier.verify(signed(federation), now=federation.now)


@pytest.mark.parametrize("missing", ["built_at", "expires_at"])
def test_snapshot_without_a_validity_window(federation: Federation, missing: str) -> None:
    message = content(federation)
    message.ClearField(missing)  # type: ignore[arg-type]
    refused(ConfigurationMalformed, federation, sign_content(federation, message))


@pytest.mark.parametrize("state", [b"", b"\x00" * 31, b"\x00" * 33], ids=["none", "31", "33"])
def test_snapshot_without_a_state_hash(federation: Federation, state: bytes) -> None:
    message = content(federation)
    message.state_sha256 = state
    assert "state hash" in refused(
        ConfigurationMalformed, federation, sign_content(federation, message)
    )


def test_the_state_hash_names_the_state_not_the_version_or_times(
    federation: Federation,
) -> None:
    first = content(federation, 5)
    later = content(federation, 9, built_at=federation.now + dt.timedelta(hours=2))
    changed = content(
        federation, 5, configuration=apply_changes(sample(), [put_member(BANK, "Another")])
    )
    assert first.state_sha256 == later.state_sha256 == state_hash(later)
    assert changed.state_sha256 != first.state_sha256
    assert len(first.state_sha256) == 32


def test_snapshot_with_inconsistent_content(federation: Federation) -> None:
    # A service of a provider that is not registered.
    message = content(federation)
    del message.members[0]
    assert "inconsistent" in refused(
        ConfigurationMalformed, federation, sign_content(federation, message)
    )


def test_snapshot_with_a_malformed_identifier(federation: Federation) -> None:
    message = content(federation)
    message.members[2].id.member_code = "BA NK"
    refused(ConfigurationMalformed, federation, sign_content(federation, message))


def test_snapshot_with_a_malformed_subsystem_code_of_a_server(federation: Federation) -> None:
    message = content(federation)
    server = next(
        s for s in message.security_servers if SecurityServerId.from_proto(s.id) == TAX_SS1
    )
    server.subsystems.append("not a code")
    refused(ConfigurationMalformed, federation, sign_content(federation, message))


# --- accepting a verified snapshot --------------------------------------------------------------


def test_accept_anything_when_nothing_is_in_use(federation: Federation) -> None:
    assert accept(None, verify(federation, signed(federation, 1))) is True


def test_accept_a_newer_version(federation: Federation) -> None:
    current = verify(federation, signed(federation, 1))
    assert accept(current, verify(federation, signed(federation, 2)))


def test_the_snapshot_in_use_is_not_taken_again(federation: Federation) -> None:
    current = verify(federation, signed(federation, 1))
    assert accept(current, current) is False


def test_rollback_to_an_older_version(federation: Federation) -> None:
    older = verify(federation, signed(federation, 4))
    current = verify(federation, signed(federation, 5))
    with pytest.raises(ConfigurationRollback) as info:
        accept(current, older)
    assert info.value.code == "configuration_rollback"
    assert "version 4" in str(info.value)


def test_same_version_with_other_content(federation: Federation) -> None:
    current = verify(federation, signed(federation, 5))
    changed = apply_changes(sample(), [put_member(BANK, "Another Bank")])
    other = verify(federation, signed(federation, 5, configuration=changed))
    with pytest.raises(ConfigurationRollback) as info:
        accept(current, other)
    assert info.value.code == "configuration_rollback"


def test_same_version_re_signed_with_a_later_expiry(federation: Federation) -> None:
    current = verify(federation, signed(federation, 5))
    later = federation.now + dt.timedelta(minutes=30)
    resigned = verify(federation, signed(federation, 5, built_at=later))
    assert accept(current, resigned) is True


def test_same_version_re_signed_with_an_earlier_expiry(federation: Federation) -> None:
    current = verify(federation, signed(federation, 5))
    earlier = verify(federation, signed(federation, 5, validity=VALIDITY / 2))
    assert accept(current, earlier) is False


def test_errors_have_stable_codes() -> None:
    assert {
        error.code
        for error in (
            ConfigurationMalformed,
            ConfigurationSignatureInvalid,
            ConfigurationSignerUntrusted,
            ConfigurationExpired,
            ConfigurationRollback,
        )
    } == {
        "configuration_malformed",
        "configuration_signature_invalid",
        "configuration_signer_untrusted",
        "configuration_expired",
        "configuration_rollback",
    }
