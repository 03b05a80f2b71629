"""The audit suite runs with tiny settings and writes its section, with numbers, beside the other
sections (its figures are not judged here: see docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench._document import HEADER, replace_section, section

pytestmark = pytest.mark.integration

PKI = "## PKI\n\nfigures from another run"
COMMAND = [
    "--suite",
    "audit",
    "--rounds",
    "1",
    "--appenders",
    "1,4",
    "--appends",
    "40",
    "--audit-records",
    "3000",
    "--checkpoints",
    "5",
]


def _run(report: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.run", *options, "--output", str(report)],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


def _row(text: str, start: str) -> list[float]:
    """The numbers of the table row beginning with ``start`` (the first cell left out)."""
    rows = [line for line in text.splitlines() if line.startswith(start)]
    assert len(rows) == 1, (start, rows)
    return [float(cell.replace(",", "")) for cell in rows[0].strip("|").split("|")[1:]]


def test_a_tiny_audit_run_writes_its_section_and_keeps_the_others(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    report.write_text(replace_section(HEADER, "pki", PKI))
    result = _run(report, *COMMAND)
    assert result.returncode == 0, result.stdout + result.stderr
    document = report.read_text()
    assert section(document, "pki") == PKI
    text = section(document, "audit")
    assert text is not None
    assert "python -m bench.run " + " ".join(COMMAND) in text

    baseline = _row(text, "| SQLite, a row per transaction (baseline) |")
    assert baseline[0] == 1  # one writer
    assert all(value > 0 for value in baseline)
    one, four = _row(text, "| `AuditLog.append` | 1 |"), _row(text, "| `AuditLog.append` | 4 |")
    for per_second, micros, cpu, per_sync, speed_up in (one[1:], four[1:]):
        assert per_second > 0
        assert micros > 0
        assert cpu > 0
        assert speed_up > 0
        assert per_sync >= 1
    assert one[4] == 1  # a lone appender waits for each record: one sync each
    assert four[4] <= 4
    for in_flight in (1, 4):
        per_second, micros, cpu, per_sync = _row(text, f"| {in_flight} |")
        assert per_second > 0
        assert micros > 0
        assert cpu > 0
        assert 1 <= per_sync <= 2 * in_flight  # a request and an outcome per exchange
    assert "the target of 30 µs" in text

    for start in ("| `AuditLog.checkpoint`", "| the signature alone", "| a checkpoint's check"):
        per_second, micros = _row(text, start)
        assert per_second > 0
        assert micros > 0

    for size in ("30", "300", "3,000"):
        inclusion, consistency = _row(text, f"| {size} |")
        assert inclusion >= 0
        assert consistency >= 0
    hashes, size, made, checked = _row(text, "| inclusion (`AuditLog.inclusion`")
    assert hashes in (11, 12)  # a tree of 3,000 leaves is 12 levels deep
    assert size == 32 * hashes
    assert made >= 0
    assert checked > 0
    hashes, size, made, checked = _row(text, "| consistency from 2,251 records")
    assert 1 <= hashes <= 2 * 12
    assert size == 32 * hashes
    assert checked > 0

    seconds, per_second, megabytes, cpu, peak = _row(text, "| file in the page cache")
    assert seconds > 0
    assert per_second > 0
    assert megabytes > 0
    assert peak > 0
    assert "`verify_log` over 3,000 records" in text
    assert "Filled in" in text


def test_a_log_too_small_to_measure_is_refused(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    result = _run(report, "--suite", "audit", "--audit-records", "99")
    assert result.returncode != 0
    assert "--audit-records must be 100 or more" in result.stderr
    assert not report.exists()
