"""The decision log: every decision (and every failure to decide) with its id, the digest of its
input, its result and the policy revision, exportable as OPA decision-log events.

Records are JSON lines appended to a file and flushed to disk before the decision is used;
decisions made at the same time share one write and one ``fsync`` (group commit, in a worker
thread, so the event loop never waits on the disk). The
input itself is not kept (it names citizens and purposes): its SHA-256 is, so that an audit
record holding the same input can be matched to its decision; an exported event says the input
was erased, as OPA marks masked fields.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from policy._engine import ENTRYPOINT, PolicyEngine
from policy._errors import PolicyError
from policy._model import Decision, PolicyInput


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One line of the decision log."""

    decision_id: str
    time: dt.datetime
    input_sha256: str
    revision: str
    allow: bool
    reasons: tuple[str, ...]
    obligations: tuple[str, ...]
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        """The record as stored."""
        return {
            "decision_id": self.decision_id,
            "time": self.time.isoformat(),
            "input_sha256": self.input_sha256,
            "revision": self.revision,
            "allow": self.allow,
            "reasons": list(self.reasons),
            "obligations": list(self.obligations),
            "error": self.error,
        }

    @staticmethod
    def from_json(document: dict[str, Any]) -> DecisionRecord:
        """A stored record (PolicyError: not one)."""
        strings = ("decision_id", "time", "input_sha256", "revision", "error")
        lists = ("reasons", "obligations")
        if (
            not all(isinstance(document.get(k), str) for k in strings)
            or not isinstance(document.get("allow"), bool)
            or not all(
                isinstance(document.get(k), list) and all(isinstance(c, str) for c in document[k])
                for k in lists
            )
        ):
            raise PolicyError(f"not a decision record: {str(document)[:200]}")
        try:
            moment = dt.datetime.fromisoformat(document["time"])
        except ValueError as error:
            raise PolicyError(f"not a decision record: {error}") from None
        return DecisionRecord(
            document["decision_id"],
            moment,
            document["input_sha256"],
            document["revision"],
            document["allow"],
            tuple(document["reasons"]),
            tuple(document["obligations"]),
            document["error"],
        )

    def to_opa_event(self, instance: str) -> dict[str, Any]:
        """The record as an OPA decision-log event (``instance`` labels the security server)."""
        event: dict[str, Any] = {
            "labels": {"id": instance, "app": "pintu"},
            "decision_id": self.decision_id,
            "path": ENTRYPOINT,
            "erased": ["/input"],
            "input_sha256": self.input_sha256,
            "bundles": {"pintu": {"revision": self.revision}},
            "timestamp": self.time.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        }
        if self.error:
            event["error"] = {"code": "policy_error", "message": self.error}
        else:
            event["result"] = {
                "allow": self.allow,
                "reasons": list(self.reasons),
                "obligations": list(self.obligations),
            }
        return event


