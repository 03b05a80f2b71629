"""The consent suite runs with tiny settings and writes its section, with numbers, beside the
other sections (its figures are not judged here: see docs/benchmarks.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench._document import HEADER, replace_section, section

pytestmark = pytest.mark.integration

PKI = "## PKI\n\nfigures from another run"


def test_a_tiny_consent_run_writes_its_section_and_keeps_the_others(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    report.write_text(replace_section(HEADER, "pki", PKI))
    command = [
        "--suite",
        "consent",
        "--rounds",
        "1",
        "--replica-consents",
        "10,100",
        "--store-consents",
        "200",
        "--grants",
        "10",
        "--gateways",
        "2",
        "--revocations",
        "3",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", *command, "--output", str(report)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document = report.read_text()
    assert section(document, "pki") == PKI
    text = section(document, "consent")
    assert text is not None
    assert "python -m bench.run " + " ".join(command) in text
    checks = [line for line in text.splitlines() if line.startswith(("| 10 |", "| 100 |"))]
    assert len(checks) == 2
    for row in checks:
        with_consent, without = (float(c) for c in row.strip("|").split("|")[1:])
        assert with_consent > 0
        assert without > 0
    for backend in ("SQLite", "PostgreSQL"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {backend} |"))
        sequential, threaded = (float(c.replace(",", "")) for c in row.strip("|").split("|")[1:])
        assert sequential > 0
        assert threaded > 0
    p50, p99 = (float(v) for v in re.findall(r"p(?:50|99) ([0-9.]+) ms", text))
    assert 0 < p50 <= p99
