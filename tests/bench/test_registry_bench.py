"""The registry suite runs with a tiny federation and writes its section, with numbers, beside the
other sections (its figures are not judged here: see docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench._document import HEADER, replace_section, section

pytestmark = pytest.mark.integration

PKI = "## PKI\n\nfigures from another run"


def numbers(row: str) -> list[float]:
    cells = [cell.strip().strip("*") for cell in row.strip("|").split("|")][1:]
    return [float(cell.replace(",", "")) for cell in cells]


def rows(text: str, start: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(start)]


def test_a_tiny_registry_run_writes_its_section_and_keeps_the_others(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    report.write_text(replace_section(HEADER, "pki", PKI))
    command = [
        "--suite",
        "registry",
        "--rounds",
        "1",
        "--members",
        "20",
        "--services",
        "200",
        "--lookup-services",
        "20,200",
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
    assert section(document, "pki") == PKI
    text = section(document, "registry")
    assert text is not None
    assert "python -m bench.run " + " ".join(command) in text
    assert "## Registry: the global configuration at 20 members and 200 services" in text

    registry_side = rows(text, "| `GlobalConfiguration.build`") + rows(text, "| **snapshot build")
    registry_side += rows(text, "| `RegistryStore.")
    assert len(registry_side) == 2 + 4  # build, snapshot; import, load, save, one change
    gateway_side = rows(text, "| `SnapshotVerifier.verify`") + rows(text, "| swap to ")
    assert len(gateway_side) == 3
    for row in registry_side + gateway_side:
        values = numbers(row)
        assert values, row
        assert all(value > 0 for value in values), row
    sizes = rows(text, "| signed snapshot") + rows(text, "| gzip")
    assert len(sizes) == 2
    assert all(numbers(row)[0] > 0 for row in sizes)
    lookups = rows(text, "| **consumer, per exchange**") + rows(
        text, "| **provider, per exchange**"
    )
    assert len(lookups) == 2 * 2  # both per-exchange rows, for both patterns
    for row in lookups:
        values = numbers(row)
        assert len(values) == 2 + 1  # two sizes and their ratio
        assert all(value > 0 for value in values), row
