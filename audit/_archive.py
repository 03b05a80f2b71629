"""Archives and retention: closed segments of a log exported as self-verifying files, and the
bodies of archived records removed from the log.

An archive holds the records ``[start, end)`` of a log, where ``end`` is the size of one of the
log's signed checkpoints: a JSON Lines file whose first line is a header — the log, ``start``,
``end``, that checkpoint, and the roots of the perfect subtrees that make up the first
``start`` records (at most one per bit of ``start``) — then one line per record, then a closing
line with the count. :func:`verify_archive` rebuilds the tree of ``end`` records from those roots
and the records, and compares it with the signed checkpoint: a changed, missing, added or
reordered record, or forged subtree roots, do not give the signed root. It needs nothing but
the file and the federation's roots.

:func:`prune` removes the bodies of records that an archive verified against the log holds,
keeping their leaf hashes: the tree, its checkpoints and its proofs stay as they were, and
:func:`audit.verify_log` counts those records as archived. Nothing that is not archived is ever
removed.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cryptography import x509

from audit._log import (
    AuditError,
    AuditUnavailable,
    Checkpoint,
    Frontier,
    LogTampered,
)
from audit._merkle import leaf_hash
from audit._record import BODY_KEY, CERTIFICATE
from pki import unb64url
from proto import PartyId

ARCHIVE_TYPE = "pintu.audit.archive"
_BATCH = 10_000


class ArchiveInvalid(AuditError):
    """An archive that does not prove what it claims, or does not match the log."""

    code = "archive_invalid"


@dataclass(frozen=True, slots=True)
class Archived:
    """What an archive holds, verified."""

    log: str
    start: int
    end: int
    checkpoint: Checkpoint


def _left_nodes(frontier: Frontier) -> list[str]:
    return [node.hex() for node in frontier.nodes()]


def archive(path: Path, out: Path) -> tuple[int, int]:
    """Write the records after the log's last archive up to its newest checkpoint to ``out``;
    the range written, ``(start, end)``.

    Raises:
        AuditError: nothing new to archive (no checkpoint beyond the last archive).
        AuditUnavailable: the log cannot be read.
    """
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        try:
            db.execute("BEGIN")
            start = _archived_up_to(db)
            row = db.execute(
                "SELECT size, token FROM checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
            if row is None or row[0] <= start:
                raise AuditError(
                    f"nothing to archive: no checkpoint beyond record {start} (the last archived)"
                )
            end, token = int(row[0]), str(row[1])
            frontier = Frontier()
            for (leaf,) in db.execute(
                "SELECT leaf FROM records WHERE seq < ? ORDER BY seq", (start,)
            ):
                frontier.append(bytes(leaf))
            log = json.loads(unb64url(token.split(".")[1]))["log"]
            header = {
                "type": ARCHIVE_TYPE,
                "version": 1,
                "log": log,
                "start": start,
                "end": end,
                "checkpoint": token,
                "left": _left_nodes(frontier),
            }
            written = 0
            with out.open("w") as file:
                _line(file, header)
                for seq, body in db.execute(
                    "SELECT seq, body FROM records WHERE seq >= ? AND seq < ? ORDER BY seq",
                    (start, end),
                ):
                    _line(file, {"seq": seq, "body": base64.b64encode(bytes(body)).decode()})
                    written += 1
                _line(file, {"type": "end", "records": written})
                file.flush()
                os.fsync(file.fileno())
            _sync_folder(out.parent)
            db.execute("COMMIT")
        finally:
            db.close()
    except sqlite3.Error as error:
        raise AuditUnavailable(f"audit log {path}: {error}") from None
    return start, end


def _sync_folder(folder: Path) -> None:
    """Make a new file's name durable (the archive must exist before bodies go)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _line(file: IO[str], document: dict[str, Any]) -> None:
    file.write(json.dumps(document, separators=(",", ":")) + "\n")


def _archived_up_to(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT MAX(end) FROM pruned").fetchone() if _has_pruned(db) else None
    return int(row[0]) if row and row[0] is not None else 0


def _feed_position(db: sqlite3.Connection) -> int | None:
    """How far the access feed got, if the log has one."""
    if not db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cursors'"
    ).fetchone():
        return None
    row = db.execute("SELECT position FROM cursors WHERE name = 'access_feed'").fetchone()
    return int(row[0]) if row else None


def _has_pruned(db: sqlite3.Connection) -> bool:
    return (
        db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'pruned'"
        ).fetchone()
        is not None
    )


def _records(lines: Iterator[str]) -> Iterator[tuple[int, bytes]]:
    for line in lines:
        document = json.loads(line)
        if document.get("type") == "end":
            yield -1, str(document.get("records", "")).encode()
            return
        yield int(document["seq"]), base64.b64decode(document["body"], validate=True)


