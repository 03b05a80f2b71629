"""The exchange suite keeps working (its figures are not judged here: see docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench._document import section

pytestmark = pytest.mark.integration


def test_a_short_exchange_run_writes_its_section(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--suite",
            "exchange",
            "--rounds",
            "1",
            "--seconds",
            "0.3",
            "--output",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = section(report.read_text(), "exchange")
    assert text is not None
    assert "python -m bench.run --suite exchange --rounds 1 --seconds 0.3" in text
    rows = [line for line in text.splitlines() if line.startswith("| unary 1 KiB |")]
    assert len(rows) == 2 + 4  # throughput rows (1 and 50 in flight) and CPU rows
    for row in rows[:2]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert float(cells[2].replace(",", "")) > 0  # direct req/s
        assert float(cells[3].replace(",", "")) > 0  # Pintu req/s
