"""The audit log: records appended durably and together, signed checkpoints, and verification
that finds every kind of tampering — modified, deleted, inserted, reordered or cut-off records,
forged checkpoints — with inclusion and consistency proofs checked offline."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import pki
from audit import (
    NODE_HEIGHT,
    AuditError,
    AuditLog,
    AuditUnavailable,
    Checkpoint,
    Frontier,
    LogTampered,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_extension,
    verify_log,
    verify_record,
)
from proto import MemberId

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)
OWNER = MemberId.parse("DEMO/GOV/POPREG")
OTHER = MemberId.parse("DEMO/GOV/TAX")
CA = pki.CertificateAuthority.create("DEMO", now=NOW - DAY, lifetime=DAY * 30)
ROOTS = [CA.certificate]


def signer(member: MemberId = OWNER) -> tuple[object, list[object]]:
    key = pki.generate_key()
    return key, [CA.issue_signing_certificate(member, key.public_key(), now=NOW, lifetime=DAY)]


@pytest.fixture
def log(tmp_path: Path) -> Iterator[AuditLog]:
    key, chain = signer()
    opened = AuditLog(tmp_path / "audit.db", "DEMO/GOV/POPREG/ss1", key, chain)
    yield opened
    opened.close()


def body(n: int) -> bytes:
    return f'{{"message_id": "{n:032x}", "decision": "allowed"}}'.encode()


def filled(log: AuditLog, count: int, checkpoint_every: int = 0) -> list[Checkpoint]:
    checkpoints = []
    for n in range(count):
        log.append_now(body(n))
        if checkpoint_every and (n + 1) % checkpoint_every == 0:
            checkpoints.append(log.checkpoint(NOW + dt.timedelta(seconds=n)))
    return checkpoints


def tamper(log: AuditLog, *statements: tuple[str, tuple[object, ...]]) -> None:
    db = sqlite3.connect(log.path)
    with db:
        for sql, values in statements:
            db.execute(sql, values)
    db.close()


def test_the_frontier_gives_the_rfcs_root_at_every_size() -> None:
    frontier, leaves = Frontier(), []
    for n in range(70):
        leaf = leaf_hash(body(n))
        frontier.append(leaf)
        leaves.append(leaf)
        assert frontier.root() == root(leaves)


def test_a_checkpointed_log_verifies(log: AuditLog) -> None:
    filled(log, 10, checkpoint_every=4)
    log.append_now(body(99))
    verified = verify_log(log.path, ROOTS, OWNER)
    assert (verified.records, verified.checkpoints, verified.covered) == (11, 2, 8)
    assert verified.uncovered == 3


def test_a_reopened_log_goes_on_where_it_stopped(log: AuditLog, tmp_path: Path) -> None:
    filled(log, 5)
    key, chain = signer()
    again = AuditLog(log.path, log.name, key, chain)
    assert again.size == 5
    assert again.append_now(body(5)) == 5
    again.checkpoint(NOW)
    again.close()
    assert verify_log(log.path, ROOTS, OWNER).covered == 6


async def test_records_appended_together_share_one_write(log: AuditLog) -> None:
    numbers = await asyncio.gather(*(log.append(body(n)) for n in range(50)))
    assert sorted(numbers) == list(range(50))
    assert 1 <= log.writes < 50
    assert [log.record(n) for n in numbers] == [body(n) for n in range(50)]


async def test_an_unwritable_log_fails_every_append_in_the_batch(log: AuditLog) -> None:
    log.close()  # the file is gone from under the writer
    outcomes = await asyncio.gather(
        *(log.append(body(n)) for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, AuditUnavailable) for o in outcomes), outcomes
    assert all(o.code == "audit_unavailable" for o in outcomes)


def test_a_log_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    key, chain = signer()
    with pytest.raises(AuditUnavailable):
        AuditLog(tmp_path / "missing" / "audit.db", "x", key, chain)


# -- tampering, one kind each -------------------------------------------------------------------


def tampered(log: AuditLog) -> str:
    with pytest.raises(LogTampered) as error:
        verify_log(log.path, ROOTS, OWNER)
    assert error.value.code == "audit_log_tampered"
    return str(error.value)


def test_a_modified_record_is_found(log: AuditLog) -> None:
    filled(log, 8, checkpoint_every=8)
    tamper(log, ("UPDATE records SET body = ? WHERE seq = 3", (b'{"decision": "refused"}',)))
    assert "record 3 was modified" in tampered(log)


def test_a_record_modified_with_its_leaf_is_found(log: AuditLog) -> None:
    filled(log, 8, checkpoint_every=8)
    forged = b'{"decision": "refused"}'
    tamper(
        log, ("UPDATE records SET body = ?, leaf = ? WHERE seq = 3", (forged, leaf_hash(forged)))
    )
    assert "not those it signed" in tampered(log)


def test_a_deleted_record_is_found(log: AuditLog) -> None:
    filled(log, 8, checkpoint_every=8)
    tamper(log, ("DELETE FROM records WHERE seq = 2", ()))
    assert "record 2 is missing" in tampered(log)


def test_a_deleted_record_with_the_rest_renumbered_is_found(log: AuditLog) -> None:
    filled(log, 8, checkpoint_every=8)
    tamper(
        log,
        ("DELETE FROM records WHERE seq = 2", ()),
        ("UPDATE records SET seq = seq - 1 WHERE seq > 2", ()),
    )
    assert "cut off" in tampered(log) or "not those it signed" in tampered(log)


def test_an_inserted_record_is_found(log: AuditLog) -> None:
    filled(log, 8, checkpoint_every=8)
    forged = b'{"decision": "allowed", "inserted": true}'
    tamper(
        log,
        ("UPDATE records SET seq = seq + 100 WHERE seq >= 4", ()),
        ("UPDATE records SET seq = seq - 99 WHERE seq >= 100", ()),
        ("INSERT INTO records (seq, body, leaf) VALUES (4, ?, ?)", (forged, leaf_hash(forged))),
    )
    assert "not those it signed" in tampered(log)


def test_reordered_records_are_found(log: AuditLog) -> None:
    filled(log, 8, checkpoint_every=8)
    tamper(
        log,
        ("UPDATE records SET seq = 100 WHERE seq = 1", ()),
        ("UPDATE records SET seq = 1 WHERE seq = 5", ()),
        ("UPDATE records SET seq = 5 WHERE seq = 100", ()),
    )
    assert "not those it signed" in tampered(log)


def test_a_truncated_log_is_found(log: AuditLog) -> None:
    filled(log, 8, checkpoint_every=8)
    tamper(log, ("DELETE FROM records WHERE seq >= 6", ()))
    assert "cut off" in tampered(log)


def test_a_checkpoint_signed_by_another_member_is_found(log: AuditLog) -> None:
    filled(log, 4)
    key, chain = signer(OTHER)
    forged = Checkpoint.sign(
        log.name, 4, root([leaf_hash(body(n)) for n in range(4)]), NOW, key, chain
    )
    tamper(
        log,
        (
            "INSERT INTO checkpoints VALUES (?, ?, ?, ?)",
            (4, forged.root, NOW.isoformat(), forged.token),
        ),
    )
    assert "signed by DEMO/GOV/TAX" in tampered(log)


def test_an_altered_checkpoint_is_found(log: AuditLog) -> None:
    (checkpoint,) = filled(log, 4, checkpoint_every=4)
    header, payload, signature = checkpoint.token.split(".")
    altered = f"{header}.{payload[:-2]}AA.{signature}"
    tamper(log, ("UPDATE checkpoints SET token = ? WHERE size = 4", (altered,)))
    tampered(log)


# -- proofs --------------------------------------------------------------------------------------


def test_any_record_is_proven_in_a_checkpoint_and_checkpoints_extend_each_other(
    log: AuditLog,
) -> None:
    first, second = filled(log, 12, checkpoint_every=6)
    for seq in range(12):
        verify_record(log.record(seq), seq, log.inclusion(seq, 12), second)
    with pytest.raises(LogTampered):
        verify_record(b"another record", 3, log.inclusion(3, 12), second)
    verify_extension(first, second, log.consistency(6, 12))
    with pytest.raises(LogTampered):
        verify_extension(first, second, log.consistency(5, 12))


def test_pintu_audit_verify_reports_a_good_log_and_fails_on_a_tampered_one(
    log: AuditLog, tmp_path: Path
) -> None:
    import subprocess
    import sys

    filled(log, 6, checkpoint_every=3)
    roots = tmp_path / "roots.pem"
    roots.write_bytes(pki.certificate_pem(*ROOTS))
    command = [sys.executable, "-m", "pintu", "audit", "verify", str(log.path)]
    command += ["--roots", str(roots), "--signer", str(OWNER)]
    good = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert good.returncode == 0, good.stderr
    assert "6 records, 2 checkpoints signed by DEMO/GOV/POPREG" in good.stdout
    tamper(log, ("UPDATE records SET body = ? WHERE seq = 1", (b"{}",)))
    bad = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 1
    assert "[audit_log_tampered]" in bad.stderr
    assert "record 1 was modified" in bad.stderr


# -- what only a checkpoint kept outside the log reveals, and reopening ----------------------------


def test_records_cut_off_with_their_checkpoint_show_only_against_a_kept_checkpoint(
    log: AuditLog,
) -> None:
    first, second = filled(log, 8, checkpoint_every=4)
    tamper(
        log,
        ("DELETE FROM records WHERE seq >= 4", ()),
        ("DELETE FROM checkpoints WHERE size = 8", ()),
    )
    # The log alone still looks whole: nothing in it says it held more.
    assert verify_log(log.path, ROOTS, OWNER).records == 4
    with pytest.raises(LogTampered, match="cut off: a trusted checkpoint of 8"):
        verify_log(log.path, ROOTS, OWNER, trusted=[second])
    assert verify_log(log.path, ROOTS, OWNER, trusted=[first]).covered == 4


def test_a_checkpoint_of_another_log_or_with_another_size_row_is_found(log: AuditLog) -> None:
    filled(log, 4, checkpoint_every=4)
    with pytest.raises(LogTampered, match="of the log DEMO/GOV/POPREG/ss1"):
        verify_log(log.path, ROOTS, OWNER, name="DEMO/GOV/POPREG/ss2")
    assert verify_log(log.path, ROOTS, OWNER, name="DEMO/GOV/POPREG/ss1").covered == 4
    tamper(log, ("UPDATE checkpoints SET size = 2 WHERE size = 4", ()))
    with pytest.raises(LogTampered, match="holds the signed size 4"):
        verify_log(log.path, ROOTS, OWNER)


def test_checkpoints_whose_clock_went_back_still_verify(log: AuditLog) -> None:
    log.append_now(body(0))
    log.checkpoint(NOW)
    log.append_now(body(1))
    log.checkpoint(NOW - dt.timedelta(seconds=30))  # the clock was set back
    assert verify_log(log.path, ROOTS, OWNER).covered == 2


@pytest.mark.parametrize(
    "change",
    [
        ("UPDATE records SET body = ? WHERE seq = 1", (b"{}",)),
        ("UPDATE records SET body = ?, leaf = ? WHERE seq = 1", (b"{}", leaf_hash(b"{}"))),
        ("DELETE FROM records WHERE seq = 3", ()),
    ],
    ids=["body", "body and leaf", "deleted"],
)
def test_a_log_changed_while_its_server_was_down_is_not_continued(
    log: AuditLog, change: tuple[str, tuple[object, ...]]
) -> None:
    filled(log, 4, checkpoint_every=4)
    log.close()
    tamper(log, change)
    key, chain = signer()
    with pytest.raises(AuditUnavailable, match="pintu audit verify"):
        AuditLog(log.path, log.name, key, chain)


async def test_closing_waits_for_pending_records_and_signs_them(log: AuditLog) -> None:
    appends = [asyncio.create_task(log.append(body(n))) for n in range(10)]
    await asyncio.sleep(0)
    await log.aclose(NOW)
    assert sorted(await asyncio.gather(*appends)) == list(range(10))
    verified = verify_log(log.path, ROOTS, OWNER)
    assert (verified.records, verified.covered) == (10, 10)


async def test_a_record_appended_soon_rides_with_the_next_write_or_goes_alone(
    log: AuditLog,
) -> None:
    soon = log.append_soon(body(0))
    assert await log.append(body(1)) == 1
    assert await soon == 0
    assert log.writes == 1  # one sync for both
    alone = log.append_soon(body(2))
    assert await asyncio.wait_for(alone, 2) == 2  # nothing came: written within LAZY_SECONDS
    assert log.writes == 2
    assert [log.record(n) for n in range(3)] == [body(0), body(1), body(2)]


def test_proofs_from_stored_subtrees_are_those_of_the_whole_tree(
    log: AuditLog, tmp_path: Path
) -> None:
    """Proofs read stored subtree hashes and a few leaves, not the whole log: they are the
    RFC's proofs over every leaf at any size and position, also after a reopen that rebuilds
    the stored subtrees of a log written without them."""
    size = 3 * 1024 + 77
    for start in range(0, size, 500):  # batches that complete subtrees mid-batch
        log.append_many([body(n) for n in range(start, min(size, start + 500))])
    leaves = [leaf_hash(body(n)) for n in range(size)]
    positions = [0, 1, 255, 256, 511, 1024, 2047, 2048, 3071, 3072, size - 1]
    for tree in (size, 2048, 1300, 257):
        for seq in (p for p in positions if p < tree):
            assert log.inclusion(seq, tree) == inclusion_proof(seq, leaves[:tree]), (seq, tree)
    for first, second in ((256, size), (1000, 2048), (2048, size), (1, 300)):
        assert log.consistency(first, second) == consistency_proof(first, leaves[:second])
    with pytest.raises(AuditError):
        log.inclusion(0, size + 1)
    stored = sqlite3.connect(log.path).execute("SELECT COUNT(*) FROM nodes").fetchone()[0]
    assert stored == sum(size >> height for height in range(NODE_HEIGHT, 20))

    tamper(log, ("DELETE FROM nodes", ()))
    key, chain = signer()
    reopened = AuditLog(log.path, log.name, key, chain)
    try:
        assert reopened.inclusion(3000, size) == inclusion_proof(3000, leaves)
        rebuilt = sqlite3.connect(log.path).execute("SELECT COUNT(*) FROM nodes").fetchone()[0]
        assert rebuilt == stored
    finally:
        reopened.close()


def test_readers_keep_their_position_outside_the_tree(log: AuditLog, tmp_path: Path) -> None:
    """A reader of the log (the access feed) reads records in order from a position it stores
    in the log's file, durably, without changing what the log proves."""
    filled(log, 10, checkpoint_every=10)
    assert log.cursor("feed") == 0
    assert [seq for seq, _ in log.records_from(0, 4)] == [0, 1, 2, 3]
    assert log.records_from(8, 5) == [(8, body(8)), (9, body(9))]
    assert log.records_from(10, 5) == []
    log.set_cursor("feed", 4)
    log.set_cursor("other", 9)
    log.set_cursor("feed", 7)
    key, chain = signer()
    reopened = AuditLog(log.path, log.name, key, chain)
    try:
        assert (reopened.cursor("feed"), reopened.cursor("other")) == (7, 9)
    finally:
        reopened.close()
    assert verify_log(log.path, ROOTS, OWNER).covered == 10
