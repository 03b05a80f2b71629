"""The tamper-evident audit log: records in a Merkle tree (RFC 9162) with signed checkpoints,
inclusion and consistency proofs anyone can check offline (:func:`verify_log`,
:func:`verify_record`, :func:`verify_extension`)."""

from audit._log import (
    AuditError,
    AuditLog,
    AuditUnavailable,
    Checkpoint,
    Frontier,
    LogTampered,
    Verified,
    verify_extension,
    verify_log,
    verify_record,
)
from audit._merkle import (
    ProofInvalid,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from audit._record import KINDS, OUTCOME, REFUSAL, REQUEST, ExchangeRecord, pseudonym

__all__ = [
    "KINDS",
    "OUTCOME",
    "REFUSAL",
    "REQUEST",
    "AuditError",
    "AuditLog",
    "AuditUnavailable",
    "Checkpoint",
    "ExchangeRecord",
    "Frontier",
    "LogTampered",
    "ProofInvalid",
    "Verified",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "pseudonym",
    "root",
    "verify_consistency",
    "verify_extension",
    "verify_inclusion",
    "verify_log",
    "verify_record",
]
