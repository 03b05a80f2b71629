"""``pintu policy test [--dir DIR]`` run as an operator runs it (a subprocess)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import policy
from tests.pintu.ca_support import pintu, refused
from tests.policy.rego_support import (
    ALLOW_ALL,
    SHIPPED_CASES,
    change_text,
    shipped_copy,
    write_policies,
)

pytestmark = pytest.mark.integration

OUTCOME_LINE = re.compile(r"^(?P<mark>ok  |FAIL) (?P<file>\S+): (?P<rest>.+)$")


def summary(passed: int, total: int, folder: Path) -> str:
    revision = policy.PolicySet.load(folder).revision
    return f"{passed} of {total} policy cases passed (revision {revision})"


def test_shipped_policies_pass() -> None:
    result = pintu("policy", "test")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[-1] == summary(SHIPPED_CASES, SHIPPED_CASES, policy.DEFAULT_POLICIES)
    outcomes = [OUTCOME_LINE.match(line) for line in lines[:-1]]
    assert all(outcomes), lines
    assert len(outcomes) == SHIPPED_CASES
    assert {(m["mark"], m["file"]) for m in outcomes if m} == {("ok  ", "pintu/authz_test.rego")}
    assert "ok   pintu/authz_test.rego: default deny without any right" in lines


def test_failing_copy_exits_1_with_a_fail_line(tmp_path: Path) -> None:
    folder = shipped_copy(tmp_path / "rego")
    change_text(
        folder / "pintu" / "authz_test.rego",
        '"expect": {"allow": false, "reasons": ["consent_missing"]},\n\t},\n\t{\n'
        '\t\t"name": "paused consent is no consent",',
        '"expect": {"allow": true},\n\t},\n\t{\n\t\t"name": "paused consent is no consent",',
    )

    result = pintu("policy", "test", "--dir", folder)

    assert result.returncode == 1, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAIL ")]
    assert failed == [
        "FAIL pintu/authz_test.rego: personal data without consent is refused:"
        " expected {'allow': True}, got {'allow': False, 'reasons': ['consent_missing'],"
        " 'obligations': []}"
    ]
    assert lines[-1] == summary(SHIPPED_CASES - 1, SHIPPED_CASES, folder)


def test_non_compiling_policy_exits_2(tmp_path: Path) -> None:
    folder = write_policies(tmp_path / "rego", "decision := {\n")

    result = pintu("policy", "test", "--dir", folder)

    refusal = refused(result)
    assert refusal.code == "policy_error"
    assert refusal.message.startswith("the policies do not compile: ")
    assert "this is unclosed" in refusal.message


def test_non_compiling_policy_prints_nothing_on_stdout(tmp_path: Path) -> None:
    # The error goes to stderr, once; rego-cpp's own report is not for stdout.
    folder = write_policies(tmp_path / "rego", "decision := {\n")

    result = pintu("policy", "test", "--dir", folder)

    assert result.returncode == 2
    assert result.stdout == ""


def test_policy_without_its_test_file_exits_2(tmp_path: Path) -> None:
    folder = write_policies(tmp_path / "rego", ALLOW_ALL)
    (folder / "authz_test.rego").unlink()

    refusal = refused(pintu("policy", "test", "--dir", folder))

    assert refusal.code == "policy_error"
    assert refusal.message == "policy files without a _test.rego beside them: ['authz.rego']"


def test_test_file_without_cases_exits_2(tmp_path: Path) -> None:
    folder = write_policies(tmp_path / "rego", ALLOW_ALL, "examples := []\n")

    refusal = refused(pintu("policy", "test", "--dir", folder))

    assert refusal.code == "policy_error"
    assert refusal.message.startswith("authz_test.rego: no cases")


def test_empty_folder_exits_2(tmp_path: Path) -> None:
    refusal = refused(pintu("policy", "test", "--dir", tmp_path))

    assert (refusal.code, refusal.message) == (
        "policy_error",
        f"policy folder {tmp_path}: no .rego file",
    )
