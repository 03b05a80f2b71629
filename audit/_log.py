"""A security server's tamper-evident log: records appended to a Merkle tree (RFC 9162), and
checkpoints — the tree's size and root, signed with the member's document-signing key — that
fix everything before them.

Records are opaque bytes here (their meaning is the caller's: see :class:`AuditRecord`). They are
stored in SQLite with their leaf hashes, durably (``synchronous=FULL``) before :meth:`append`
returns; records appended at the same moment share one transaction and one sync (group commit,
in a worker thread). The log keeps the tree's right edge (its *frontier*: the roots of its
perfect subtrees) in memory, so a checkpoint costs O(log n) hashes, not a pass over the log.

:func:`verify_log` re-reads a log file and finds any record modified, deleted, inserted,
reordered or cut off before the last checkpoint, and any checkpoint that is forged or does not
extend the one before it.

With a :class:`~audit.Timestamper`, :meth:`AuditLog.stamp_pending` has an outside time-stamping
authority (RFC 3161) stamp each checkpoint's token, after the fact and outside the log's lock,
so a TSA that is down never holds up records or checkpoints; :func:`verify_log` checks the
stamps when given the TSA's roots.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from audit._merkle import (
    EMPTY_ROOT,
    ProofInvalid,
    consistency_proof_of,
    inclusion_proof_of,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from audit._merkle import root as merkle_root
from pki import JwsInvalid, sign_jws, unb64url, verify_jws
from proto import PartyId

if TYPE_CHECKING:
    from audit._timestamp import Timestamper

CHECKPOINT_TYPE = "pintu.audit.checkpoint"
# The subtrees whose hashes a log stores: 2**NODE_HEIGHT leaves and more, so that a proof
# reads at most about NODE_HEIGHT * 2**NODE_HEIGHT leaves per level of the tree.
NODE_HEIGHT = 8
# How long a record appended with append_soon may wait for a durable write to ride along with.
LAZY_SECONDS = 0.05
# How far a TSA's time may lie before a checkpoint's own ``at`` (the two clocks' disagreement and
# the TSA's accuracy) before verify_log calls the checkpoint dated after it existed.
TIMESTAMP_SKEW = dt.timedelta(minutes=2)
# The message id of a record that is a JSON object with one ("" for certificate records, NULL
# for other bodies): indexed, so that an exchange's records are found without a scan.
MESSAGE_ID_OF_RECORD = (
    "(CASE WHEN json_valid(CAST(body AS TEXT))"
    " THEN json_extract(CAST(body AS TEXT), '$.message_id') END)"
)
# An exchange's records, by message id (the expression matches the index).
RECORDS_OF_MESSAGE = f"SELECT seq, body FROM records WHERE {MESSAGE_ID_OF_RECORD} = ? ORDER BY seq"  # noqa: S608
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS records ("
    " seq INTEGER PRIMARY KEY, body BLOB NOT NULL, leaf BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS checkpoints ("
    " size INTEGER PRIMARY KEY, root BLOB NOT NULL, at TEXT NOT NULL, token TEXT NOT NULL)",
    # One RFC 3161 reply (DER TimeStampResp) per checkpoint, over its token; ``at`` is the time
    # stamped, for reading (verification takes it from the reply).
    f"CREATE INDEX IF NOT EXISTS records_by_message ON records ({MESSAGE_ID_OF_RECORD})",
    # Hashes of the perfect subtrees of 2**NODE_HEIGHT leaves and more (a cache for proofs;
    # verification never reads it).
    "CREATE TABLE IF NOT EXISTS nodes ("
    " height INTEGER NOT NULL, position INTEGER NOT NULL, hash BLOB NOT NULL,"
    " PRIMARY KEY (height, position)) WITHOUT ROWID",
    # Positions of the log's readers (e.g. the access feed), outside the Merkle tree.
    "CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS timestamps ("
    " size INTEGER PRIMARY KEY, reply BLOB NOT NULL, at TEXT NOT NULL)",
)


class AuditError(Exception):
    """Root of the audit log's errors; ``code`` is stable."""

    code = "audit_error"


