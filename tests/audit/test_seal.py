"""Seals: a member's signature over exactly the statement exchanged, checked against the
federation's roots, the signer expected and revocation."""

from __future__ import annotations

import datetime as dt

import pytest

import pki
from audit import Digest, Sealer, SealInvalid, SealParts, SealVerifier, request_statement
from proto import MemberId
from tests.audit.test_log import CA, NOW, OTHER, OWNER, ROOTS, signer

STATEMENT = request_statement(
    message_id="a" * 32,
    client="DEMO/GOV/POPREG/client",
    consumer_server="DEMO/GOV/POPREG/ss1",
    provider="DEMO/GOV/TAX/records",
    method="/x.v1.S/M",
    purpose="testing",
    subject="",
    created_ns=1,
    digest=Digest(),
)


def sealed(member: MemberId = OWNER) -> tuple[SealParts, int]:
    key, chain = signer(member)
    parts = Sealer(key, chain).seal(STATEMENT)  # type: ignore[arg-type]
    return parts, chain[0].serial_number  # type: ignore[attr-defined]


def test_a_seal_verifies_over_its_statement_by_its_signer() -> None:
    parts, serial = sealed()
    again = SealParts.decode(parts.encode())
    assert (
        SealVerifier(lambda: ROOTS).verify(again, statement=STATEMENT, signer=OWNER, now=NOW)
        == serial
    )


def test_a_seal_over_other_content_by_another_member_or_revoked_is_refused() -> None:
    parts, serial = sealed()
    verifier = SealVerifier(lambda: ROOTS)
    with pytest.raises(SealInvalid, match="other content"):
        verifier.verify(parts, statement=STATEMENT + b" ", signer=OWNER, now=NOW)
    with pytest.raises(SealInvalid, match="not by"):
        verifier.verify(parts, statement=STATEMENT, signer=OTHER, now=NOW)
    revoked = SealVerifier(lambda: ROOTS, lambda number: number == serial)
    with pytest.raises(SealInvalid, match="revoked"):
        revoked.verify(parts, statement=STATEMENT, signer=OWNER, now=NOW)
    with pytest.raises(SealInvalid, match="not valid now"):
        verifier.verify(parts, statement=STATEMENT, signer=OWNER, now=NOW + dt.timedelta(days=3))


def test_an_altered_token_or_a_foreign_chain_is_refused() -> None:
    parts, _ = sealed()
    verifier = SealVerifier(lambda: ROOTS)
    head, body, signature = parts.token.split(".")
    altered = SealParts(f"{head}.{body}.{signature[::-1]}", parts.statement, parts.chain)
    with pytest.raises(SealInvalid):
        verifier.verify(altered, statement=STATEMENT, signer=OWNER, now=NOW)
    foreign = pki.CertificateAuthority.create(
        "OTHER", now=NOW - dt.timedelta(days=1), lifetime=dt.timedelta(days=30)
    )
    with pytest.raises(SealInvalid, match="chain"):
        SealVerifier(lambda: [foreign.certificate]).verify(
            parts, statement=STATEMENT, signer=OWNER, now=NOW
        )
    with pytest.raises(SealInvalid, match="malformed"):
        SealParts.decode(b"\xff\xfe not a seal")
    assert CA.certificate in ROOTS