def verify_archive(
    out: Path,
    roots: Iterable[x509.Certificate],
    signer: PartyId,
    *,
    leaves: list[bytes] | None = None,
) -> Archived:
    """Check an archive file on its own (see the module docstring); with ``leaves``, also
    collect the records' leaf hashes into it.

    Raises:
        ArchiveInvalid: the file does not verify; the message says why.
        AuditUnavailable: it cannot be read.
    """
    try:
        with out.open() as file:
            header = json.loads(file.readline())
            if header.get("type") != ARCHIVE_TYPE or header.get("version") != 1:
                raise ArchiveInvalid("not a Pintu audit archive (version 1)")
            checkpoint = Checkpoint.verified(str(header["checkpoint"]), list(roots), signer)
            start, end = int(header["start"]), int(header["end"])
            if checkpoint.size != end or checkpoint.log != header["log"] or not 0 <= start < end:
                raise ArchiveInvalid("the header does not match its checkpoint")
            frontier = Frontier.from_nodes(start, [bytes.fromhex(h) for h in header["left"]])
            ended = False
            for seq, body in _records(iter(file.readline, "")):
                if seq == -1:
                    ended = body == str(frontier.size - start).encode()
                    break
                if seq != frontier.size:
                    raise ArchiveInvalid(f"record {frontier.size} is missing (found {seq})")
                leaf = leaf_hash(body)
                frontier.append(leaf)
                if leaves is not None:
                    leaves.append(leaf)
            if not ended:
                raise ArchiveInvalid("the archive is cut off (no closing line, or a wrong count)")
    except LogTampered as error:
        raise ArchiveInvalid(str(error)) from None
    except OSError as error:
        raise AuditUnavailable(f"{out}: {error.strerror}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise ArchiveInvalid(f"the archive is malformed: {type(error).__name__}") from None
    if frontier.size != end or frontier.root() != checkpoint.root:
        raise ArchiveInvalid(
            f"the records {start} to {end - 1} are not those checkpoint {end} signed"
            " (changed, missing, added or reordered)"
        )
    return Archived(checkpoint.log, start, end, checkpoint)


def prune(path: Path, out: Path, roots: Iterable[x509.Certificate], signer: PartyId) -> Archived:
    """Remove from the log at ``path`` the bodies of the records the archive ``out`` holds,
    once it verifies and matches the log record for record (their leaf hashes stay).

    Raises:
        ArchiveInvalid: the archive does not verify, is of another log, does not follow the
            last pruned one, or differs from the log.
        AuditUnavailable: the log cannot be written.
    """
    leaves: list[bytes] = []
    archived = verify_archive(out, roots, signer, leaves=leaves)
    try:
        db = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS pruned ("
                " start INTEGER PRIMARY KEY, end INTEGER NOT NULL, archive TEXT NOT NULL)"
            )
            db.execute("BEGIN IMMEDIATE")
            if _archived_up_to(db) != archived.start:
                raise ArchiveInvalid(
                    f"the archive starts at record {archived.start}; the log is pruned up to"
                    f" {_archived_up_to(db)}"
                )
            stored = db.execute(
                "SELECT token FROM checkpoints WHERE size = ?", (archived.end,)
            ).fetchone()
            if stored is None or stored[0] != archived.checkpoint.token:
                raise ArchiveInvalid("the archive's checkpoint is not one of this log's")
            for first in range(archived.start, archived.end, _BATCH):
                last = min(first + _BATCH, archived.end)
                found = [
                    bytes(leaf)
                    for (leaf,) in db.execute(
                        "SELECT leaf FROM records WHERE seq >= ? AND seq < ? ORDER BY seq",
                        (first, last),
                    )
                ]
                if found != leaves[first - archived.start : last - archived.start]:
                    raise ArchiveInvalid(f"records {first} to {last - 1} differ from the log's")
            feed = _feed_position(db)
            if feed is not None and feed < archived.end:
                raise ArchiveInvalid(
                    f"the access feed has passed {feed} records only; records up to"
                    f" {archived.end} cannot be pruned before it reported them"
                )
            # Certificate and body-key records stay: later seals and bodies depend on them.
            db.execute(
                "UPDATE records SET body = X'' WHERE seq >= ? AND seq < ?"
                " AND NOT (json_valid(CAST(body AS TEXT))"
                " AND COALESCE(json_extract(CAST(body AS TEXT), '$.kind'), '') IN (?, ?))",
                (archived.start, archived.end, CERTIFICATE, BODY_KEY),
            )
            db.execute(
                "INSERT INTO pruned (start, end, archive) VALUES (?, ?, ?)",
                (archived.start, archived.end, out.name),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()
    except sqlite3.Error as error:
        raise AuditUnavailable(f"audit log {path}: {error}") from None
    return archived