class AuditUnavailable(AuditError):
    """The log cannot be written or read (the exchange must fail closed)."""

    code = "audit_unavailable"


class LogTampered(AuditError):
    """The log does not verify; the message says where and how."""

    code = "audit_log_tampered"


class Frontier:
    """The right edge of a Merkle tree: enough to append leaves and compute the root."""

    def __init__(self) -> None:
        # (height, hash) of each perfect subtree, left to right, heights strictly decreasing.
        self._nodes: list[tuple[int, bytes]] = []
        self.size = 0

    def nodes(self) -> list[bytes]:
        """The roots of the perfect subtrees that make up the tree, left to right."""
        return [node for _, node in self._nodes]

    @staticmethod
    def from_nodes(size: int, nodes: Sequence[bytes]) -> Frontier:
        """The frontier of a tree of ``size`` leaves from its :meth:`nodes` (LogTampered: not
        as many as ``size`` has perfect subtrees)."""
        heights = [h for h in range(size.bit_length() - 1, -1, -1) if size >> h & 1]
        if len(heights) != len(nodes) or any(len(node) != 32 for node in nodes):
            raise LogTampered(f"a tree of {size} leaves has {len(heights)} subtree roots")
        frontier = Frontier()
        frontier._nodes = list(zip(heights, nodes, strict=True))
        frontier.size = size
        return frontier

    def copy(self) -> Frontier:
        """An independent copy."""
        twin = Frontier()
        twin._nodes = list(self._nodes)
        twin.size = self.size
        return twin

    def append(self, leaf: bytes, completed: list[tuple[int, int, bytes]] | None = None) -> None:
        """Add one leaf hash; with ``completed``, add to it the (height, position, hash) of
        every perfect subtree of at least 2**NODE_HEIGHT leaves this completes."""
        height, node = 0, leaf
        while self._nodes and self._nodes[-1][0] == height:
            _, left = self._nodes.pop()
            node = node_hash(left, node)
            height += 1
            if completed is not None and height >= NODE_HEIGHT:
                completed.append((height, (self.size + 1 >> height) - 1, node))
        self._nodes.append((height, node))
        self.size += 1

    def root(self) -> bytes:
        """The tree head of the leaves appended."""
        if not self._nodes:
            return EMPTY_ROOT
        hashed = self._nodes[-1][1]
        for _, left in reversed(self._nodes[:-1]):
            hashed = node_hash(left, hashed)
        return hashed


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head: ``size`` records whose tree has ``root``, as of ``at``."""

    log: str
    size: int
    root: bytes
    at: dt.datetime
    token: str

    @staticmethod
    def sign(
        log: str,
        size: int,
        tree_root: bytes,
        at: dt.datetime,
        key: ec.EllipticCurvePrivateKey,
        chain: Sequence[x509.Certificate],
    ) -> Checkpoint:
        """A checkpoint signed with ``key`` (a document-signing certificate in ``chain``)."""
        stamp = at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        payload = {
            "type": CHECKPOINT_TYPE,
            "log": log,
            "size": size,
            "root": tree_root.hex(),
            "at": stamp,
        }
        token = sign_jws(json.dumps(payload, sort_keys=True).encode(), key, chain)
        return Checkpoint(log, size, tree_root, at, token)

    @staticmethod
    def verified(token: str, roots: Iterable[x509.Certificate], signer: PartyId) -> Checkpoint:
        """The checkpoint in ``token``, its signature checked (LogTampered: not one, or not
        signed by ``signer`` under ``roots``)."""
        try:
            claimed = json.loads(_payload(token))
            at = dt.datetime.fromisoformat(claimed["at"])
            checked = verify_jws(token, roots, now=at, what="the checkpoint")
            payload = json.loads(checked.payload)
            if payload.get("type") != CHECKPOINT_TYPE:
                raise ValueError("not a checkpoint")
            checkpoint = Checkpoint(
                str(payload["log"]), int(payload["size"]), bytes.fromhex(payload["root"]), at, token
            )
        except JwsInvalid as error:
            raise LogTampered(str(error)) from None
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise LogTampered(f"a checkpoint is malformed: {error}") from None
        if checked.signer != signer:
            raise LogTampered(f"a checkpoint is signed by {checked.signer}, not by {signer}")
        return checkpoint


def _payload(token: str) -> bytes:
    return unb64url(token.split(".")[1])


class AuditLog:
    """One security server's log in an SQLite file (see the module docstring).

    ``timestamper``, if given, is the TSA :meth:`stamp_pending` asks to timestamp checkpoints.
    """

    def __init__(
        self,
        path: Path,
        name: str,
        key: ec.EllipticCurvePrivateKey,
        chain: Sequence[x509.Certificate],
        *,
        timestamper: Timestamper | None = None,
    ) -> None:
        self.path = path
        self.name = name
        self._key = key
        self._chain = tuple(chain)
        self._timestamper = timestamper
        # One catch-up at a time, so that no checkpoint is sent to the TSA twice at once; held
        # across the TSA's answers, unlike _lock.
        self._stamping = threading.Lock()
        self._frontier = Frontier()
        self._pending: list[tuple[bytes, asyncio.Future[int]]] = []
        self._lazy = 0
        self._lazy_timer: asyncio.TimerHandle | None = None
        # One connection, used from worker threads: one of them at a time.
        self._lock = threading.Lock()
        self._writer: asyncio.Task[None] | None = None
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._reopen()
        except (sqlite3.Error, ValueError, IndexError, KeyError) as error:
            raise AuditUnavailable(f"audit log {path}: {error}") from None
        self.writes = 0

    def _reopen(self) -> None:
        """Rebuild the tree from the records, checking each against its leaf and the tree
        against the newest checkpoint: a log changed while the server was down is never signed
        over (AuditUnavailable: it was changed)."""
        latest = self._db.execute(
            "SELECT size, token FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        signed = json.loads(_payload(latest[1])) if latest else None
        stored = self._db.execute("SELECT COUNT(*) FROM nodes").fetchone()[0]
        archived = pruned_ranges(self._db)
        completed: list[tuple[int, int, bytes]] = []
        for seq, body, leaf in self._db.execute("SELECT seq, body, leaf FROM records ORDER BY seq"):
            if seq != self._frontier.size or (
                leaf_hash(bytes(body)) != bytes(leaf) and not is_pruned(archived, seq, body)
            ):
                raise AuditUnavailable(
                    f"audit log {self.path}: record {self._frontier.size} was changed; the log"
                    " is not continued (check it with pintu audit verify)"
                )
            self._frontier.append(bytes(leaf), completed)
            if (
                signed is not None
                and self._frontier.size == signed["size"]
                and self._frontier.root().hex() != signed["root"]
            ):
                raise AuditUnavailable(
                    f"audit log {self.path}: the records do not match its last checkpoint"
                    " (check it with pintu audit verify)"
                )
        if signed is not None and self._frontier.size < signed["size"]:
            raise AuditUnavailable(
                f"audit log {self.path}: records of its last checkpoint are missing"
                " (check it with pintu audit verify)"
            )
        if stored != len(completed):  # a log from before the node cache, or one rebuilt
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM nodes")
                self._db.executemany(
                    "INSERT INTO nodes (height, position, hash) VALUES (?, ?, ?)", completed
                )

    @property
    def size(self) -> int:
        """Records written."""
        return self._frontier.size

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    async def aclose(self, now: dt.datetime | None = None) -> None:
        """Wait for pending appends, sign a last checkpoint (with ``now``) if records were added
        since the newest one, and close the file."""
        if self._lazy_timer is not None:
            self._lazy_timer.cancel()
        self._flush()
        writer = self._writer
        if writer is not None:
            await asyncio.gather(writer, return_exceptions=True)
        latest = self.latest_checkpoint()
        if now is not None and self.size and (latest is None or latest.size < self.size):
            # A failure is the caller's to notice in its checkpoints; the records stay verifiable.
            with contextlib.suppress(AuditError):
                await asyncio.to_thread(self.checkpoint, now)
        self.close()

    # -- appending ---------------------------------------------------------------------------

    def append_now(self, body: bytes) -> int:
        """Append one record, durably, blocking (outside an event loop); its sequence number
        (0-based).

        Raises:
            AuditUnavailable: it could not be written.
        """
        return self._write([body])[0]

    def append_many(self, bodies: Sequence[bytes]) -> list[int]:
        """Append records in one transaction, durably, blocking (outside an event loop); their
        sequence numbers.

        Raises:
            AuditUnavailable: they could not be written (none was).
        """
        return self._write(list(bodies))

    async def append(self, body: bytes) -> int:
        """Append one record, on disk before this returns; records appended meanwhile share the
        same transaction. Its sequence number (0-based).

        Raises:
            AuditUnavailable: it could not be written (nothing of its batch was).
        """
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((body, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="audit log")
        return await done

    def append_soon(self, body: bytes) -> asyncio.Future[int]:
        """Append one record with the next durable write, or within :data:`LAZY_SECONDS` when
        none comes: for records nothing waits on (an exchange's outcome), so that they cost no
        sync of their own. The future gives its sequence number (or AuditUnavailable)."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((body, done))
        self._lazy += 1
        if self._lazy_timer is None:
            self._lazy_timer = asyncio.get_running_loop().call_later(LAZY_SECONDS, self._flush)
        return done

    def _flush(self) -> None:
        self._lazy_timer = None
        if self._pending and (self._writer is None or self._writer.done()):
            self._writer = asyncio.create_task(self._drain(), name="audit log")

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            self._lazy = 0
            try:
                numbers = await asyncio.to_thread(self._write, [body for body, _ in batch])
            except BaseException as error:
                failure = (
                    error
                    if isinstance(error, AuditUnavailable)
                    else AuditUnavailable(f"audit log {self.path}: {type(error).__name__}")
                )
                for _, done in [*batch, *self._pending]:
                    if not done.done():
                        done.set_exception(failure)
                self._pending = []
                if not isinstance(error, Exception):
                    raise
                continue
            for (_, done), number in zip(batch, numbers, strict=True):
                if not done.done():
                    done.set_result(number)

    def _write(self, bodies: list[bytes]) -> list[int]:
        with self._lock:
            return self._write_locked(bodies)

    def _write_locked(self, bodies: list[bytes]) -> list[int]:
        leaves = [leaf_hash(body) for body in bodies]
        first = self._frontier.size
        grown = self._frontier.copy()
        completed: list[tuple[int, int, bytes]] = []
        for leaf in leaves:
            grown.append(leaf, completed)
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                rows = [
                    (first + n, body, leaf)
                    for n, (body, leaf) in enumerate(zip(bodies, leaves, strict=True))
                ]
                self._db.executemany("INSERT INTO records (seq, body, leaf) VALUES (?, ?, ?)", rows)
                if completed:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO nodes (height, position, hash) VALUES (?, ?, ?)",
                        completed,
                    )
        except sqlite3.Error as error:
            raise AuditUnavailable(f"audit log {self.path}: {error}") from None
        self._frontier = grown
        self.writes += 1
        return list(range(first, first + len(bodies)))

    # -- checkpoints and proofs --------------------------------------------------------------

    def checkpoint(self, now: dt.datetime) -> Checkpoint:
        """Sign and store the current tree head (AuditUnavailable: not stored)."""
        with self._lock:
            return self._checkpoint_locked(now)

    def _checkpoint_locked(self, now: dt.datetime) -> Checkpoint:
        signed = Checkpoint.sign(
            self.name, self._frontier.size, self._frontier.root(), now, self._key, self._chain
        )
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                # A checkpoint signed again over the same tree replaces the one before; a
                # timestamp of that one would no longer match, so it goes too, and
                # stamp_pending stamps the new one.
                self._db.execute("DELETE FROM timestamps WHERE size = ?", (signed.size,))
                self._db.execute(
                    "INSERT OR REPLACE INTO checkpoints (size, root, at, token)"
                    " VALUES (?, ?, ?, ?)",
                    (signed.size, signed.root, signed.at.isoformat(), signed.token),
                )
        except sqlite3.Error as error:
            raise AuditUnavailable(f"audit log {self.path}: {error}") from None
        return signed

    def stamp_pending(self, limit: int = 100) -> int:
        """Have the timestamper stamp up to ``limit`` stored checkpoints that have no timestamp
        yet, oldest first, and store each reply as it comes; how many were stored (0 without a
        timestamper).

        Blocking: call it from a worker thread (``asyncio.to_thread``). The TSA is asked
        outside the log's lock, so appends and checkpoints go on meanwhile. It stops at the
        first failure, keeping the timestamps had until then; a later call catches up on every
        checkpoint still unstamped, so the caller only needs to log the error and call again
        (after the next checkpoint, say). A checkpoint signed again over the same tree while
        its timestamp was being fetched is left for the next call.

        Raises:
            TimestampUnavailable: the TSA gave no timestamp (down, an HTTP error, garbage, a
                refusal).
            TimestampInvalid: the TSA's reply does not verify (e.g. it is another TSA's).
            AuditUnavailable: the log cannot be read or written.
            ValueError: ``limit`` is not positive.
        """
        if limit < 1:
            raise ValueError(f"limit: must be positive, not {limit}")
        timestamper = self._timestamper
        if timestamper is None:
            return 0
        with self._stamping:
            try:
                with self._lock:
                    pending = self._db.execute(
                        "SELECT c.size, c.token FROM checkpoints AS c"
                        " LEFT JOIN timestamps AS t ON t.size = c.size"
                        " WHERE t.size IS NULL ORDER BY c.size LIMIT ?",
                        (limit,),
                    ).fetchall()
            except sqlite3.Error as error:
                raise AuditUnavailable(f"audit log {self.path}: {error}") from None
            stored = 0
            for size, token in pending:
                timestamp = timestamper.stamp(token.encode())  # network: not under _lock
                try:
                    with self._lock:
                        # Only if the checkpoint stamped is still the one stored for its size.
                        stored += self._db.execute(
                            "INSERT OR IGNORE INTO timestamps (size, reply, at)"
                            " SELECT ?, ?, ? WHERE EXISTS"
                            " (SELECT 1 FROM checkpoints WHERE size = ? AND token = ?)",
                            (size, timestamp.reply, timestamp.at.isoformat(), size, token),
                        ).rowcount
                except sqlite3.Error as error:
                    raise AuditUnavailable(f"audit log {self.path}: {error}") from None
            return stored

    def _subtree(self, start: int, end: int) -> bytes:
        """The head of the subtree of records [start, end) (called with the lock held)."""
        return subtree_head(self._db, start, end)

    def records_from(self, start: int, count: int) -> list[tuple[int, bytes]]:
        """Up to ``count`` records from ``start`` on: (sequence number, body)."""
        try:
            with self._lock:
                return [
                    (seq, bytes(body))
                    for seq, body in self._db.execute(
                        "SELECT seq, body FROM records WHERE seq >= ? ORDER BY seq LIMIT ?",
                        (start, count),
                    )
                ]
        except sqlite3.Error as error:
            raise AuditUnavailable(f"audit log {self.path}: {error}") from None

    def cursor(self, name: str) -> int:
        """The position reader ``name`` stored (0 when none)."""
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT position FROM cursors WHERE name = ?", (name,)
                ).fetchone()
        except sqlite3.Error as error:
            raise AuditUnavailable(f"audit log {self.path}: {error}") from None
        return int(row[0]) if row else 0

    def set_cursor(self, name: str, position: int) -> None:
        """Store reader ``name``'s position, durably."""
        try:
            with self._lock, self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT INTO cursors (name, position) VALUES (?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                    (name, position),
                )
        except sqlite3.Error as error:
            raise AuditUnavailable(f"audit log {self.path}: {error}") from None

    def record(self, seq: int) -> bytes:
        """The body of record ``seq`` (AuditError: none)."""
        with self._lock:
            row = self._db.execute("SELECT body FROM records WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise AuditError(f"no record {seq} in {self.path}")
        return bytes(row[0])

    def latest_checkpoint(self) -> Checkpoint | None:
        """The checkpoint of the largest tree, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT size, root, at, token FROM checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        return Checkpoint(
            self.name, row[0], bytes(row[1]), dt.datetime.fromisoformat(row[2]), row[3]
        )

    def inclusion(self, seq: int, size: int) -> list[bytes]:
        """The inclusion proof of record ``seq`` in the tree of ``size`` records (O(log n)
        stored hashes and a few hundred leaves read)."""
        if size > self.size:
            raise AuditError(f"the log holds {self.size} records, not {size}")
        try:
            with self._lock:
                return inclusion_proof_of(seq, size, self._subtree)
        except (ProofInvalid, sqlite3.Error) as error:
            raise AuditError(str(error)) from None

    def consistency(self, first: int, second: int) -> list[bytes]:
        """The consistency proof from the tree of ``first`` records to that of ``second``."""
        if second > self.size:
            raise AuditError(f"the log holds {self.size} records, not {second}")
        try:
            with self._lock:
                return consistency_proof_of(first, second, self._subtree)
        except (ProofInvalid, sqlite3.Error) as error:
            raise AuditError(str(error)) from None


def subtree_head(db: sqlite3.Connection, start: int, end: int) -> bytes:
    """The head of the subtree of records [start, end) of the log open in ``db``: from the
    stored subtree hashes, and at most 2**NODE_HEIGHT leaves per piece read otherwise.

    Raises:
        AuditError: records of the range are missing.
        sqlite3.Error: the file cannot be read.
    """
    width = end - start
    if width >= 1 << NODE_HEIGHT and width & (width - 1) == 0 and start % width == 0:
        row = db.execute(
            "SELECT hash FROM nodes WHERE height = ? AND position = ?",
            (width.bit_length() - 1, start // width),
        ).fetchone()
        if row is not None:
            return bytes(row[0])
    if width <= 1 << NODE_HEIGHT:
        leaves = [
            bytes(leaf)
            for (leaf,) in db.execute(
                "SELECT leaf FROM records WHERE seq >= ? AND seq < ? ORDER BY seq", (start, end)
            )
        ]
        if len(leaves) != width:
            raise AuditError(f"records {start} to {end - 1} are not all in the log")
        return merkle_root(leaves)
    middle = start + (1 << ((width - 1).bit_length() - 1))
    return node_hash(subtree_head(db, start, middle), subtree_head(db, middle, end))


@dataclass(frozen=True, slots=True)
class Verified:
    """What :func:`verify_log` established."""

    records: int
    checkpoints: int
    covered: int  # records fixed by the largest checkpoint (kept in the log or trusted)
    timestamped: int = 0  # checkpoints with a verified RFC 3161 timestamp (given tsa_roots)
    archived: int = 0  # records whose bodies were removed once archived (leaves kept)

    @property
    def uncovered(self) -> int:
        """Records written after the last checkpoint (not yet tamper-evident)."""
        return self.records - self.covered


def verify_log(
    path: Path,
    roots: Iterable[x509.Certificate],
    signer: PartyId,
    *,
    name: str | None = None,
    trusted: Iterable[Checkpoint] = (),
    tsa_roots: Iterable[x509.Certificate] | None = None,
    tsa_intermediates: Iterable[x509.Certificate] = (),
    tsa_skew: dt.timedelta = TIMESTAMP_SKEW,
) -> Verified:
    """Check a log file: every record against its leaf hash, every checkpoint's signature (by
    ``signer``'s document-signing certificate under ``roots``) and log ``name``, each
    checkpoint's root against the records before it — and the same for ``trusted``
    checkpoints kept outside the log (an auditor's copy, a published one): only those reveal
    records cut off after the last checkpoint the log still holds.

    With ``tsa_roots`` (the TSA's CA certificates; ``tsa_intermediates`` if its replies lack
    them), every stored RFC 3161 timestamp is checked too: signed by a TSA under those roots,
    over exactly its checkpoint's token, and at a time not before the checkpoint's ``at`` less
    ``tsa_skew``. Without them timestamps are not read (``timestamped`` is 0).

    Raises:
        LogTampered: the first problem found, with the record or checkpoint at fault.
        AuditUnavailable: the file cannot be read.
        ValueError: ``tsa_roots`` is given but empty.
    """
    roots = list(roots)
    stamps: list[tuple[int, object, object]] = []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        try:
            db.execute("BEGIN")  # one snapshot of a log that may be growing
            tokens = [(size, t) for size, t in db.execute("SELECT size, token FROM checkpoints")]
            # Logs written before timestamps existed have no such table.
            if (
                tsa_roots is not None
                and db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'timestamps'"
                ).fetchone()
            ):
                stamps = db.execute(
                    "SELECT size, reply, at FROM timestamps ORDER BY size"
                ).fetchall()
            everything, stored = _checkpoints_to_check(tokens, roots, signer, name, trusted)
            # Records are checked as they are read: memory stays flat whatever the log's size.
            archived = pruned_ranges(db)
            _check_pruned(archived, {checkpoint.size for checkpoint in stored})
            rows = db.execute("SELECT seq, body, leaf FROM records ORDER BY seq")
            count, heads = _replay(
                rows, {checkpoint.size for checkpoint, _ in everything}, archived
            )
            db.execute("COMMIT")
        finally:
            db.close()
    except sqlite3.Error as error:
        raise AuditUnavailable(f"audit log {path}: {error}") from None
    for checkpoint, kept_outside in everything:
        where = "a trusted checkpoint" if kept_outside else "checkpoint"
        if checkpoint.size > count:
            raise LogTampered(
                f"the log was cut off: {where} of {checkpoint.size} records, {count} left"
            )
        if heads.get(checkpoint.size) != checkpoint.root:
            raise LogTampered(
                f"the records before {where} {checkpoint.size} are not those it signed"
                " (modified, deleted, inserted or reordered)"
            )
    covered = max((c.size for c, _ in everything), default=0)
    timestamped = 0
    if tsa_roots is not None:
        timestamped = _verify_timestamps(
            stamps, stored, list(tsa_roots), list(tsa_intermediates), tsa_skew
        )
    return Verified(
        count, len(stored), covered, timestamped, sum(end - start for start, end in archived)
    )


def _checkpoints_to_check(
    tokens: Sequence[tuple[int, str]],
    roots: list[x509.Certificate],
    signer: PartyId,
    name: str | None,
    trusted: Iterable[Checkpoint],
) -> tuple[list[tuple[Checkpoint, bool]], list[Checkpoint]]:
    """The log's checkpoints, verified, and the trusted ones, by size (kept outside: True)."""
    stored = []
    for size, token in tokens:
        checkpoint = Checkpoint.verified(token, roots, signer)
        if checkpoint.size != size:
            raise LogTampered(f"checkpoint row {size} holds the signed size {checkpoint.size}")
        stored.append(checkpoint)
    outside = [(checkpoint, True) for checkpoint in trusted]
    everything = sorted([*((c, False) for c in stored), *outside], key=lambda pair: pair[0].size)
    if name is not None:
        for checkpoint, _ in everything:
            if checkpoint.log != name:
                raise LogTampered(f"checkpoint {checkpoint.size} is of the log {checkpoint.log}")
    return everything, stored


def pruned_ranges(db: sqlite3.Connection) -> list[tuple[int, int]]:
    """The ranges of records whose bodies were removed after archiving (audit._archive)."""
    if not db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'pruned'"
    ).fetchone():
        return []
    return [(int(a), int(b)) for a, b in db.execute("SELECT start, end FROM pruned")]


def _check_pruned(archived: Sequence[tuple[int, int]], checkpoints: set[int]) -> None:
    """Archived ranges follow each other from the first record, each ending at a checkpoint
    (as pruning leaves them); anything else hides records (LogTampered)."""
    reached = 0
    for start, end in sorted(archived):
        if start != reached or end <= start or end not in checkpoints:
            raise LogTampered(
                f"records {start} to {end - 1} are marked archived, which pruning never leaves"
                " (archives follow each other from record 0 and end at checkpoints)"
            )
        reached = end


def is_pruned(archived: Sequence[tuple[int, int]], seq: int, body: bytes) -> bool:
    """Whether record ``seq`` is an archived one whose body was removed."""
    return not body and any(start <= seq < end for start, end in archived)


def _replay(
    rows: Iterable[tuple[int, bytes, bytes]],
    wanted: set[int],
    archived: Sequence[tuple[int, int]] = (),
) -> tuple[int, dict[int, bytes]]:
    """Check every record against its leaf hash; the number of records and the tree heads at
    the sizes ``wanted``."""
    heads: dict[int, bytes] = {0: EMPTY_ROOT}
    frontier = Frontier()
    for expected, (seq, body, leaf) in enumerate(rows):
        if seq != expected:
            raise LogTampered(f"record {expected} is missing (the next one is {seq})")
        if leaf_hash(bytes(body)) != bytes(leaf) and not is_pruned(archived, seq, body):
            raise LogTampered(f"record {seq} was modified (its leaf hash does not match)")
        frontier.append(bytes(leaf))
        if frontier.size in wanted:
            heads[frontier.size] = frontier.root()
    return frontier.size, heads


def _verify_timestamps(
    stamps: Sequence[tuple[int, object, object]],
    checkpoints: Sequence[Checkpoint],
    tsa_roots: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate],
    skew: dt.timedelta,
) -> int:
    # Imported here: audit._timestamp's errors derive from this module's AuditError.
    from audit._timestamp import TimestampInvalid, verify_timestamp

    if not tsa_roots:
        raise ValueError("tsa_roots: at least one CA certificate is needed")
    by_size = {checkpoint.size: checkpoint for checkpoint in checkpoints}
    for size, reply, at in stamps:
        checkpoint = by_size.get(size)
        if checkpoint is None:
            raise LogTampered(f"a timestamp of checkpoint {size}, which the log does not hold")
        if not isinstance(reply, bytes) or not isinstance(at, str):
            raise LogTampered(f"the timestamp row of checkpoint {size} is malformed")
        try:
            stamped = verify_timestamp(
                reply, checkpoint.token.encode(), tsa_roots, intermediates=intermediates
            )
        except TimestampInvalid as error:
            raise LogTampered(f"the timestamp of checkpoint {size}: {error}") from None
        if stamped < checkpoint.at - skew:
            raise LogTampered(
                f"checkpoint {size} says it was signed at {checkpoint.at.isoformat()}, but a TSA"
                f" stamped it at {stamped.isoformat()}, before that"
            )
        try:
            recorded = dt.datetime.fromisoformat(at)
        except ValueError:
            recorded = None
        if recorded != stamped:
            raise LogTampered(
                f"the timestamp row of checkpoint {size} gives the time {at}; its reply stamped"
                f" {stamped.isoformat()}"
            )
    return len(stamps)


def verify_record(body: bytes, seq: int, proof: Sequence[bytes], checkpoint: Checkpoint) -> None:
    """Check that ``body`` is record ``seq`` of the (already verified) ``checkpoint``'s tree
    (LogTampered: it is not)."""
    try:
        verify_inclusion(leaf_hash(body), seq, checkpoint.size, proof, checkpoint.root)
    except ProofInvalid as error:
        raise LogTampered(str(error)) from None


def verify_extension(older: Checkpoint, newer: Checkpoint, proof: Sequence[bytes]) -> None:
    """Check that ``newer``'s tree extends ``older``'s (LogTampered: it does not)."""
    try:
        verify_consistency(older.size, newer.size, proof, older.root, newer.root)
    except ProofInvalid as error:
        raise LogTampered(str(error)) from None