class DecisionLog:
    """An append-only file of :class:`DecisionRecord` lines."""

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = path
        # Without durable, records are handed to the operating system but not synced: they
        # survive the process, not a power cut (for a server whose audit log, synced, holds
        # every decision's id and result).
        self.durable = durable
        self._open: TextIO | None = None
        self._pending: list[str] = []
        self._waiting: list[asyncio.Future[None]] = []
        self._writer: asyncio.Task[None] | None = None
        self.writes = 0

    def append(self, record: DecisionRecord) -> None:
        """Add ``record``, on disk before this returns (blocking: outside an event loop).

        Raises:
            PolicyError: the log cannot be written (the decision must not be used then).
        """
        self._write([_line(record)])

    async def write(self, record: DecisionRecord) -> None:
        """Add ``record``, on disk before this returns; records written meanwhile by other
        tasks share the same write and ``fsync``.

        Raises:
            PolicyError: the log cannot be written (the decision must not be used then).
        """
        if not self.durable:
            # Nothing to wait for on the disk: one buffered append, on the event loop.
            self._append_open(_line(record))
            return
        done = asyncio.get_running_loop().create_future()
        self._pending.append(_line(record))
        self._waiting.append(done)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="decision log")
            self._writer.add_done_callback(self._writer_ended)
        await done

    def _writer_ended(self, writer: asyncio.Task[None]) -> None:
        # A writer cancelled before it ran (or that failed) leaves no waiter hanging.
        if self._waiting and (writer.cancelled() or writer.exception() is not None):
            _settle(self._waiting, PolicyError(f"decision log {self.path}: the writer stopped"))
            self._pending, self._waiting = [], []

    async def _drain(self) -> None:
        while self._pending:
            lines, waiting = self._pending, self._waiting
            self._pending, self._waiting = [], []
            try:
                await asyncio.to_thread(self._write, lines)
            except PolicyError as error:
                _settle(waiting, error)
            except BaseException as error:  # no waiter may be left hanging, even on cancel
                failure = PolicyError(f"decision log {self.path}: {type(error).__name__}")
                _settle(waiting + self._waiting, failure)
                self._pending, self._waiting = [], []
                if not isinstance(error, Exception):
                    raise
            else:
                _settle(waiting, None)

    def close(self) -> None:
        """Close the file a log that is not synced keeps open."""
        if self._open is not None:
            self._open.close()
            self._open = None

    def _append_open(self, line: str) -> None:
        try:
            if self._open is None:
                self._open = self.path.open("a", encoding="utf-8")
            self._open.write(line)
            self._open.flush()
        except OSError as error:
            self._open = None
            raise PolicyError(f"decision log {self.path}: {error.strerror}") from None
        self.writes += 1

    def _write(self, lines: list[str]) -> None:
        try:
            with self.path.open("a", encoding="utf-8") as log:
                log.write("".join(lines))
                log.flush()
                if self.durable:
                    os.fsync(log.fileno())
        except OSError as error:
            raise PolicyError(f"decision log {self.path}: {error.strerror}") from None
        self.writes += 1

    def records(self) -> Iterator[DecisionRecord]:
        """Every record, oldest first.

        Raises:
            PolicyError: unreadable, or a line that is not a record.
        """
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise PolicyError(f"decision log {self.path}: {error}") from None
        for number, line in enumerate(lines, 1):
            try:
                document = json.loads(line)
            except ValueError:
                raise PolicyError(f"decision log {self.path}:{number}: not JSON") from None
            if not isinstance(document, dict):
                raise PolicyError(f"decision log {self.path}:{number}: not a record")
            yield DecisionRecord.from_json(document)


def _settle(waiting: list[asyncio.Future[None]], failure: PolicyError | None) -> None:
    for done in waiting:
        if done.done():  # its caller gave up meanwhile
            continue
        if failure is None:
            done.set_result(None)
        else:
            done.set_exception(failure)


def _line(record: DecisionRecord) -> str:
    return json.dumps(record.to_json(), sort_keys=True, separators=(",", ":")) + "\n"


class LoggedEngine:
    """``engine`` whose every decision — and every failure to decide — is logged first."""

    def __init__(self, engine: PolicyEngine, log: DecisionLog) -> None:
        self._engine = engine
        self._log = log

    @property
    def revision(self) -> str:
        """The engine's revision."""
        return self._engine.revision

    async def decide(self, policy_input: PolicyInput) -> Decision:
        """The engine's decision, once it is in the log.

        Raises:
            PolicyError: the engine's, logged with a decision id of its own; or the log cannot
                be written (the decision is then not used).
        """
        now = dt.datetime.now(dt.UTC)
        try:
            digest = policy_input.digest()
            decision = await self._engine.decide(policy_input)
        except Exception as error:  # logged whatever it is, and answered as a PolicyError
            await self._log.write(
                DecisionRecord(
                    str(uuid.uuid4()),
                    now,
                    _digest_or_blank(policy_input),
                    self._engine.revision,
                    False,
                    (),
                    (),
                    str(error),
                )
            )
            if isinstance(error, PolicyError):
                raise
            raise PolicyError(f"the policy engine failed: {type(error).__name__}") from None
        await self._log.write(
            DecisionRecord(
                decision.decision_id,
                now,
                digest,
                decision.revision,
                decision.allow,
                decision.reasons,
                decision.obligations,
            )
        )
        return decision


def _digest_or_blank(policy_input: PolicyInput) -> str:
    try:
        return policy_input.digest()
    except PolicyError:
        return ""
