"""The embedded engine (rego-cpp) with the policies Pintu ships and with broken ones, policy sets
and their revision, and the policies' own test cases.

Broken policies here never use ``with input as`` (rego-cpp 1.5 crashes the process on it)."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
import regopy

import policy
from policy import EmbeddedEngine, PolicyError, PolicySet, PolicyTestsFailed, Right, Window
from tests.policy.rego_support import (
    ALLOW_ALL,
    MOMENT,
    MOMENT_NS,
    ONE_CASE,
    SHIPPED_CASES,
    birth_support,
    change_text,
    shipped_copy,
    write_policies,
)

ALTERED_CASE = "a purpose the service does not serve is refused"
ALTERED_EXPECT = '"expect": {"allow": false, "reasons": ["purpose_not_allowed"]},'


@pytest.fixture(scope="module")
def shipped() -> PolicySet:
    return PolicySet.load(policy.DEFAULT_POLICIES)


@pytest.fixture(scope="module")
def engine(shipped: PolicySet) -> EmbeddedEngine:
    return EmbeddedEngine(shipped)


def refusal(error: pytest.ExceptionInfo[PolicyError]) -> str:
    """The message of a plain ``policy_error``, after checking its type and code."""
    assert type(error.value) is PolicyError
    assert error.value.code == "policy_error"
    return str(error.value)


# -- deciding with the shipped policies --------------------------------------------------------


async def test_allowed_exchange(engine: EmbeddedEngine, shipped: PolicySet) -> None:
    decision = await engine.decide(birth_support())

    assert decision.allow is True
    assert decision.reasons == ()
    assert decision.obligations == ("log_body", "notify_subject")
    assert decision.revision == shipped.revision
    assert uuid.UUID(decision.decision_id).version == 4


async def test_denied_exchange_gives_every_reason(engine: EmbeddedEngine) -> None:
    decision = await engine.decide(birth_support(rights=(), purpose="marketing"))

    assert decision.allow is False
    assert decision.reasons == ("no_access_right", "purpose_not_allowed")
    assert decision.obligations == ()


async def test_right_held_by_the_subsystem_for_every_method(engine: EmbeddedEngine) -> None:
    decision = await engine.decide(
        birth_support(method="ListPeople", rights=(Right("subsystem:DEMO/GOV/WELFARE/x"),))
    )

    assert decision.allow is True


async def test_legal_basis_stands_in_for_consent(engine: EmbeddedEngine) -> None:
    facts = policy.ServiceFacts(
        personal_data=True, purposes=("birth-support",), legal_basis="Population Act art. 5"
    )

    decision = await engine.decide(birth_support(consent="none", facts=facts))

    assert (decision.allow, decision.obligations) == (True, ("log_body", "notify_subject"))


async def test_window_closes_the_service_by_the_input_time(engine: EmbeddedEngine) -> None:
    around = Window(MOMENT_NS - 1, MOMENT_NS + 1)
    ended = Window(MOMENT_NS - 1_000, MOMENT_NS)  # until_ns is excluded
    later = Window(MOMENT_NS + 1, MOMENT_NS + 1_000)

    closed = await engine.decide(birth_support(windows=(around,)))
    after_it = await engine.decide(birth_support(windows=(ended, later)))
    # The same windows, a microsecond before the one that ended does.
    inside = await engine.decide(
        birth_support(windows=(ended,), time=MOMENT - dt.timedelta(microseconds=1))
    )

    assert (closed.allow, closed.reasons) == (False, ("service_closed",))
    assert (after_it.allow, after_it.reasons) == (True, ())
    assert (inside.allow, inside.reasons) == (False, ("service_closed",))


def test_decision_ids_are_fresh_uuids(engine: EmbeddedEngine) -> None:
    ids = [engine.decide_now(birth_support()).decision_id for _ in range(200)]

    assert len(set(ids)) == 200
    assert all(str(uuid.UUID(i)) == i for i in ids)


def test_evaluate_gives_the_raw_decision(engine: EmbeddedEngine) -> None:
    document = birth_support(rights=()).to_json()

    assert engine.evaluate(document) == {
        "allow": False,
        "reasons": ["no_access_right"],
        "obligations": [],
    }


def test_input_of_the_wrong_shape_is_refused_before_the_engine(engine: EmbeddedEngine) -> None:
    with pytest.raises(PolicyError) as error:
        engine.decide_now(birth_support(consent="granted"))

    assert "consent: 'granted'" in refusal(error)


# -- revisions ----------------------------------------------------------------------------------


def test_revision_is_the_policy_sets(engine: EmbeddedEngine, shipped: PolicySet) -> None:
    assert engine.revision == shipped.revision
    assert len(shipped.revision) == 16
    assert int(shipped.revision, 16) >= 0
    assert PolicySet.load(policy.DEFAULT_POLICIES).revision == shipped.revision


def test_revision_changes_with_a_policy_file(tmp_path: Path, shipped: PolicySet) -> None:
    folder = shipped_copy(tmp_path / "rego")
    assert PolicySet.load(folder).revision == shipped.revision

    with (folder / "pintu" / "authz.rego").open("a", encoding="utf-8") as file:
        file.write("# a comment changes the revision too\n")

    assert PolicySet.load(folder).revision != shipped.revision


def test_revision_changes_with_a_test_file(tmp_path: Path, shipped: PolicySet) -> None:
    folder = shipped_copy(tmp_path / "rego")
    change_text(folder / "pintu" / "authz_test.rego", ALTERED_CASE, ALTERED_CASE + ".")

    assert PolicySet.load(folder).revision != shipped.revision


def test_revision_changes_with_a_file_name(tmp_path: Path, shipped: PolicySet) -> None:
    folder = shipped_copy(tmp_path / "rego")
    (folder / "pintu").rename(folder / "agency")

    assert PolicySet.load(folder).revision != shipped.revision


def test_revision_changes_with_the_data(tmp_path: Path, shipped: PolicySet) -> None:
    folder = shipped_copy(tmp_path / "rego")
    (folder / "data.json").write_text('{"closed": false}', encoding="utf-8")
    with_data = PolicySet.load(folder).revision
    (folder / "data.json").write_text('{"closed": true}', encoding="utf-8")
    other_data = PolicySet.load(folder).revision
    # The same data written otherwise is the same data.
    (folder / "data.json").write_text('{ "closed" :  true }\n', encoding="utf-8")

    assert len({shipped.revision, with_data, other_data}) == 3
    assert PolicySet.load(folder).revision == other_data


def test_data_reaches_the_policies(tmp_path: Path) -> None:
    body = 'decision := {"allow": data.settings.open, "reasons": ["closed"], "obligations": []}\n'

    def decide(name: str, open_: object) -> policy.Decision:
        folder = write_policies(tmp_path / name, body, data={"settings": {"open": open_}})
        return EmbeddedEngine(PolicySet.load(folder)).decide_now(birth_support())

    assert decide("open", True).allow is True
    assert decide("closed", False).reasons == ("closed",)
    with pytest.raises(PolicyError) as error:
        decide("odd", 1)
    assert "allow is not a boolean: 1" in refusal(error)


# -- what the engine refuses ---------------------------------------------------------------------


def test_policy_that_does_not_compile_is_refused(tmp_path: Path) -> None:
    policies = PolicySet.load(write_policies(tmp_path, "decision := {\n"))

    with pytest.raises(PolicyError) as error:
        EmbeddedEngine(policies)

    message = refusal(error)
    assert message.startswith("the policies do not compile: ")
    assert "authz.rego" in message
    assert "this is unclosed" in message


def test_compile_error_names_the_file_and_line(tmp_path: Path) -> None:
    # `decision := {` is line 5 of authz.rego (after the package and import lines).
    policies = PolicySet.load(write_policies(tmp_path, "decision := {\n"))

    with pytest.raises(PolicyError) as error:
        EmbeddedEngine(policies)

    message = refusal(error)
    assert "authz.rego:5" in message
    # The engine's error tree is not a message for an operator.
    assert "rego-errorseq" not in message
    assert "errormsg" not in message


def test_compile_error_is_not_printed(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # The error is the PolicyError's to tell: a gateway's or the CLI's stdout is not for it.
    policies = PolicySet.load(write_policies(tmp_path, "decision := {\n"))

    with pytest.raises(PolicyError):
        EmbeddedEngine(policies)

    assert capfd.readouterr() == ("", "")


def test_policy_calling_an_unknown_function_is_refused(tmp_path: Path) -> None:
    # rego-cpp builds the bundle and fails each evaluation ("Function not found"): refused
    # there at the latest. (regopy cannot read rego-cpp's answer for this error, so the
    # message cannot name the function.)
    body = 'decision := {"allow": no_such_function(input), "reasons": [], "obligations": []}\n'
    policies = PolicySet.load(write_policies(tmp_path, body))

    with pytest.raises(PolicyError) as error:
        EmbeddedEngine(policies).decide_now(birth_support())

    assert refusal(error) == (
        "the policy engine failed: a run-time error in the policy (an unknown function,"
        " a division by zero, ...)"
    )


def test_undefined_decision_is_refused(tmp_path: Path) -> None:
    body = (
        'decision := {"allow": true, "reasons": [], "obligations": []} if {\n'
        '\tinput.exchange.method == "GetPerson"\n'
        "}\n"
    )
    engine = EmbeddedEngine(PolicySet.load(write_policies(tmp_path, body)))

    assert engine.decide_now(birth_support()).allow is True
    with pytest.raises(PolicyError) as error:
        engine.decide_now(birth_support(method="ListPeople"))

    assert refusal(error) == "the policy's decision is undefined for this input"


def test_policies_without_a_decision_are_undefined(tmp_path: Path) -> None:
    folder = tmp_path / "rego"
    folder.mkdir()
    (folder / "other.rego").write_text("package other\n\nimport rego.v1\n\nx := 1\n")
    (folder / "other_test.rego").write_text("package other_test\n\nimport rego.v1\n\n" + ONE_CASE)
    engine = EmbeddedEngine(PolicySet.load(folder))

    with pytest.raises(PolicyError) as error:
        engine.decide_now(birth_support())

    assert "undefined" in refusal(error)


def test_engine_raising_is_a_policy_error(
    engine: EmbeddedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*arguments: object) -> object:
        raise RuntimeError("rego-cpp fell over")

    monkeypatch.setattr(regopy.Interpreter, "query_bundle_entrypoint", explode)

    with pytest.raises(PolicyError) as error:
        engine.decide_now(birth_support())

    assert refusal(error) == "the policy engine failed: rego-cpp fell over"
    assert error.value.__cause__ is None


def test_engine_raising_on_a_data_query_is_a_policy_error(
    engine: EmbeddedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*arguments: object) -> object:
        raise MemoryError("out of memory")

    monkeypatch.setattr(regopy.Interpreter, "query", explode)

    with pytest.raises(PolicyError) as error:
        engine.value_of("data.pintu.authz.decision")

    assert refusal(error) == "the policy engine failed: out of memory"


def test_policy_failing_at_run_time_is_a_policy_error(tmp_path: Path) -> None:
    # Division by zero when no right applies (checked in a subprocess first: rego-cpp answers
    # with output that is not JSON, it does not crash).
    body = (
        'decision := {"allow": true, "reasons": [], "obligations": [],'
        ' "share": 1 / count(input.rights)}\n'
    )
    engine = EmbeddedEngine(PolicySet.load(write_policies(tmp_path, body)))

    assert engine.decide_now(birth_support()).allow is True
    with pytest.raises(PolicyError) as error:
        engine.decide_now(birth_support(rights=()))

    assert refusal(error).startswith("the policy engine failed: ")


CONFLICT = (
    'decision := {"allow": true, "reasons": [], "obligations": []} if input.version == 1\n'
    'decision := {"allow": false, "reasons": ["no"], "obligations": []} if input.version == 1\n'
)


def test_conflicting_decision_is_refused(tmp_path: Path) -> None:
    engine = EmbeddedEngine(PolicySet.load(write_policies(tmp_path, CONFLICT)))

    with pytest.raises(PolicyError) as error:
        engine.decide_now(birth_support())

    refusal(error)


def test_engine_error_says_what_kind_of_error_it_was(tmp_path: Path) -> None:
    # rego-cpp answers "<error>" for the conflict; its text ("complete rules must not produce
    # multiple outputs") is not reachable through regopy's API, so the message says the kind.
    engine = EmbeddedEngine(PolicySet.load(write_policies(tmp_path, CONFLICT)))

    with pytest.raises(PolicyError) as error:
        engine.decide_now(birth_support())

    message = refusal(error)
    assert message == (
        "the policy engine failed: a run-time error in the policy (e.g. a complete rule"
        " with more than one value)"
    )
    assert "<error>" not in message


NOT_DECISIONS = {
    "a string": ('decision := "yes"\n', "not a decision object: 'yes'"),
    "a number": ("decision := 1\n", "not a decision object: 1"),
    "allow a string": (
        'decision := {"allow": "yes", "reasons": [], "obligations": []}\n',
        "allow is not a boolean: 'yes'",
    ),
    "allow missing": (
        'decision := {"reasons": ["no_access_right"], "obligations": []}\n',
        "allow is not a boolean: None",
    ),
    "reasons not codes": (
        'decision := {"allow": false, "reasons": ["No access"], "obligations": []}\n',
        "reasons are not a list of codes",
    ),
    "deny without reason": (
        'decision := {"allow": false, "reasons": [], "obligations": []}\n',
        "the policy denied without a reason",
    ),
}


@pytest.mark.parametrize(("body", "message"), NOT_DECISIONS.values(), ids=NOT_DECISIONS.keys())
def test_decision_that_is_not_a_decision_object_is_refused(
    tmp_path: Path, body: str, message: str
) -> None:
    engine = EmbeddedEngine(PolicySet.load(write_policies(tmp_path, body)))

    with pytest.raises(PolicyError) as error:
        engine.decide_now(birth_support())

    assert message in refusal(error)


# -- loading a policy folder -------------------------------------------------------------------


def test_policy_set_holds_modules_tests_and_data(tmp_path: Path) -> None:
    folder = write_policies(tmp_path / "rego", ALLOW_ALL, data={"a": [1]})

    policies = PolicySet.load(folder)

    assert list(policies.modules) == ["authz.rego"]
    assert list(policies.tests) == ["authz_test.rego"]
    assert policies.data == {"a": [1]}


def test_shipped_set_is_one_policy_and_its_tests(shipped: PolicySet) -> None:
    assert list(shipped.modules) == ["pintu/authz.rego"]
    assert list(shipped.tests) == ["pintu/authz_test.rego"]
    assert shipped.data == {}


def test_missing_test_file_is_refused(tmp_path: Path) -> None:
    folder = write_policies(tmp_path, ALLOW_ALL)
    (folder / "authz_test.rego").unlink()

    with pytest.raises(PolicyError) as error:
        PolicySet.load(folder)

    assert refusal(error) == "policy files without a _test.rego beside them: ['authz.rego']"


def test_test_file_in_another_folder_is_not_beside(tmp_path: Path) -> None:
    folder = write_policies(tmp_path, ALLOW_ALL)
    (folder / "tests").mkdir()
    (folder / "authz_test.rego").rename(folder / "tests" / "authz_test.rego")

    with pytest.raises(PolicyError) as error:
        PolicySet.load(folder)

    assert "['authz.rego']" in refusal(error)


def test_each_policy_file_needs_its_own_test_file(tmp_path: Path) -> None:
    folder = write_policies(tmp_path, ALLOW_ALL)
    (folder / "extra").mkdir()
    (folder / "extra" / "windows.rego").write_text("package pintu.windows\n\nx := 1\n")

    with pytest.raises(PolicyError) as error:
        PolicySet.load(folder)

    assert "['extra/windows.rego']" in refusal(error)


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("no policies here\n")

    with pytest.raises(PolicyError) as error:
        PolicySet.load(tmp_path)

    assert refusal(error) == f"policy folder {tmp_path}: no .rego file"


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as error:
        PolicySet.load(tmp_path / "nowhere")

    assert str(tmp_path / "nowhere") in refusal(error)


@pytest.mark.parametrize("text", ["[1, 2]", '"open"', "null", "7"])
def test_data_that_is_not_an_object_is_refused(tmp_path: Path, text: str) -> None:
    folder = write_policies(tmp_path, ALLOW_ALL)
    (folder / "data.json").write_text(text, encoding="utf-8")

    with pytest.raises(PolicyError) as error:
        PolicySet.load(folder)

    assert refusal(error) == f"{folder / 'data.json'}: expected a JSON object"


def test_data_that_is_not_json_is_refused(tmp_path: Path) -> None:
    folder = write_policies(tmp_path, ALLOW_ALL)
    (folder / "data.json").write_text('{"open": tru', encoding="utf-8")

    with pytest.raises(PolicyError) as error:
        PolicySet.load(folder)

    assert refusal(error).startswith(f"policy folder {folder}: ")


def make_unreadable(folder: Path, how: str) -> None:
    if how == "not UTF-8":
        (folder / "authz.rego").write_bytes(b"package pintu.authz\n# \xff\xfe\n")
    elif how == "a dangling link":
        (folder / "more.rego").symlink_to(folder / "missing.rego")
    elif how == "data.json a folder":
        (folder / "data.json").mkdir()


@pytest.mark.parametrize("how", ["not UTF-8", "a dangling link", "data.json a folder"])
def test_unreadable_file_is_refused(tmp_path: Path, how: str) -> None:
    # The tests run as root, so a file without read permission would still be read.
    folder = write_policies(tmp_path, ALLOW_ALL)
    make_unreadable(folder, how)

    with pytest.raises(PolicyError) as error:
        PolicySet.load(folder)

    assert refusal(error).startswith(f"policy folder {folder}: ")


# -- the policies' own test cases ----------------------------------------------------------------


def test_shipped_policies_pass_every_case(shipped: PolicySet) -> None:
    outcomes = policy.run_tests(shipped)

    assert len(outcomes) == SHIPPED_CASES
    assert [o for o in outcomes if not o.passed] == []
    assert {o.file for o in outcomes} == {"pintu/authz_test.rego"}
    assert len({o.case for o in outcomes}) == SHIPPED_CASES
    assert "default deny without any right" in {o.case for o in outcomes}
    assert policy.tested(shipped) == outcomes


def test_altered_expectation_fails_exactly_that_case(tmp_path: Path) -> None:
    folder = shipped_copy(tmp_path / "rego")
    change_text(
        folder / "pintu" / "authz_test.rego",
        ALTERED_EXPECT,
        '"expect": {"allow": true, "reasons": ["purpose_not_allowed"]},',
    )
    policies = PolicySet.load(folder)

    failed = [o for o in policy.run_tests(policies) if not o.passed]

    assert [(o.file, o.case) for o in failed] == [("pintu/authz_test.rego", ALTERED_CASE)]
    assert failed[0].detail.startswith("expected {'allow': True, ")
    assert "'reasons': ['purpose_not_allowed']" in failed[0].detail
    with pytest.raises(PolicyTestsFailed) as error:
        policy.tested(policies)
    assert error.value.code == "policy_tests_failed"
    assert isinstance(error.value, PolicyError)
    assert str(error.value) == (
        f"1 of {SHIPPED_CASES} policy cases failed: pintu/authz_test.rego: {ALTERED_CASE}"
    )


def test_altered_policy_fails_the_cases_it_breaks(tmp_path: Path) -> None:
    # Paused consent counted as consent: the case that says otherwise fails.
    folder = shipped_copy(tmp_path / "rego")
    change_text(
        folder / "pintu" / "authz.rego",
        'lawful if input.subject.consent == "active"',
        'lawful if input.subject.consent in {"active", "paused"}',
    )

    failed = [o.case for o in policy.run_tests(PolicySet.load(folder)) if not o.passed]

    assert failed == ["paused consent is no consent"]


def test_test_file_without_cases_is_refused(tmp_path: Path) -> None:
    policies = PolicySet.load(write_policies(tmp_path, ALLOW_ALL, "examples := []\n"))

    with pytest.raises(PolicyError) as error:
        policy.run_tests(policies)

    assert refusal(error).startswith("authz_test.rego: no cases (")


@pytest.mark.parametrize("cases", ["cases := []\n", 'cases := {"name": "x"}\n', "cases := 3\n"])
def test_cases_that_are_not_a_non_empty_array_are_refused(tmp_path: Path, cases: str) -> None:
    policies = PolicySet.load(write_policies(tmp_path, ALLOW_ALL, cases))

    with pytest.raises(PolicyError) as error:
        policy.run_tests(policies)

    assert refusal(error) == "authz_test.rego: cases must be a non-empty array"


def test_test_file_that_does_not_compile_is_refused(tmp_path: Path) -> None:
    policies = PolicySet.load(write_policies(tmp_path, ALLOW_ALL, "cases := [\n"))

    with pytest.raises(PolicyError) as error:
        policy.run_tests(policies)

    assert refusal(error).startswith("the policies do not compile: ")


def only_outcome(tmp_path: Path, body: str, cases: str) -> policy.TestOutcome:
    outcomes = policy.run_tests(PolicySet.load(write_policies(tmp_path, body, cases)))
    assert len(outcomes) == 1
    return outcomes[0]


def test_case_without_expect_fails(tmp_path: Path) -> None:
    outcome = only_outcome(tmp_path, ALLOW_ALL, 'cases := [{"name": "x", "input": {}}]\n')

    assert outcome == policy.TestOutcome(
        "authz_test.rego", "cases[0]", False, "needs name, input and expect"
    )


def test_case_that_is_not_an_object_fails(tmp_path: Path) -> None:
    outcomes = policy.run_tests(
        PolicySet.load(write_policies(tmp_path, ALLOW_ALL, 'cases := ["allowed"] \n'))
    )

    assert [(o.case, o.passed) for o in outcomes] == [("cases[0]", False)]


@pytest.mark.parametrize("expect", ['{"allowed": true}', '{"allow": true, "why": []}', "{}", "1"])
def test_expect_naming_an_unknown_key_fails(tmp_path: Path, expect: str) -> None:
    cases = f'cases := [{{"name": "x", "input": {{}}, "expect": {expect}}}]\n'

    outcome = only_outcome(tmp_path, ALLOW_ALL, cases)

    assert (outcome.case, outcome.passed) == ("x", False)
    assert outcome.detail == "expect must name some of ['allow', 'obligations', 'reasons']"


def test_case_whose_decision_is_undefined_fails(tmp_path: Path) -> None:
    body = 'decision := {"allow": true, "reasons": [], "obligations": []} if input.n == 1\n'
    cases = (
        'cases := [{"name": "defined", "input": {"n": 1}, "expect": {"allow": true}},'
        ' {"name": "undefined", "input": {"n": 2}, "expect": {"allow": true}}]\n'
    )

    outcomes = policy.run_tests(PolicySet.load(write_policies(tmp_path, body, cases)))

    assert [(o.case, o.passed) for o in outcomes] == [("defined", True), ("undefined", False)]
    assert "undefined" in outcomes[1].detail


def test_case_whose_decision_is_not_an_object_fails(tmp_path: Path) -> None:
    outcome = only_outcome(tmp_path, 'decision := "yes"\n', ONE_CASE)

    assert (outcome.passed, outcome.detail) == (
        False,
        "the policy's result is not a decision object: 'yes'",
    )


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        ('decision := {"allow": false, "reasons": [], "obligations": []}\n', '{"allow": false}'),
        ('decision := {"allow": true, "reasons": ["Not A Code"]}\n', '{"allow": true}'),
        ('decision := {"allow": true, "obligations": "log_body"}\n', '{"allow": true}'),
    ],
    ids=["deny without reason", "reasons not codes", "obligations not a list"],
)
def test_case_passes_only_with_a_decision_the_engine_accepts(
    tmp_path: Path, body: str, expect: str
) -> None:
    # A case runs "as a security server evaluates it": a decision the security server refuses
    # (policy_error, the exchange denied) cannot pass.
    cases = f'cases := [{{"name": "x", "input": {{}}, "expect": {expect}}}]\n'
    policies = PolicySet.load(write_policies(tmp_path, body, cases))
    with pytest.raises(PolicyError):
        EmbeddedEngine(policies).decide_now(birth_support())

    outcomes = policy.run_tests(policies)

    assert [(o.case, o.passed) for o in outcomes] == [("x", False)]
