"""The error catalogue is complete, stable in form, and documented."""

from __future__ import annotations

import re
from pathlib import Path

from gateway import ErrorCode

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def test_codes_are_unique_snake_case() -> None:
    labels = [code.label for code in ErrorCode]
    assert len(labels) == len(set(labels))
    assert all(re.fullmatch(r"[a-z]+(_[a-z0-9]+)*", label) for label in labels)


def test_every_code_is_documented_with_its_status() -> None:
    rows = {
        match.group(1): match.group(2)
        for match in re.finditer(r"^\| `([a-z_0-9]+)` \| ([A-Z_]+) \|", DOC.read_text(), re.M)
    }
    assert rows == {code.label: code.status.name for code in ErrorCode}
