"""Policy folders for the tests (the shipped one copied, small ones written on the spot) and the
input of the shipped cases' allowed exchange."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import policy

SHIPPED_TESTS = policy.DEFAULT_POLICIES / "pintu" / "authz_test.rego"
# Every case of the shipped test file has a name, and nothing else in it does.
SHIPPED_CASES = SHIPPED_TESTS.read_text(encoding="utf-8").count('"name":')

HEADER = "package pintu.authz\n\nimport rego.v1\n\n"
TEST_HEADER = "package pintu.authz_test\n\nimport rego.v1\n\n"
ALLOW_ALL = 'decision := {"allow": true, "reasons": [], "obligations": []}\n'
ONE_CASE = 'cases := [{"name": "allowed", "input": {}, "expect": {"allow": true}}]\n'

CLIENT = "DEMO/GOV/WELFARE/birthsupport"
SERVICE = "popreg.v1.CivilRegistry"
# 2025-11-24 16:00:00 UTC, the shipped cases' time.
MOMENT = dt.datetime(2025, 11, 24, 16, 0, tzinfo=dt.UTC)
MOMENT_NS = 1_764_000_000_000_000_000

BIRTH_SUPPORT = policy.PolicyInput(
    client=CLIENT,
    client_server="DEMO/GOV/WELFARE/ss1",
    provider="DEMO/GOV/POPREG/civilregistry",
    service=SERVICE,
    method="GetPerson",
    time=MOMENT,
    purpose="birth-support",
    client_groups=("social-services",),
    subject_concerned=True,
    consent="active",
    facts=policy.ServiceFacts(
        personal_data=True,
        data_categories=("identity",),
        purposes=("birth-support",),
        consent_required=True,
    ),
    rights=(policy.Right("group:social-services", ("GetPerson",)),),
)


def birth_support(**changes: Any) -> policy.PolicyInput:
    """The shipped cases' allowed exchange (a caseworker system asks for a person), changed."""
    return replace(BIRTH_SUPPORT, **changes)


def write_policies(
    folder: Path,
    body: str,
    cases: str = ONE_CASE,
    *,
    data: object = None,
) -> Path:
    """``folder`` with ``authz.rego`` (``package pintu.authz`` + ``body``), its test file
    (``package pintu.authz_test`` + ``cases``) and, unless ``data`` is None, ``data.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "authz.rego").write_text(HEADER + body, encoding="utf-8")
    (folder / "authz_test.rego").write_text(TEST_HEADER + cases, encoding="utf-8")
    if data is not None:
        (folder / "data.json").write_text(json.dumps(data), encoding="utf-8")
    return folder


def shipped_copy(folder: Path) -> Path:
    """A copy of the policies Pintu ships, in ``folder``."""
    shutil.copytree(policy.DEFAULT_POLICIES, folder)
    return folder


def change_text(path: Path, old: str, new: str) -> None:
    """Replace the one occurrence of ``old`` in ``path``."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")
