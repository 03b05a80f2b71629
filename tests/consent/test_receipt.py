"""Consent receipts: anyone with the federation's roots can check offline that the consent
service signed a consent's detail; an altered receipt, one signed under another CA or with a
certificate that is not a signing certificate, or by another party, is refused, and a receipt
outlives the certificate that signed it."""

from __future__ import annotations

import datetime as dt
import json

import pytest

import pki
from consent import ConsentDetail, ReceiptInvalid, sign_receipt, verify_receipt
from proto import SecurityServerId
from tests.consent.support import (
    CIVIL,
    DAY,
    KOMINFO,
    NOW,
    POPREG,
    SUBJECT,
    WIB,
    Federation,
    Signer,
    detail,
)

HOUR = dt.timedelta(hours=1)
CONSENT_ID = "7b0c1f9e-3a1d-4a55-9f57-2d8c0b6f4e21"


def receipt(signer: Signer, made: ConsentDetail | None = None, at: dt.datetime = NOW) -> str:
    return sign_receipt(CONSENT_ID, made or detail(), at, signer.key, signer.chain)


def invalid(token: str, federation: Federation, **signer: object) -> str:
    with pytest.raises(ReceiptInvalid) as error:
        verify_receipt(token, federation.roots, **signer)  # type: ignore[arg-type]
    assert error.value.code == "consent_receipt_invalid"
    return str(error.value)


def parts(token: str) -> list[str]:
    header, payload, signature = token.split(".")
    return [header, payload, signature]


def other_character(character: str) -> str:
    return "A" if character != "A" else "B"


def signed_payload(signer: Signer, payload: object) -> str:
    """Any payload, signed as a receipt is."""
    return pki.sign_jws(
        json.dumps(payload).encode(), signer.key, signer.chain, {"typ": "pintu-consent-receipt+jws"}
    )


def good_payload(**changes: object) -> dict[str, object]:
    payload: dict[str, object] = {
        "type": "pintu.consent.receipt",
        "version": 1,
        "consent_id": CONSENT_ID,
        "issued_at": NOW.isoformat(),
        "detail": detail().to_json(),
    }
    payload.update(changes)
    return payload


# --- accepted ------------------------------------------------------------------------------------


def test_a_receipt_verifies_and_says_what_was_consented_to(
    federation: Federation, signer: Signer
) -> None:
    made = detail(provider=CIVIL, services=(), data_categories=("identity", "address"))
    verified = verify_receipt(receipt(signer, made), federation.roots)
    assert verified.consent_id == CONSENT_ID
    assert verified.detail == made
    assert verified.detail.to_json() == made.to_json()
    assert verified.issued_at == NOW
    assert verified.signer == KOMINFO


def test_a_receipt_verifies_when_its_expected_signer_signed_it(
    federation: Federation, signer: Signer
) -> None:
    assert verify_receipt(receipt(signer), federation.roots, signer=KOMINFO).signer == KOMINFO


def test_a_receipt_is_a_compact_es256_jws_over_the_documented_payload(signer: Signer) -> None:
    header, payload, _signature = parts(receipt(signer, at=NOW.astimezone(WIB)))
    protected = json.loads(pki.unb64url(header))
    assert protected["alg"] == "ES256"
    assert protected["typ"] == "pintu-consent-receipt+jws"
    assert len(protected["x5c"]) == 1
    assert json.loads(pki.unb64url(payload)) == {
        "type": "pintu.consent.receipt",
        "version": 1,
        "consent_id": CONSENT_ID,
        "issued_at": NOW.isoformat().replace("+00:00", "Z"),
        "detail": detail().to_json(),
    }


def test_surrounding_whitespace_is_ignored(federation: Federation, signer: Signer) -> None:
    assert verify_receipt(f"\n {receipt(signer)}\n", federation.roots).consent_id == CONSENT_ID


# --- altered -------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", [0, 10, "middle", -2, -1], ids=str)
def test_a_receipt_with_one_payload_character_changed_is_refused(
    federation: Federation, signer: Signer, where: int | str
) -> None:
    header, payload, signature = parts(receipt(signer))
    index = len(payload) // 2 if where == "middle" else int(where)
    index %= len(payload)
    changed = payload[:index] + other_character(payload[index]) + payload[index + 1 :]
    assert changed != payload
    invalid(f"{header}.{changed}.{signature}", federation)


