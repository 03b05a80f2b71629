"""Archives: closed segments of a log as self-verifying files; retention removes the bodies of
archived records only, and the log still verifies and proves."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from audit import (
    ArchiveInvalid,
    AuditError,
    AuditLog,
    LogTampered,
    archive,
    prune,
    verify_archive,
    verify_log,
    verify_record,
)
from tests.audit.test_log import NOW, OTHER, OWNER, ROOTS, body, filled, log, signer

__all__ = ["log"]  # the fixture


def archived(log: AuditLog, tmp_path: Path, name: str = "segment.jsonl") -> Path:
    out = tmp_path / name
    archive(log.path, out)
    return out


def test_a_segment_verifies_on_its_own_and_pruning_keeps_the_log_provable(
    log: AuditLog, tmp_path: Path
) -> None:
    filled(log, 300, checkpoint_every=100)
    first = archived(log, tmp_path)
    checked = verify_archive(first, ROOTS, OWNER)
    assert (checked.start, checked.end) == (0, 300)
    prune(log.path, first, ROOTS, OWNER)

    filled_more = [log.append_now(body(n)) for n in range(300, 777)]
    assert filled_more[-1] == 776
    last = log.checkpoint(NOW)
    second = archived(log, tmp_path, "second.jsonl")
    assert (verify_archive(second, ROOTS, OWNER).start, last.size) == (300, 777)
    prune(log.path, second, ROOTS, OWNER)
    log.append_now(body(777))  # not archived: kept

    verified = verify_log(log.path, ROOTS, OWNER)
    assert (verified.records, verified.archived, verified.covered) == (778, 777, 777)
    db = sqlite3.connect(log.path)
    empty = db.execute("SELECT COUNT(*) FROM records WHERE length(body) = 0").fetchone()[0]
    assert empty == 777
    assert db.execute("SELECT body FROM records WHERE seq = 777").fetchone()[0] == body(777)
    db.close()
    # Proofs still hold for archived records, whose bodies the archive keeps.
    verify_record(body(5), 5, log.inclusion(5, 777), last)
    # The log opens again and goes on.
    key, chain = signer()
    reopened = AuditLog(log.path, log.name, key, chain)
    try:
        assert reopened.size == 778
    finally:
        reopened.close()


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write(path: Path, documents: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(d) + "\n" for d in documents))


@pytest.mark.parametrize(
    "change",
    ["body", "removed", "added", "reordered", "left", "cut_off", "checkpoint", "count"],
)
def test_a_changed_archive_does_not_verify(log: AuditLog, tmp_path: Path, change: str) -> None:
    filled(log, 50, checkpoint_every=20)  # checkpoints at 20 and 40
    first = archived(log, tmp_path)  # 0 to 40
    prune(log.path, first, ROOTS, OWNER)
    filled(log, 30)
    log.checkpoint(NOW)
    out = archived(log, tmp_path, "second.jsonl")  # 40 to 80: a non-empty left edge
    documents = lines(out)
    header, records, end = documents[0], documents[1:-1], documents[-1]
    if change == "body":
        records[3]["body"] = "eyJvdGhlciI6MX0="
    elif change == "removed":
        del records[3]
    elif change == "added":
        records.append({"seq": 80, "body": records[0]["body"]})
    elif change == "reordered":
        records[3]["seq"], records[4]["seq"] = records[4]["seq"], records[3]["seq"]
        records[3], records[4] = records[4], records[3]
    elif change == "left":
        header["left"] = ["00" * 32 for _ in header["left"]]  # type: ignore[union-attr]
    elif change == "cut_off":
        end = {}
    elif change == "checkpoint":
        header["end"] = 79
    else:
        end["records"] = 39
    write(out, [header, *records, *([end] if end else [])])
    with pytest.raises(ArchiveInvalid):
        verify_archive(out, ROOTS, OWNER)
    with pytest.raises(ArchiveInvalid):
        prune(log.path, out, ROOTS, OWNER)
    assert verify_log(log.path, ROOTS, OWNER).archived == 40  # nothing more was removed


def test_pruning_takes_only_an_archive_of_this_log_that_follows_the_last_one(
    log: AuditLog, tmp_path: Path
) -> None:
    filled(log, 40, checkpoint_every=20)
    first = archived(log, tmp_path)
    with pytest.raises(ArchiveInvalid):  # another member's archive as far as the signer goes
        verify_archive(first, ROOTS, OTHER)
    key, chain = signer()
    other = AuditLog(tmp_path / "other.db", log.name, key, chain)
    try:
        filled(other, 40, checkpoint_every=40)
        with pytest.raises(ArchiveInvalid, match="not one of this log's"):
            prune(other.path, first, ROOTS, OWNER)
    finally:
        other.close()
    prune(log.path, first, ROOTS, OWNER)
    with pytest.raises(ArchiveInvalid, match="pruned up to 40"):
        prune(log.path, first, ROOTS, OWNER)  # again
    with pytest.raises(AuditError, match="nothing to archive"):
        archive(log.path, tmp_path / "empty.jsonl")


def test_the_cli_archives_verifies_and_prunes(log: AuditLog, tmp_path: Path) -> None:
    filled(log, 30, checkpoint_every=30)
    roots = tmp_path / "roots.pem"
    roots.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in ROOTS))
    out = tmp_path / "segment.jsonl"

    def pintu(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pintu", "audit", *arguments],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    made = pintu("archive", str(log.path), "--out", str(out))
    assert made.returncode == 0, made.stderr
    assert "records 0 to 29" in made.stdout
    checked = pintu("verify-archive", str(out), "--roots", str(roots), "--signer", str(OWNER))
    assert checked.returncode == 0, checked.stderr
    pruned = pintu(
        "prune", str(log.path), "--archive", str(out), "--roots", str(roots), "--signer", str(OWNER)
    )
    assert pruned.returncode == 0, pruned.stderr
    assert verify_log(log.path, ROOTS, OWNER).archived == 30
    out.write_text(out.read_text().replace('"seq":3,', '"seq":4,', 1))
    broken = pintu("verify-archive", str(out), "--roots", str(roots), "--signer", str(OWNER))
    assert broken.returncode == 1
    assert "archive_invalid" in broken.stderr


def test_pruning_keeps_certificates_and_waits_for_the_access_feed(
    log: AuditLog, tmp_path: Path
) -> None:
    """Later seals and kept bodies depend on certificate and body-key records: their bodies
    stay. Records the access feed has not reported yet are not pruned."""
    certificate = b'{"at":"2026-11-25T10:00:00Z","kind":"certificate","message_id":"",'
    certificate += b'"method":"","role":"provider","thumbprint":"t"}'
    log.append_now(certificate)
    filled(log, 19)
    log.checkpoint(NOW)
    out = archived(log, tmp_path)
    log.set_cursor("access_feed", 10)
    with pytest.raises(ArchiveInvalid, match="access feed"):
        prune(log.path, out, ROOTS, OWNER)
    log.set_cursor("access_feed", 20)
    prune(log.path, out, ROOTS, OWNER)
    assert log.record(0) == certificate
    assert log.record(1) == b""
    assert verify_log(log.path, ROOTS, OWNER).archived == 20


@pytest.mark.parametrize("marked", [(5, 6), (0, 7), (20, 30)])
def test_records_marked_archived_other_than_by_pruning_are_found(
    log: AuditLog, tmp_path: Path, marked: tuple[int, int]
) -> None:
    """The archived ranges sit outside the tree: ones pruning never leaves (not from record 0,
    not ending at a checkpoint, not following the last) hide records and are reported."""
    filled(log, 40, checkpoint_every=20)
    prune(log.path, archived(log, tmp_path), ROOTS, OWNER)  # 0 to 40: fine
    db = sqlite3.connect(log.path)
    with db:
        if marked[0] >= 20:
            db.execute("DELETE FROM pruned")
        db.execute("INSERT OR REPLACE INTO pruned VALUES (?, ?, 'forged')", marked)
    db.close()
    with pytest.raises(LogTampered, match="marked archived"):
        verify_log(log.path, ROOTS, OWNER)
