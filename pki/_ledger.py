"""The CA's memory: enrollment tokens, issued certificates, revocations, and an append-only journal.

One SQLite database (``ca.sqlite`` in the CA's folder). The journal table refuses UPDATE and
DELETE (triggers), so every issuance, renewal and revocation stays on record with who asked.
Times are stored as ISO 8601 UTC text; serials as decimal text (they exceed 64 bits).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki._errors import LedgerError, TokenExpired, TokenUnknown, TokenUsed

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    digest      TEXT PRIMARY KEY,
    server      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    used_at     TEXT
);
CREATE TABLE IF NOT EXISTS certificates (
    serial       TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    identity     TEXT NOT NULL,
    issuer       TEXT NOT NULL,
    not_before   TEXT NOT NULL,
    not_after    TEXT NOT NULL,
    der          BLOB NOT NULL,
    renewed_from TEXT,
    revoked_at   TEXT,
    reason       TEXT,
    key_digest   TEXT
);
CREATE INDEX IF NOT EXISTS certificates_by_identity ON certificates (identity);
CREATE INDEX IF NOT EXISTS certificates_by_key ON certificates (key_digest);
CREATE TABLE IF NOT EXISTS journal (
    sequence  INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    serial    TEXT,
    identity  TEXT,
    detail    TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'the CA journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
BEGIN SELECT RAISE(ABORT, 'the CA journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS journal_no_replace BEFORE INSERT ON journal
WHEN EXISTS (SELECT 1 FROM journal WHERE sequence = NEW.sequence)
BEGIN SELECT RAISE(ABORT, 'the CA journal is append-only'); END;
"""