def test_a_receipt_whose_detail_was_rewritten_does_not_verify(
    federation: Federation, signer: Signer
) -> None:
    header, payload, signature = parts(receipt(signer))
    document = json.loads(pki.unb64url(payload))
    document["detail"]["valid_until"] = "2099-01-01T00:00:00Z"
    forged = pki.b64url(json.dumps(document, sort_keys=True, separators=(",", ":")).encode())
    assert "does not verify" in invalid(f"{header}.{forged}.{signature}", federation)


def test_a_receipt_whose_issued_at_was_moved_does_not_verify(
    federation: Federation, signer: Signer
) -> None:
    header, payload, signature = parts(receipt(signer))
    document = json.loads(pki.unb64url(payload))
    document["issued_at"] = (NOW - HOUR).isoformat()
    forged = pki.b64url(json.dumps(document, sort_keys=True, separators=(",", ":")).encode())
    assert "does not verify" in invalid(f"{header}.{forged}.{signature}", federation)


def test_a_receipt_with_its_signature_changed_is_refused(
    federation: Federation, signer: Signer
) -> None:
    header, payload, signature = parts(receipt(signer))
    changed = other_character(signature[0]) + signature[1:]
    assert "does not verify" in invalid(f"{header}.{payload}.{changed}", federation)


def test_a_receipt_with_a_truncated_signature_is_refused(
    federation: Federation, signer: Signer
) -> None:
    header, payload, signature = parts(receipt(signer))
    invalid(f"{header}.{payload}.{signature[:-4]}", federation)
    invalid(f"{header}.{payload}.", federation)


def test_a_signature_taken_from_another_receipt_is_refused(
    federation: Federation, signer: Signer
) -> None:
    header, payload, _ = parts(receipt(signer))
    _, _, other_signature = parts(receipt(signer, detail(subject="NIK:1")))
    assert "does not verify" in invalid(f"{header}.{payload}.{other_signature}", federation)


def test_a_receipt_whose_certificate_was_swapped_for_another_signing_certificate_is_refused(
    federation: Federation, signer: Signer
) -> None:
    _, payload, signature = parts(receipt(signer))
    other = federation.signer(KOMINFO)  # same member, another key
    other_header, _, _ = parts(receipt(other))
    assert "does not verify" in invalid(f"{other_header}.{payload}.{signature}", federation)


# --- not signed by the federation's consent service ----------------------------------------------


def test_a_receipt_signed_under_another_ca_does_not_chain(
    federation: Federation, signer: Signer
) -> None:
    elsewhere = Federation.create()
    token = receipt(elsewhere.signer(KOMINFO))
    assert "does not chain" in invalid(token, federation)
    # Against its own roots it verifies: only the roots made the difference.
    assert verify_receipt(token, elsewhere.roots).signer == KOMINFO


def test_a_receipt_signed_with_a_server_certificate_is_refused(federation: Federation) -> None:
    key = pki.generate_key()
    certificate = federation.ca.issue_server_certificate(
        SecurityServerId(KOMINFO, "ss1"), key.public_key(), now=NOW - DAY, lifetime=3 * DAY
    )
    message = invalid(receipt(Signer(key, [certificate])), federation)
    assert "not signed with a signing certificate" in message


def test_a_receipt_signed_with_a_client_certificate_is_refused(federation: Federation) -> None:
    key = pki.generate_key()
    certificate = federation.ca.issue_client_certificate(
        KOMINFO.subsystem("consent"), key.public_key(), now=NOW - DAY, lifetime=3 * DAY
    )
    message = invalid(receipt(Signer(key, [certificate])), federation)
    assert "not signed with a signing certificate" in message


def test_a_receipt_signed_with_the_root_key_itself_is_refused(federation: Federation) -> None:
    root = Signer(federation.ca.key, [federation.ca.certificate])  # type: ignore[arg-type]
    invalid(receipt(root), federation)


def test_a_receipt_signed_by_another_party_is_refused_when_the_signer_is_named(
    federation: Federation,
) -> None:
    popreg = federation.signer(POPREG)
    assert verify_receipt(receipt(popreg), federation.roots).signer == POPREG
    message = invalid(receipt(popreg), federation, signer=KOMINFO)
    assert str(POPREG) in message
    assert str(KOMINFO) in message


def test_the_named_signer_must_be_the_member_not_one_of_its_subsystems(
    federation: Federation, signer: Signer
) -> None:
    invalid(receipt(signer), federation, signer=KOMINFO.subsystem("consent"))


# --- malformed -----------------------------------------------------------------------------------


def _b64(text: str) -> str:
    return pki.b64url(text.encode())


def _token(header: str, payload: str, signature: str = "x") -> str:
    return f"{_b64(header)}.{_b64(payload)}.{_b64(signature)}"


