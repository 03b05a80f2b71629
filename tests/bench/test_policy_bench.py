"""The policy suite runs with tiny settings and writes its section, with numbers, beside the
other sections (its figures are not judged here: see docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench._document import HEADER, replace_section, section

pytestmark = pytest.mark.integration

PKI = "## PKI\n\nfigures from another run"


def test_a_tiny_policy_run_writes_its_section_and_keeps_the_others(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    report.write_text(replace_section(HEADER, "pki", PKI))
    command = ["--suite", "policy", "--rounds", "1", "--decisions", "20", "--rights", "10,100"]
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", *command, "--output", str(report)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document = report.read_text()
    assert section(document, "pki") == PKI
    text = section(document, "policy")
    assert text is not None
    assert "python -m bench.run " + " ".join(command) in text
    rows = [line for line in text.splitlines() if line.startswith(("| 10 |", "| 100 |"))]
    assert len(rows) == 2
    for row in rows:
        miss, hit, engine = (float(cell.replace(",", "")) for cell in row.strip("|").split("|")[1:])
        assert min(miss, hit, engine) > 0
        assert hit < miss  # the cache answers without the engine
    assert "At 100 rights: a hit costs" in text
    remote = float(text.split("Remote OPA round trip: ")[1].split(" µs")[0].replace(",", ""))
    assert remote > 0


def test_a_policy_flag_without_the_policy_suite_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--suite", "pki", "--rights", "10"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--rights applies to none of the suites chosen (pki)" in result.stderr
