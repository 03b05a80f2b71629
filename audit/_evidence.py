"""Evidence of one exchange, exported from a security server's log and checked offline.

:func:`prove` gathers an exchange's records (its request, its outcome with both seals, and the
certificate records the seals need), each with its inclusion proof in the tree of the newest
checkpoint, and that checkpoint: a self-contained JSON document. :func:`verify_evidence` checks
it with nothing but the federation's roots: the checkpoint's signature, every record's
inclusion, and both seals — the consumer's over the request statement, the provider's over the
response statement bound to the request statement's hash.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from audit._body import decrypt_body
from audit._log import (
    RECORDS_OF_MESSAGE,
    AuditError,
    AuditUnavailable,
    Checkpoint,
    LogTampered,
    subtree_head,
    verify_record,
)
from audit._merkle import ProofInvalid, inclusion_proof_of
from audit._record import BODY, BODY_KEY, CERTIFICATE, OUTCOME, REQUEST, ExchangeRecord
from audit._seal import (
    REQUEST_STATEMENT,
    RESPONSE_STATEMENT,
    SealInvalid,
    check_token,
    signer_of,
)
from pki import unb64url
from proto import IdentifierError, PartyId, SubsystemId

EVIDENCE_TYPE = "pintu.audit.evidence"


class EvidenceMissing(AuditError):
    """The log holds no provable record of the exchange (yet)."""

    code = "evidence_missing"


class EvidenceInvalid(AuditError):
    """Evidence that does not prove what it claims; the message says why."""

    code = "evidence_invalid"


def prove(path: Path, message_id: str) -> dict[str, Any]:
    """The evidence document of exchange ``message_id`` in the log at ``path``.

    Raises:
        EvidenceMissing: no record of it, or none fixed by a checkpoint yet.
        AuditUnavailable: the file cannot be read.
    """
    if len(message_id) != 32 or message_id.strip("0123456789abcdef"):
        raise EvidenceMissing("a message id is 32 lowercase hex digits")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        try:
            db.execute("BEGIN")
            found = _records_of(db, message_id)
            latest = db.execute(
                "SELECT size, token FROM checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
            thumbprints = {
                thumbprint
                for _, body in found
                for thumbprint in _thumbprints(ExchangeRecord.decode(body))
            }
            certificates: dict[str, tuple[int, bytes]] = {}
            for seq, body in _records_of(db, ""):  # certificate records have no message id
                record = ExchangeRecord.decode(body)
                if record.kind == CERTIFICATE and record.thumbprint in thumbprints:
                    certificates.setdefault(record.thumbprint, (seq, body))
            found += certificates.values()
            if not found:
                raise EvidenceMissing(f"the log holds no record of exchange {message_id}")
            size = latest[0] if latest else 0
            if latest is None or max(seq for seq, _ in found) >= size:
                raise EvidenceMissing(
                    f"the records of {message_id} are not yet fixed by a checkpoint; try again"
                    " after the next one"
                )
            subtree = functools.partial(subtree_head, db)
            records = [
                {
                    "seq": seq,
                    "body": base64.b64encode(body).decode(),
                    "proof": [node.hex() for node in inclusion_proof_of(seq, size, subtree)],
                }
                for seq, body in sorted(found)
            ]
            db.execute("COMMIT")
        finally:
            db.close()
    except sqlite3.Error as error:
        raise AuditUnavailable(f"audit log {path}: {error}") from None
    except ProofInvalid as error:
        raise AuditUnavailable(f"audit log {path}: {error}") from None
    return {
        "type": EVIDENCE_TYPE,
        "version": 1,
        "message_id": message_id,
        "checkpoint": latest[1],
        "records": records,
    }


def read_bodies(path: Path, message_id: str, kek: bytes) -> list[tuple[str, int, bytes]]:
    """The kept bodies of exchange ``message_id``, decrypted with the key encryption key
    ``kek``: (direction, index, message), in order.

    Raises:
        EvidenceMissing: the log keeps no body of it.
        BodyKeyError, BodyUnreadable: ``kek`` is not the key, or a body was changed.
        AuditUnavailable: the file cannot be read.
    """
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        try:
            records = [ExchangeRecord.decode(body) for _, body in _records_of(db, message_id)]
            keys = {
                record.key_id: record.wrapped_key
                for record in (ExchangeRecord.decode(body) for _, body in _records_of(db, ""))
                if record.kind == BODY_KEY
            }
        finally:
            db.close()
    except sqlite3.Error as error:
        raise AuditUnavailable(f"audit log {path}: {error}") from None
    bodies = [record for record in records if record.kind == BODY]
    if not bodies:
        raise EvidenceMissing(f"the log keeps no body of exchange {message_id}")
    found = []
    for record in bodies:
        wrapped = keys.get(record.key_id)
        if wrapped is None:
            raise EvidenceMissing(f"the log lacks the data key {record.key_id} of a body")
        found.append(
            (
                record.direction,
                record.index,
                decrypt_body(
                    kek,
                    wrapped,
                    key_id=record.key_id,
                    message_id=message_id,
                    direction=record.direction,
                    index=record.index,
                    ciphertext=record.ciphertext,
                ),
            )
        )
    return found


def _records_of(db: sqlite3.Connection, message_id: str) -> list[tuple[int, bytes]]:
    return [(seq, bytes(body)) for seq, body in db.execute(RECORDS_OF_MESSAGE, (message_id,))]


def _thumbprints(record: ExchangeRecord) -> list[str]:
    found = []
    for token in (record.request_seal, record.response_seal):
        if token:
            try:
                header = json.loads(unb64url(token.split(".")[0]))
                found.append(str(header["x5t#S256"]))
            except (ValueError, KeyError, TypeError, IndexError):
                continue
    return found


@dataclass(frozen=True, slots=True)
class Evidence:
    """What verified evidence establishes."""

    message_id: str
    log: str
    checkpoint_size: int
    records: tuple[ExchangeRecord, ...]
    request: dict[str, Any] | None  # the request statement, sealed by the consumer
    response: dict[str, Any] | None  # the response statement, sealed by the provider
    request_signer: PartyId | None
    response_signer: PartyId | None


def verify_evidence(
    document: dict[str, Any], roots: Iterable[x509.Certificate], signer: PartyId
) -> Evidence:
    """Check evidence exported by :func:`prove` from the log of ``signer`` (the member whose
    security server kept it).

    Raises:
        EvidenceInvalid: anything does not verify; the message says what.
    """
    roots = list(roots)
    try:
        if document.get("type") != EVIDENCE_TYPE or document.get("version") != 1:
            raise EvidenceInvalid("not a Pintu evidence document (version 1)")
        message_id = str(document["message_id"])
        checkpoint = Checkpoint.verified(str(document["checkpoint"]), roots, signer)
        records: list[ExchangeRecord] = []
        for entry in document["records"]:
            body = base64.b64decode(entry["body"], validate=True)
            proof = [bytes.fromhex(node) for node in entry["proof"]]
            verify_record(body, int(entry["seq"]), proof, checkpoint)
            records.append(ExchangeRecord.decode(body))
    except LogTampered as error:
        raise EvidenceInvalid(str(error)) from None
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise EvidenceInvalid(f"the evidence is malformed: {type(error).__name__}") from None
    about = [r for r in records if r.message_id == message_id]
    if not about:
        raise EvidenceInvalid(f"the evidence holds no record of {message_id}")
    chains = {r.thumbprint: r for r in records if r.kind == CERTIFICATE}
    outcomes = [r for r in about if r.kind == OUTCOME]
    if len(outcomes) > 1 or len([r for r in about if r.kind == REQUEST]) > 1:
        raise EvidenceInvalid(f"several exchanges of the log share the message id {message_id}")
    outcome = next((r for r in outcomes if r.request_seal), None)
    request = response = None
    request_signer = response_signer = None
    if outcome is not None:
        request, request_signer = _sealed(outcome.request_seal, chains, roots, outcome.at)
        if request.get("type") != REQUEST_STATEMENT or request.get("message_id") != message_id:
            raise EvidenceInvalid("the request seal is not over this exchange's request")
        _signed_by(request_signer, str(request.get("client", "")), "request")
        if outcome.response_seal:
            response, response_signer = _sealed(outcome.response_seal, chains, roots, outcome.at)
            statement = unb64url(outcome.request_seal.split(".")[1])
            if (
                response.get("type") != RESPONSE_STATEMENT
                or response.get("message_id") != message_id
                or response.get("request") != hashlib.sha256(statement).hexdigest()
            ):
                raise EvidenceInvalid("the response seal is not bound to this request")
            _signed_by(response_signer, str(request.get("provider", "")), "response")
            if response.get("status") != outcome.status:
                raise EvidenceInvalid("the outcome's status is not the one the provider sealed")
    return Evidence(
        message_id,
        checkpoint.log,
        checkpoint.size,
        tuple(about),
        request,
        response,
        request_signer,
        response_signer,
    )


def _sealed(
    token: str, chains: dict[str, ExchangeRecord], roots: list[x509.Certificate], at: dt.datetime
) -> tuple[dict[str, Any], PartyId]:
    """A seal's statement and signer, checked with the certificate recorded for it."""
    try:
        header = json.loads(unb64url(token.split(".")[0]))
        thumbprint = str(header["x5t#S256"])
        statement = json.loads(unb64url(token.split(".")[1]))
    except (ValueError, KeyError, TypeError, IndexError):
        raise EvidenceInvalid("a seal is malformed") from None
    record = chains.get(thumbprint)
    if record is None:
        raise EvidenceInvalid("the evidence lacks the certificate of a seal")
    try:
        known = signer_of([base64.b64decode(c) for c in record.chain], roots, at)
        check_token(token, known.key, known.thumbprint)
    except SealInvalid as error:
        raise EvidenceInvalid(str(error)) from None
    if not isinstance(statement, dict):
        raise EvidenceInvalid("a seal's statement is malformed")
    return statement, known.party


def _signed_by(signer: PartyId, subsystem: str, what: str) -> None:
    try:
        expected = SubsystemId.parse(subsystem).member
    except IdentifierError:
        raise EvidenceInvalid(f"the {what} statement names no valid subsystem") from None
    if signer != expected:
        raise EvidenceInvalid(f"the {what} is sealed by {signer}, not by {expected}")