_TIME = '{"issued_at": "2026-11-25T10:00:00Z"}'


@pytest.mark.parametrize(
    "token",
    [
        "",
        " ",
        "x",
        "a.b",
        "a.b.c",
        "..",
        "...",
        "x" * 100_000,
        _token("{}", "{}", ""),
        _token("{}", "[]"),
        _token("{}", "null"),
        _token("{}", '{"issued_at": 7}'),
        _token("{}", '{"issued_at": "2026-11-25T10:00:00"}'),
        _token("{}", _TIME),
        _token("not json", _TIME),
        _token('{"alg": "none"}', _TIME, ""),
        _token("[" * 5000, "[" * 5000),
        "\u00e9.\u00e9.\u00e9",
    ],
    ids=["empty", "blank", "one-part", "two-parts", "not-base64", "dots", "four-empty",
         "100000", "no-signature", "list-payload", "null-payload", "number-time", "naive-time",
         "no-header", "header-not-json", "alg-none", "deep", "non-ascii"],
)  # fmt: skip
def test_garbage_is_refused(federation: Federation, token: str) -> None:
    invalid(token, federation)


def test_a_receipt_longer_than_64_kib_is_refused_before_parsing(federation: Federation) -> None:
    assert "at most" in invalid("a." + "b" * 70_000 + ".c", federation)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (good_payload(type="pintu.policy.bundle"), "type or version"),
        (good_payload(version=2), "type or version"),
        (good_payload(version="1"), "type or version"),
        (good_payload(consent_id=""), "names no consent"),
        (good_payload(consent_id=7), "names no consent"),
        ({k: v for k, v in good_payload().items() if k != "consent_id"}, "malformed"),
        ({k: v for k, v in good_payload().items() if k != "detail"}, "malformed"),
        (good_payload(detail={**detail().to_json(), "purpose": "health care"}), "malformed"),
        (good_payload(detail="the detail"), "malformed"),
        (good_payload(issued_at="2026-11-25T10:00:00"), "not a consent receipt"),
        (good_payload(issued_at="yesterday"), "not a consent receipt"),
    ],
    ids=["other-type", "version-2", "version-string", "empty-id", "number-id", "no-id",
         "no-detail", "bad-detail", "string-detail", "naive-time", "bad-time"],
)  # fmt: skip
def test_a_signed_document_that_is_not_a_receipt_is_refused(
    federation: Federation, signer: Signer, payload: object, message: str
) -> None:
    assert message in invalid(signed_payload(signer, payload), federation)


def test_the_document_signed_as_a_receipt_verifies(federation: Federation, signer: Signer) -> None:
    # The counterpart of the refusals above: the same helper, a well-formed payload.
    verified = verify_receipt(signed_payload(signer, good_payload()), federation.roots)
    assert verified.consent_id == CONSENT_ID
    assert verified.detail.subject == SUBJECT


# --- time ----------------------------------------------------------------------------------------


def test_a_receipt_outlives_its_signing_certificate(federation: Federation) -> None:
    # A certificate valid for a day, five days ago: it has expired since.
    old = federation.signer(now=NOW - 5 * DAY, lifetime=DAY)
    assert old.chain[0].not_valid_after_utc < NOW
    issued_at = NOW - 5 * DAY + HOUR
    verified = verify_receipt(receipt(old, at=issued_at), federation.roots, signer=KOMINFO)
    assert verified.issued_at == issued_at


@pytest.mark.parametrize(
    "issued_at",
    [NOW, NOW - 4 * DAY + HOUR, NOW - 5 * DAY - HOUR, NOW - 20 * DAY],
    ids=["now", "just-after-expiry", "before-issuance", "before-the-root"],
)
def test_a_receipt_claiming_a_time_outside_its_certificates_validity_is_refused(
    federation: Federation, issued_at: dt.datetime
) -> None:
    old = federation.signer(now=NOW - 5 * DAY, lifetime=DAY)
    certificate = old.chain[0]
    assert not certificate.not_valid_before_utc <= issued_at <= certificate.not_valid_after_utc
    assert "not valid" in invalid(receipt(old, at=issued_at), federation)


def test_a_receipt_issued_in_the_future_is_refused(federation: Federation) -> None:
    signer = federation.signer()
    token = receipt(signer, at=NOW + dt.timedelta(hours=1))
    with pytest.raises(ReceiptInvalid, match="in the future"):
        verify_receipt(token, federation.roots, now=NOW)
    assert verify_receipt(token, federation.roots, now=NOW + dt.timedelta(hours=1)).consent_id
