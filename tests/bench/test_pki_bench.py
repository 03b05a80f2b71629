"""The pki suite runs with tiny settings and writes its section, with numbers, beside the other
sections (its figures are not judged here: see docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench._document import HEADER, replace_section, section

pytestmark = pytest.mark.integration

EXCHANGE = "## Exchange\n\nfigures from another run"


def numbers(row: str, columns: slice) -> list[float]:
    cells = [cell.strip() for cell in row.strip("|").split("|")][columns]
    return [float(cell.replace(",", "")) for cell in cells if cell != "—"]


def rows(text: str, start: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(start)]


def test_a_tiny_pki_run_writes_its_section_and_keeps_the_others(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    report.write_text(replace_section(HEADER, "exchange", EXCHANGE))
    command = [
        "--suite",
        "pki",
        "--rounds",
        "1",
        "--seconds",
        "0.05",
        "--enrollments",
        "2",
        "--crl-sizes",
        "0,20",
        "--concurrency",
        "1,2",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", *command, "--output", str(report)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document = report.read_text()
    assert document.startswith(HEADER)
    assert section(document, "exchange") == EXCHANGE
    text = section(document, "pki")
    assert text is not None
    assert "python -m bench.run " + " ".join(command) in text

    issuance = rows(text, "| `Authority.")
    assert len(issuance) == 2  # enroll, renew
    in_process = rows(text, "| cached (no nonce) |") + rows(text, "| signed (nonce) |")
    assert len(in_process) == 2 + 2 * 2  # in process, then over HTTP at 1 and 2 in flight
    staples = rows(text, "| already seen") + rows(text, "| first sight")
    assert len(staples) == 2
    crls = rows(text, "| 0 |") + rows(text, "| 20 |")
    assert len(crls) == 2
    peer = rows(text, "| parse the PEM") + rows(text, "| the gateway's cache")
    assert len(peer) == 2
    for row, columns in [
        *((row, slice(1, None)) for row in issuance + in_process + peer),
        *((row, slice(1, 2)) for row in staples),  # CPU µs, then "under the target"
    ]:
        values = numbers(row, columns)
        assert values, row
        assert all(value > 0 for value in values), row
    for row in crls:  # sizes; KiB, build, load, set size may round to 0; look-ups do not
        values = numbers(row, slice(-2, None))
        assert values, row
        assert all(value > 0 for value in values), row
    assert "Target met" in text or "Target **not met**" in text
