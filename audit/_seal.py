"""Signed exchanges: each side's signature over what it sent, so that either side can later
prove what was asked and what was answered.

* The consumer's security server seals the **request**: a *request statement* (who asked whom
  for what, for which purpose and citizen — as a pseudonym — and the digest of the request
  messages) signed with its member's document-signing key.
* The provider's security server checks that seal against what it received and seals the
  **response**: a *response statement* bound to the request statement's hash, with the status
  and the digest of the response messages. The consumer's security server checks it.

Messages are digested as they pass (a running SHA-256 over each message's length and bytes), so
streams of any length are covered without being held: a seal is made at the end.

A seal is a compact JWS (ES256) whose protected header names the signing certificate by its
SHA-256 thumbprint (``x5t#S256``); the certificate chain travels beside it (``pintu.v1.Seal``)
and is checked once per chain, then cached.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from pki import DOCUMENT_SIGNING, PkiError, b64url, certificate_identity, chains_to, unb64url
from proto import PartyId
from proto.pintu.v1 import exchange_pb2

REQUEST_STATEMENT = "pintu.exchange.request"
RESPONSE_STATEMENT = "pintu.exchange.response"
SEAL_TYPE = "pintu-seal+jws"
_CHAIN_CACHE = 256


class SealError(Exception):
    """Root of the seal errors; ``code`` is stable."""

    code = "signature_invalid"


class SealMissing(SealError):
    """A seal that must be there is not."""

    code = "signature_missing"


class SealInvalid(SealError):
    """A seal that does not verify, is not the signer's, or is not over what was exchanged."""

    code = "signature_invalid"


class Digest:
    """The running digest of one direction's messages: SHA-256 over, for each message, its
    length (8 bytes, big-endian) and its bytes."""

    __slots__ = ("_hash", "messages", "size")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.messages = 0
        self.size = 0

    def update(self, message: bytes) -> None:
        """Add one message."""
        self._hash.update(len(message).to_bytes(8, "big"))
        self._hash.update(message)
        self.messages += 1
        self.size += len(message)

    def hexdigest(self) -> str:
        """The digest of the messages so far."""
        return self._hash.hexdigest()


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def request_statement(
    *,
    message_id: str,
    client: str,
    consumer_server: str,
    provider: str,
    method: str,
    purpose: str,
    subject: str,
    created_ns: int,
    digest: Digest,
    user: str = "",
    issue: str = "",
) -> bytes:
    """The request statement both sides compute (``subject``: the citizen's pseudonym;
    ``user`` and ``issue``: the acting person and case reference, as the backend receives
    them)."""
    return _canonical(
        {
            "type": REQUEST_STATEMENT,
            "message_id": message_id,
            "client": client,
            "consumer_server": consumer_server,
            "provider": provider,
            "method": method,
            "purpose": purpose,
            "subject": subject,
            "user": user,
            "issue": issue,
            "created_ns": created_ns,
            "digest": digest.hexdigest(),
            "messages": digest.messages,
            "bytes": digest.size,
        }
    )


def response_statement(*, request: bytes, message_id: str, status: str, digest: Digest) -> bytes:
    """The response statement, bound to the request statement ``request``."""
    return _canonical(
        {
            "type": RESPONSE_STATEMENT,
            "message_id": message_id,
            "request": hashlib.sha256(request).hexdigest(),
            "status": status,
            "digest": digest.hexdigest(),
            "messages": digest.messages,
            "bytes": digest.size,
        }
    )


@dataclass(frozen=True, slots=True)
class SealParts:
    """A seal taken apart: the token, the statement it signs and the certificates."""

    token: str
    statement: bytes
    chain: tuple[bytes, ...]

    @staticmethod
    def decode(raw: bytes) -> SealParts:
        """A serialized ``pintu.v1.Seal`` (SealInvalid: not one)."""
        seal = exchange_pb2.Seal()
        try:
            seal.ParseFromString(raw)
            statement = unb64url(seal.token.split(".")[1])
        except Exception as error:  # DecodeError, ValueError, IndexError: all malformed
            raise SealInvalid(f"the seal is malformed: {type(error).__name__}") from None
        return SealParts(seal.token, statement, tuple(seal.chain))

    def encode(self) -> bytes:
        """The serialized ``pintu.v1.Seal``."""
        return exchange_pb2.Seal(token=self.token, chain=self.chain).SerializeToString()