def _text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An enrollment token's binding, as stored (the token itself is never stored)."""

    server: str
    created_at: dt.datetime
    expires_at: dt.datetime
    created_by: str


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    """An issued certificate and its revocation status."""

    serial: int
    kind: str
    identity: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    der: bytes
    renewed_from: int | None
    revoked_at: dt.datetime | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One line of the CA journal."""

    sequence: int
    at: dt.datetime
    actor: str
    action: str
    serial: int | None
    identity: str | None
    detail: dict[str, Any]


def _key_digest(der: bytes) -> str:
    public = x509.load_der_x509_certificate(der).public_key()
    spki = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def _certificate(row: sqlite3.Row) -> CertificateRecord:
    return CertificateRecord(
        serial=int(row["serial"]),
        kind=row["kind"],
        identity=row["identity"],
        issuer=row["issuer"],
        not_before=_time(row["not_before"]),
        not_after=_time(row["not_after"]),
        der=bytes(row["der"]),
        renewed_from=int(row["renewed_from"]) if row["renewed_from"] else None,
        revoked_at=_time(row["revoked_at"]) if row["revoked_at"] else None,
        reason=row["reason"],
    )


def _usable(row: sqlite3.Row | None, now: dt.datetime) -> TokenRecord:
    if row is None:
        raise TokenUnknown("no such enrollment token")
    if row["used_at"] is not None:
        raise TokenUsed("the enrollment token was already used")
    if _time(row["expires_at"]) <= now:
        raise TokenExpired(f"the enrollment token expired at {row['expires_at']}")
    return TokenRecord(
        row["server"], _time(row["created_at"]), _time(row["expires_at"]), row["created_by"]
    )


class CaLedger:
    """The CA's database. Every write is one transaction and adds a journal entry."""

    def __init__(self, path: Path) -> None:
        try:
            path.touch(mode=0o600, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as error:
            raise LedgerError(f"CA database {path}: {error}") from error

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def version(self) -> int:
        """A number that changes when another connection (another process) has written."""
        row = self._db.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, parameters in statements:
                    self._db.execute(sql, parameters)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as error:
            raise LedgerError(f"CA database: {error}") from error

    @staticmethod
    def _journal(
        at: dt.datetime,
        actor: str,
        action: str,
        serial: int | None,
        identity: str | None,
        detail: dict[str, Any],
    ) -> tuple[str, tuple[Any, ...]]:
        return (
            "INSERT INTO journal (at, actor, action, serial, identity, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                _text(at),
                actor,
                action,
                None if serial is None else str(serial),
                identity,
                json.dumps(detail, sort_keys=True),
            ),
        )

    # -- tokens --------------------------------------------------------------------------------

    def add_token(
        self, digest: str, server: str, *, expires_at: dt.datetime, actor: str, now: dt.datetime
    ) -> None:
        """Store a new token's digest and binding."""
        self._write(
            [
                (
                    "INSERT INTO tokens (digest, server, created_at, expires_at, created_by)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (digest, server, _text(now), _text(expires_at), actor),
                ),
                self._journal(now, actor, "token", None, server, {"expires_at": _text(expires_at)}),
            ]
        )

    def peek_token(self, digest: str, *, now: dt.datetime) -> TokenRecord:
        """A usable token's binding, without using it.

        Raises:
            TokenUnknown, TokenExpired, TokenUsed: the token cannot be used.
        """
        row = self._db.execute("SELECT * FROM tokens WHERE digest = ?", (digest,)).fetchone()
        return _usable(row, now)

    def take_token(self, digest: str, *, now: dt.datetime) -> TokenRecord:
        """Use a token once: mark it used and return its binding. Of two concurrent takers,
        exactly one succeeds.

        Raises:
            TokenUnknown, TokenExpired, TokenUsed: the token cannot be used.
        """
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT * FROM tokens WHERE digest = ?", (digest,)
                ).fetchone()
                record = _usable(row, now)
                self._db.execute(
                    "UPDATE tokens SET used_at = ? WHERE digest = ?", (_text(now), digest)
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as error:
            raise LedgerError(f"CA database: {error}") from error
        return record

    # -- certificates --------------------------------------------------------------------------

    def record_issue(
        self,
        *,
        serial: int,
        kind: str,
        identity: str,
        issuer: str,
        not_before: dt.datetime,
        not_after: dt.datetime,
        der: bytes,
        action: str,
        actor: str,
        now: dt.datetime,
        renewed_from: int | None = None,
    ) -> None:
        """Store an issued certificate and journal how it came to be."""
        detail: dict[str, Any] = {"kind": kind, "not_after": _text(not_after)}
        if renewed_from is not None:
            detail["renewed_from"] = str(renewed_from)
        self._write(
            [
                (
                    "INSERT INTO certificates (serial, kind, identity, issuer, not_before,"
                    " not_after, der, renewed_from, key_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        str(serial),
                        kind,
                        identity,
                        issuer,
                        _text(not_before),
                        _text(not_after),
                        der,
                        None if renewed_from is None else str(renewed_from),
                        _key_digest(der),
                    ),
                ),
                self._journal(now, actor, action, serial, identity, detail),
            ]
        )

    def certificate(self, serial: int) -> CertificateRecord | None:
        """The certificate with ``serial``, if this CA issued it."""
        row = self._db.execute(
            "SELECT * FROM certificates WHERE serial = ?", (str(serial),)
        ).fetchone()
        return None if row is None else _certificate(row)

    def certificates(self) -> Iterator[CertificateRecord]:
        """Every issued certificate, oldest first."""
        for row in self._db.execute("SELECT * FROM certificates ORDER BY rowid"):
            yield _certificate(row)

    def key_certified(self, digest: str, identities: tuple[str, ...]) -> bool:
        """Whether a key (its :func:`pki.key_digest`) was ever certified for ``identities``."""
        marks = ", ".join("?" * len(identities))
        row = self._db.execute(
            f"SELECT 1 FROM certificates WHERE key_digest = ? AND identity IN ({marks})",  # noqa: S608 - placeholders only
            (digest, *identities),
        ).fetchone()
        return row is not None

    def certificates_of(self, identity: str) -> list[CertificateRecord]:
        """Every certificate issued to ``identity`` (a server or member, canonical text)."""
        return [
            _certificate(row)
            for row in self._db.execute(
                "SELECT * FROM certificates WHERE identity = ? ORDER BY rowid", (identity,)
            )
        ]

    def revoke(self, serial: int, *, reason: str, actor: str, now: dt.datetime) -> None:
        """Mark a certificate revoked (once; a second revocation keeps the first).

        Raises:
            LedgerError: no such certificate, or already revoked.
        """
        record = self.certificate(serial)
        if record is None:
            raise LedgerError(f"no certificate with serial {serial}")
        if record.revoked_at is not None:
            raise LedgerError(f"certificate {serial} was already revoked at {record.revoked_at}")
        self._write(
            [
                (
                    "UPDATE certificates SET revoked_at = ?, reason = ? WHERE serial = ?",
                    (_text(now), reason, str(serial)),
                ),
                self._journal(now, actor, "revoke", serial, record.identity, {"reason": reason}),
            ]
        )

    def revocations(self, issuer: str) -> list[tuple[int, dt.datetime, str]]:
        """Serial, time and reason of every revoked certificate of ``issuer``."""
        return [
            (int(row["serial"]), _time(row["revoked_at"]), row["reason"])
            for row in self._db.execute(
                "SELECT serial, revoked_at, reason FROM certificates"
                " WHERE issuer = ? AND revoked_at IS NOT NULL ORDER BY revoked_at",
                (issuer,),
            )
        ]

    def note(self, *, actor: str, action: str, now: dt.datetime, detail: dict[str, Any]) -> None:
        """Journal an event that is not about one certificate (e.g. a root rollover step)."""
        self._write([self._journal(now, actor, action, None, None, detail)])

    def journal(self) -> Iterator[JournalEntry]:
        """The journal, in order."""
        for row in self._db.execute("SELECT * FROM journal ORDER BY sequence"):
            yield JournalEntry(
                sequence=row["sequence"],
                at=_time(row["at"]),
                actor=row["actor"],
                action=row["action"],
                serial=int(row["serial"]) if row["serial"] else None,
                identity=row["identity"],
                detail=json.loads(row["detail"]),
            )
