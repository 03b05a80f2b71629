"""The decision log: every decision and every failure to decide, on disk before it is used, and
exported as OPA decision-log events."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from pathlib import Path

import pytest

import policy
from policy import DecisionLog, DecisionRecord, LoggedEngine, PolicyError
from tests.pintu.ca_support import pintu, refused, succeeded
from tests.policy.rego_support import birth_support


@pytest.fixture(scope="module")
def shipped() -> policy.EmbeddedEngine:
    return policy.EmbeddedEngine(policy.PolicySet.load(policy.DEFAULT_POLICIES))


class FailingEngine:
    revision = "r9"

    async def decide(self, policy_input: policy.PolicyInput) -> policy.Decision:
        raise PolicyError("the policy engine failed: boom")


async def test_every_decision_is_logged_with_its_id_digest_result_and_revision(
    shipped: policy.EmbeddedEngine, tmp_path: Path
) -> None:
    log = DecisionLog(tmp_path / "decisions.jsonl")
    engine = LoggedEngine(shipped, log)
    allowed = await engine.decide(birth_support())
    denied = await engine.decide(birth_support(rights=()))
    first, second = log.records()
    assert (first.decision_id, first.allow, first.reasons, first.obligations) == (
        allowed.decision_id,
        True,
        (),
        ("log_body", "notify_subject"),
    )
    assert first.input_sha256 == birth_support().digest()
    assert first.revision == shipped.revision == engine.revision
    assert (second.decision_id, second.allow, second.reasons) == (
        denied.decision_id,
        False,
        ("no_access_right",),
    )
    assert second.input_sha256 == birth_support(rights=()).digest() != first.input_sha256
    # The input itself is not kept: it names citizens and purposes.
    text = log.path.read_text()
    assert "birthsupport" not in text
    assert "birth-support" not in text


async def test_a_failure_to_decide_is_logged_and_raised(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "decisions.jsonl")
    with pytest.raises(PolicyError):
        await LoggedEngine(FailingEngine(), log).decide(birth_support())
    (record,) = log.records()
    assert (record.allow, record.revision, record.error) == (
        False,
        "r9",
        "the policy engine failed: boom",
    )
    assert record.input_sha256 == birth_support().digest()
    assert record.decision_id


async def test_an_input_of_the_wrong_shape_is_logged_without_a_digest(
    shipped: policy.EmbeddedEngine, tmp_path: Path
) -> None:
    log = DecisionLog(tmp_path / "decisions.jsonl")
    with pytest.raises(PolicyError):
        await LoggedEngine(shipped, log).decide(birth_support(consent="maybe"))
    (record,) = log.records()
    assert (record.input_sha256, record.allow) == ("", False)
    assert "consent" in record.error


async def test_a_decision_that_cannot_be_logged_is_not_used(
    shipped: policy.EmbeddedEngine, tmp_path: Path
) -> None:
    log = DecisionLog(tmp_path / "missing-folder" / "decisions.jsonl")
    with pytest.raises(PolicyError) as error:
        await LoggedEngine(shipped, log).decide(birth_support())
    assert error.value.code == "policy_error"
    assert str(error.value).startswith(f"decision log {log.path}: ")


def test_records_round_trip_and_export_as_opa_events(tmp_path: Path) -> None:
    moment = dt.datetime(2026, 11, 25, 8, 0, 1, 250000, tzinfo=dt.UTC)
    allowed = DecisionRecord("d-1", moment, "ab" * 32, "rev1", True, (), ("log_body",))
    failed = DecisionRecord("d-2", moment, "", "rev1", False, (), (), "the policy engine failed")
    log = DecisionLog(tmp_path / "decisions.jsonl")
    log.append(allowed)
    log.append(failed)
    assert list(log.records()) == [allowed, failed]
    event = allowed.to_opa_event("DEMO/GOV/POPREG/ss1")
    assert event == {
        "labels": {"id": "DEMO/GOV/POPREG/ss1", "app": "pintu"},
        "decision_id": "d-1",
        "path": "pintu/authz/decision",
        "erased": ["/input"],
        "input_sha256": "ab" * 32,
        "bundles": {"pintu": {"revision": "rev1"}},
        "timestamp": "2026-11-25T08:00:01.250000Z",
        "result": {"allow": True, "reasons": [], "obligations": ["log_body"]},
    }
    error_event = failed.to_opa_event("ss1")
    assert "result" not in error_event
    assert error_event["error"] == {"code": "policy_error", "message": "the policy engine failed"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json\n", ":1: not JSON"),
        (b"[1, 2]\n", ":1: not a record"),
        (b'{"decision_id": "x"}\n', "not a decision record"),
        (b"\xff\xfe\n", "decision log"),
    ],
)
def test_a_damaged_log_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "decisions.jsonl"
    path.write_bytes(content)
    with pytest.raises(PolicyError) as error:
        list(DecisionLog(path).records())
    assert message in str(error.value)


@pytest.mark.integration
async def test_pintu_policy_decisions_prints_opa_events(
    shipped: policy.EmbeddedEngine, tmp_path: Path
) -> None:
    log = DecisionLog(tmp_path / "decisions.jsonl")
    engine = LoggedEngine(shipped, log)
    decisions = [
        await engine.decide(birth_support()),
        await engine.decide(birth_support(rights=())),
    ]
    output = succeeded(pintu("policy", "decisions", log.path, "--instance", "DEMO/GOV/POPREG/ss1"))
    events = [json.loads(line) for line in output.splitlines()]
    assert [e["decision_id"] for e in events] == [d.decision_id for d in decisions]
    assert [e["result"]["allow"] for e in events] == [True, False]
    assert {e["labels"]["id"] for e in events} == {"DEMO/GOV/POPREG/ss1"}
    missing = refused(pintu("policy", "decisions", tmp_path / "none.jsonl"))
    assert missing.code == "policy_error"
    assert os.fspath(tmp_path / "none.jsonl") in missing.message


async def test_an_unexpected_engine_failure_is_logged_and_answered_as_a_policy_error(
    tmp_path: Path,
) -> None:
    class Broken:
        revision = "r1"

        async def decide(self, policy_input: policy.PolicyInput) -> policy.Decision:
            raise RuntimeError("a bug")

    log = DecisionLog(tmp_path / "decisions.jsonl")
    with pytest.raises(PolicyError, match="the policy engine failed: RuntimeError"):
        await LoggedEngine(Broken(), log).decide(birth_support())
    (record,) = log.records()
    assert (record.allow, record.error) == (False, "a bug")


@pytest.mark.parametrize(
    "field",
    [("allow", "false"), ("reasons", "abc"), ("obligations", [1]), ("revision", 3)],
    ids=lambda field: field[0],
)
def test_a_record_of_the_wrong_types_is_refused(tmp_path: Path, field: tuple[str, object]) -> None:
    moment = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    document = DecisionRecord("d", moment, "", "r", True, (), ()).to_json()
    document[field[0]] = field[1]
    path = tmp_path / "decisions.jsonl"
    path.write_text(json.dumps(document) + "\n")
    with pytest.raises(PolicyError, match="not a decision record"):
        list(DecisionLog(path).records())


async def test_decisions_made_together_share_one_write(
    shipped: policy.EmbeddedEngine, tmp_path: Path
) -> None:
    log = DecisionLog(tmp_path / "decisions.jsonl")
    engine = LoggedEngine(shipped, log)
    decisions = await asyncio.gather(*(engine.decide(birth_support()) for _ in range(50)))
    records = list(log.records())
    assert [r.decision_id for r in records] == [d.decision_id for d in decisions]
    assert 1 <= log.writes < 50


async def test_a_failed_group_write_fails_every_decision_in_it(
    shipped: policy.EmbeddedEngine, tmp_path: Path
) -> None:
    log = DecisionLog(tmp_path / "missing" / "decisions.jsonl")
    engine = LoggedEngine(shipped, log)
    outcomes = await asyncio.gather(
        *(engine.decide(birth_support()) for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(o, PolicyError) for o in outcomes), outcomes
    assert all("decision log" in str(o) for o in outcomes)


async def test_a_caller_that_gives_up_does_not_stop_the_others(
    shipped: policy.EmbeddedEngine, tmp_path: Path
) -> None:
    log = DecisionLog(tmp_path / "decisions.jsonl")
    engine = LoggedEngine(shipped, log)
    first = asyncio.create_task(engine.decide(birth_support()))
    others = [asyncio.create_task(engine.decide(birth_support())) for _ in range(5)]
    await asyncio.sleep(0)
    first.cancel()
    decided = await asyncio.gather(*others)
    assert {d.decision_id for d in decided} <= {r.decision_id for r in log.records()}


async def test_a_cancelled_writer_fails_its_waiters_instead_of_leaving_them_hanging(
    tmp_path: Path,
) -> None:
    log = DecisionLog(tmp_path / "decisions.jsonl")
    record = DecisionRecord("id", dt.datetime.now(dt.UTC), "", "r", True, (), ())
    waiters = [asyncio.create_task(log.write(record)) for _ in range(5)]
    await asyncio.sleep(0)  # every waiter queued; the writer started
    writer = log._writer
    assert writer is not None
    writer.cancel()
    outcomes = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 5)
    assert all(isinstance(o, PolicyError) for o in outcomes), outcomes


async def test_a_log_that_need_not_be_synced_writes_each_record_at_once(
    shipped: policy.EmbeddedEngine, tmp_path: Path
) -> None:
    log = DecisionLog(tmp_path / "decisions.jsonl", durable=False)
    engine = LoggedEngine(shipped, log)
    decided = [await engine.decide(birth_support()) for _ in range(3)]
    assert [r.decision_id for r in log.records()] == [d.decision_id for d in decided]
    log.close()
    missing = DecisionLog(tmp_path / "missing" / "decisions.jsonl", durable=False)
    with pytest.raises(PolicyError, match="decision log"):
        await LoggedEngine(shipped, missing).decide(birth_support())