class Sealer:
    """Signs statements with a member's document-signing key."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, chain: Sequence[x509.Certificate]) -> None:
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise SealError("exchanges are sealed with P-256 keys (ES256)")
        self._key = key
        self.chain = tuple(c.public_bytes(serialization.Encoding.DER) for c in chain)
        thumbprint = b64url(hashlib.sha256(self.chain[0]).digest())
        header = {"alg": "ES256", "typ": SEAL_TYPE, "x5t#S256": thumbprint}
        self._header = b64url(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())

    def seal(self, statement: bytes) -> SealParts:
        """``statement`` signed."""
        signing_input = f"{self._header}.{b64url(statement)}"
        r, s = decode_dss_signature(
            self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        token = f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
        return SealParts(token, statement, self.chain)


@dataclass(frozen=True, slots=True)
class _Signer:
    key: ec.EllipticCurvePublicKey
    party: PartyId
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    thumbprint: str


class SealVerifier:
    """Checks seals against the federation's roots (see :meth:`verify`)."""

    def __init__(
        self,
        trust_anchors: Callable[[], Sequence[x509.Certificate]],
        revoked: Callable[[int], bool] = lambda serial: False,
    ) -> None:
        self._anchors = trust_anchors
        self._revoked = revoked
        self._roots: Sequence[x509.Certificate] | None = None
        self._signers: dict[tuple[bytes, ...], _Signer] = {}

    def verify(
        self, parts: SealParts, *, statement: bytes, signer: PartyId, now: dt.datetime
    ) -> int:
        """Check that ``parts`` signs exactly ``statement``, with a document-signing certificate
        of ``signer`` valid at ``now`` that chains to the roots; the certificate's serial.

        Raises:
            SealInvalid: it does not.
        """
        if parts.statement != statement:
            raise SealInvalid(
                "the seal is over other content than was exchanged"
                f" ({_difference(parts.statement, statement)})"
            )
        known = self._signer(parts.chain, now)
        if not known.not_before <= now <= known.not_after:
            raise SealInvalid("the sealing certificate or its chain is not valid now")
        if known.party != signer:
            raise SealInvalid(f"the seal is by {known.party}, not by {signer}")
        if self._revoked(known.serial):
            raise SealInvalid(f"the sealing certificate {known.serial} is revoked")
        check_token(parts.token, known.key, known.thumbprint)
        return known.serial

    def _signer(self, chain: tuple[bytes, ...], now: dt.datetime) -> _Signer:
        roots = self._anchors()
        if roots is not self._roots:
            self._roots = roots
            self._signers.clear()
        known = self._signers.get(chain)
        if known is None:
            known = signer_of(chain, list(roots), now)
            if len(self._signers) >= _CHAIN_CACHE:
                self._signers.clear()
            self._signers[chain] = known
        return known


def signer_of(chain: Sequence[bytes], roots: list[x509.Certificate], now: dt.datetime) -> _Signer:
    """The signer a certificate chain stands for, checked at ``now`` (SealInvalid: none)."""
    try:
        certificates = [x509.load_der_x509_certificate(der) for der in chain]
    except ValueError:
        raise SealInvalid("the seal's certificate chain is unreadable") from None
    if not certificates:
        raise SealInvalid("the seal names no certificate")
    if not chains_to(certificates, roots, now):
        raise SealInvalid("the sealing certificate does not chain to the federation's roots")
    leaf = certificates[0]
    key = leaf.public_key()
    try:
        usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        party = certificate_identity(leaf)
    except (x509.ExtensionNotFound, PkiError):
        raise SealInvalid("the seal is not made with a signing certificate") from None
    if DOCUMENT_SIGNING not in usage or not isinstance(key, ec.EllipticCurvePublicKey):
        raise SealInvalid("the seal is not made with a signing certificate")
    # The chain is valid while every certificate in it is.
    return _Signer(
        key,
        party,
        leaf.serial_number,
        max(c.not_valid_before_utc for c in certificates),
        min(c.not_valid_after_utc for c in certificates),
        b64url(hashlib.sha256(chain[0]).digest()),
    )


def check_token(token: str, key: ec.EllipticCurvePublicKey, thumbprint: str) -> None:
    """Check a seal token's signature with ``key`` (SealInvalid: it does not verify)."""
    try:
        encoded_header, encoded_statement, encoded_signature = token.split(".")
        header = json.loads(unb64url(encoded_header))
        signature = unb64url(encoded_signature)
    except (ValueError, TypeError) as error:
        raise SealInvalid(f"the seal is malformed: {type(error).__name__}") from None
    if (
        not isinstance(header, dict)
        or header.get("alg") != "ES256"
        or header.get("typ") != SEAL_TYPE
        or header.get("x5t#S256") != thumbprint
        or len(signature) != 64
    ):
        raise SealInvalid("the seal's header does not name its certificate as ES256")
    try:
        key.verify(
            encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            ),
            f"{encoded_header}.{encoded_statement}".encode(),
            ec.ECDSA(hashes.SHA256()),
        )
    except InvalidSignature:
        raise SealInvalid("the seal's signature does not verify") from None


def _difference(sealed: bytes, seen: bytes) -> str:
    """Which fields of two statements differ (for the refusal's message)."""
    try:
        left, right = json.loads(sealed), json.loads(seen)
    except ValueError:
        return "unreadable statement"
    if not isinstance(left, dict):
        return "unreadable statement"
    fields = sorted(k for k in {*left, *right} if left.get(k) != right.get(k))
    return "differs in " + ", ".join(fields[:8])
