"""Consent receipts: the consent service's signed statement of a consent's detail.

A receipt is a compact JWS (ES256, ``x5c``: the consent service's signing certificate and its
chain, see :func:`pki.sign_jws`) over::

    {"type": "pintu.consent.receipt", "version": 1, "consent_id": "...",
     "issued_at": "2026-11-25T10:00:00Z", "detail": {...ConsentDetail.to_json()...}}

Anyone holding the federation's root certificates can verify one offline
(``pintu consent verify``): the signature, and that the certificate was a document-signing
certificate of the federation when the receipt was issued (so a receipt outlives its signing
certificate). A receipt proves what was consented to; the consent's current status is the
consent service's to tell (a receipt says nothing of a later revocation).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from consent._errors import ConsentInvalid, ReceiptInvalid
from consent._model import ConsentDetail
from pki import JwsInvalid, sign_jws, unb64url, verify_jws
from proto import PartyId

RECEIPT_TYPE = "pintu.consent.receipt"
MAX_RECEIPT = 64 * 1024
# How far in the future a receipt's issue time may lie (clocks differ a little).
CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Receipt:
    """A verified receipt."""

    consent_id: str
    detail: ConsentDetail
    issued_at: dt.datetime
    signer: PartyId


def sign_receipt(
    consent_id: str,
    detail: ConsentDetail,
    issued_at: dt.datetime,
    key: ec.EllipticCurvePrivateKey,
    chain: Iterable[x509.Certificate],
) -> str:
    """The receipt of consent ``consent_id`` (see the module docstring)."""
    payload = {
        "type": RECEIPT_TYPE,
        "version": 1,
        "consent_id": consent_id,
        "issued_at": issued_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "detail": detail.to_json(),
    }
    return sign_jws(
        json.dumps(payload, sort_keys=True, separators=(",", ":")).encode(),
        key,
        chain,
        {"typ": "pintu-consent-receipt+jws"},
    )


def verify_receipt(
    token: str,
    roots: Iterable[x509.Certificate],
    *,
    signer: PartyId | None = None,
    now: dt.datetime | None = None,
) -> Receipt:
    """The receipt in ``token``, verified against the federation's ``roots``; with ``signer``,
    it must also have been signed by that party (without, any member's signing certificate
    passes: check :attr:`Receipt.signer`).

    Raises:
        ReceiptInvalid: malformed, altered, not signed by a signing certificate of the
            federation valid when it was issued, issued in the future (more than
            :data:`CLOCK_SKEW` after ``now``), or signed by another party.
    """
    token = token.strip()
    if len(token) > MAX_RECEIPT:
        raise ReceiptInvalid(f"a receipt is at most {MAX_RECEIPT} bytes")
    try:
        # The time the receipt claims is checked by the signature over it below.
        claimed = json.loads(unb64url(token.split(".")[1]))["issued_at"]
        issued_at = dt.datetime.fromisoformat(claimed)
        if issued_at.tzinfo is None:
            raise ValueError("issued_at has no time zone")
    except (IndexError, KeyError, TypeError, ValueError, RecursionError) as error:
        raise ReceiptInvalid(f"not a consent receipt: {type(error).__name__}") from None
    if issued_at > (now or dt.datetime.now(dt.UTC)) + CLOCK_SKEW:
        raise ReceiptInvalid(f"the receipt claims to be issued in the future ({claimed})")
    try:
        verified = verify_jws(token, roots, now=issued_at, what="the receipt")
    except JwsInvalid as error:
        raise ReceiptInvalid(str(error)) from None
    try:
        payload = json.loads(verified.payload)
        if payload.get("type") != RECEIPT_TYPE or payload.get("version") != 1:
            raise ReceiptInvalid("not a consent receipt (type or version)")
        consent_id = payload["consent_id"]
        if not isinstance(consent_id, str) or not consent_id:
            raise ReceiptInvalid("the receipt names no consent")
        detail = ConsentDetail.from_json(payload["detail"])
    except (KeyError, ValueError, AttributeError, ConsentInvalid) as error:
        raise ReceiptInvalid(f"the receipt's content is malformed: {error}") from None
    if signer is not None and verified.signer != signer:
        raise ReceiptInvalid(f"the receipt is signed by {verified.signer}, not by {signer}")
    return Receipt(consent_id, detail, issued_at, verified.signer)
