"""Documents signed by a member of the federation: compact JWS (ES256) with the signing
certificate and its chain in the ``x5c`` header.

Policy bundles and consent receipts are signed this way. A signature is accepted only when its
certificate is a document-signing certificate, valid now, that chains to the federation's roots
through CA certificates allowed to issue (:func:`chains_to`); the caller then checks whom the
certificate names (:attr:`VerifiedJws.signer`).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterable, Mapping
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

from pki._ca import DOCUMENT_SIGNING
from pki._errors import PkiError
from pki._identity import certificate_identity
from pki._keys import chains_to
from proto import PartyId


class JwsInvalid(PkiError):
    """A signed document that must not be trusted; the message says why."""

    code = "signature_invalid"


@dataclass(frozen=True)
class VerifiedJws:
    """A verified signature: its protected header, the signed payload and who signed it."""

    header: Mapping[str, Any]
    payload: bytes
    certificate: x509.Certificate
    signer: PartyId


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    """The bytes of base64url text without padding (ValueError: not base64url)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_jws(
    payload: bytes,
    key: ec.EllipticCurvePrivateKey,
    chain: Iterable[x509.Certificate],
    header: Mapping[str, Any] | None = None,
) -> str:
    """A compact JWS of ``payload`` signed with ``key`` (P-256), ``chain`` in ``x5c``.

    Raises:
        JwsInvalid: a key that is not P-256.
    """
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise JwsInvalid("documents are signed with P-256 keys (ES256)")
    protected = {
        **(header or {}),
        "alg": "ES256",
        "x5c": [
            base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain
        ],
    }
    signing_input = (
        b64url(json.dumps(protected, separators=(",", ":")).encode()) + "." + b64url(payload)
    )
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def verify_jws(
    token: str, roots: Iterable[x509.Certificate], *, now: dt.datetime, what: str = "the document"
) -> VerifiedJws:
    """``token`` verified against the federation's ``roots`` at ``now``; ``what`` names the
    signed thing in messages ("the bundle").

    Raises:
        JwsInvalid: malformed, not ES256, a certificate that is not a document-signing
            certificate valid now chaining to ``roots``, or a signature that does not verify.
    """
    try:
        encoded_header, encoded_payload, encoded_signature = token.split(".")
        header = json.loads(unb64url(encoded_header))
        payload = unb64url(encoded_payload)
        signature = unb64url(encoded_signature)
    except (ValueError, TypeError, AttributeError, RecursionError) as error:
        raise JwsInvalid(f"{what}'s signature is malformed: {type(error).__name__}") from None
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        raise JwsInvalid(f"{what}'s signature is not ES256")
    certificate = _verified_chain(header, list(roots), now)
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or len(signature) != 64:
        raise JwsInvalid(f"{what}'s signature does not fit an ES256 key")
    try:
        key.verify(
            encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            ),
            f"{encoded_header}.{encoded_payload}".encode(),
            ec.ECDSA(hashes.SHA256()),
        )
    except InvalidSignature:
        raise JwsInvalid(f"{what}'s signature does not verify") from None
    try:
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        signer = certificate_identity(certificate)
    except (x509.ExtensionNotFound, PkiError):
        raise JwsInvalid(f"{what} is not signed with a signing certificate") from None
    if DOCUMENT_SIGNING not in usage:
        raise JwsInvalid(f"{what} is not signed with a signing certificate")
    return VerifiedJws(header, payload, certificate, signer)


def _verified_chain(
    header: Mapping[str, Any], roots: list[x509.Certificate], now: dt.datetime
) -> x509.Certificate:
    try:
        chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["x5c"]]
    except (KeyError, TypeError, ValueError) as error:
        raise JwsInvalid(f"the signature names no usable certificate: {error}") from None
    if not chain:
        raise JwsInvalid("the signature names no certificate")
    if not chain[0].not_valid_before_utc <= now <= chain[0].not_valid_after_utc:
        raise JwsInvalid("the signing certificate or its chain is not valid now")
    if not chains_to(chain, roots, now):
        raise JwsInvalid(
            "the signing certificate does not chain to the federation's roots"
            " (through CAs valid now)"
        )
    return chain[0]
