"""Private keys and certificates on disk, and the TLS material a gateway is built from."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from pki._errors import KeyMaterialError

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A new ECDSA P-256 key: fast to sign and verify, accepted by every TLS stack."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def sign(key: PrivateKey, data: bytes) -> bytes:
    """``data`` signed with ``key``: ECDSA or RSA (PKCS#1 v1.5) with SHA-256, or Ed25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def verify_signature(
    signer: x509.Certificate,
    signature: bytes,
    data: bytes,
    algorithm: hashes.HashAlgorithm | None = None,
) -> None:
    """Check ``signature`` over ``data`` with ``signer``'s key (ECDSA or RSA PKCS#1 v1.5 with
    ``algorithm``, SHA-256 by default; or Ed25519).

    Raises:
        InvalidSignature: it does not verify, or the key is of another kind.
    """
    key = signer.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(algorithm or hashes.SHA256()))
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(signature, data)
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), algorithm or hashes.SHA256())
    else:
        raise InvalidSignature


def issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s name and key signed ``certificate`` (nothing else is checked)."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(certificate: x509.Certificate, below: int) -> bool:
    """Whether ``certificate`` may issue a path with ``below`` CA certificates under it."""
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    limit = constraints.path_length
    return constraints.ca and usage.key_cert_sign and (limit is None or below <= limit)


def chains_to(
    chain: list[x509.Certificate], roots: list[x509.Certificate], now: dt.datetime
) -> bool:
    """Whether ``chain`` (the leaf first, then certificates that may lead to a root) is a path
    to one of ``roots``: every certificate valid at ``now``, the leaf no CA, each certificate
    issued by the next, every issuer a CA allowed to issue (basic constraints, key usage, path
    length), the last one used issued by a root valid at ``now``. The chain may go on past the
    certificate a root issued (a cross-certificate during a root rollover)."""
    if not chain:
        return False
    leaf = chain[0]
    try:
        if leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        pass
    current = leaf
    for depth, following in enumerate([*chain[1:], None]):
        if not current.not_valid_before_utc <= now <= current.not_valid_after_utc:
            return False
        if any(
            issued_by(current, root)
            and root.not_valid_before_utc <= now <= root.not_valid_after_utc
            for root in roots
        ):
            return True
        if following is None or not issued_by(current, following):
            return False
        # ``following`` issues ``current``: it must be a CA with ``depth`` CAs under it.
        if not _is_ca(following, depth):
            return False
        current = following
    return False


def certificate_pem(*certificates: x509.Certificate) -> bytes:
    """Concatenated PEM of the given certificates."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    # mkstemp creates a new, uniquely named file (O_EXCL, mode 0600): no stale or planted
    # scratch file and no symbolic link can redirect or widen what is written.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(scratch, mode)
        os.replace(scratch, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(scratch)
        raise


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only, replacing any previous file atomically."""
    _write_atomically(path, data, 0o600)


def write_public(path: Path, data: bytes) -> None:
    """Write a public file (certificates), replacing any previous file atomically."""
    _write_atomically(path, data, 0o644)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise KeyMaterialError(f"{what} {path}: {error.strerror}") from error


def load_private_key(path: Path, passphrase: bytes | None = None) -> PrivateKey:
    """Load a PEM private key.

    Raises:
        KeyMaterialError: unreadable, wrong passphrase, or not an EC, Ed25519 or RSA key.
    """
    try:
        key = serialization.load_pem_private_key(_read(path, "private key"), passphrase)
    except (ValueError, TypeError) as error:
        raise KeyMaterialError(f"private key {path}: {error}") from error
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    ):
        raise KeyMaterialError(f"private key {path}: unsupported key type {type(key).__name__}")
    return key


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Load one or more PEM certificates.

    Raises:
        KeyMaterialError: unreadable or no certificate in the file.
    """
    try:
        certificates = x509.load_pem_x509_certificates(_read(path, "certificate"))
    except ValueError as error:
        raise KeyMaterialError(f"certificate {path}: {error}") from error
    return certificates


@dataclass(frozen=True, slots=True)
class TlsIdentity:
    """What a TLS endpoint presents and trusts, as PEM bytes ready for gRPC credentials.

    ``certificate_chain`` is the leaf first, then any intermediates; ``trust_anchors`` are the
    roots the peer's chain must end in.
    """

    private_key: bytes
    certificate_chain: bytes
    trust_anchors: bytes

    @staticmethod
    def load(key: Path, certificate: Path, trust_anchors: Path) -> TlsIdentity:
        """Load and check the three files: the key must match the leaf certificate.

        Raises:
            KeyMaterialError: a file is unreadable or the key does not match the certificate.
        """
        return TlsIdentity.build(
            load_private_key(key), load_certificates(certificate), load_certificates(trust_anchors)
        )

    @staticmethod
    def build(
        private_key: PrivateKey,
        chain: list[x509.Certificate],
        trust_anchors: list[x509.Certificate],
    ) -> TlsIdentity:
        """An identity from loaded parts.

        Raises:
            KeyMaterialError: the key does not match the chain's first certificate.
        """
        if chain[0].public_key() != private_key.public_key():
            raise KeyMaterialError("the private key does not match the certificate")
        return TlsIdentity(
            key_pem(private_key), certificate_pem(*chain), certificate_pem(*trust_anchors)
        )

    @property
    def leaf(self) -> x509.Certificate:
        """The first certificate of the chain."""
        return x509.load_pem_x509_certificate(self.certificate_chain)
