"""docs/benchmarks.md: each suite rewrites its own section and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import run
from bench._document import HEADER, DocumentError, replace_section, section, write_section


def test_a_new_document_starts_with_the_header(tmp_path: Path) -> None:
    path = tmp_path / "docs" / "benchmarks.md"
    write_section(path, "pki", "## PKI\n\nfigures")
    text = path.read_text()
    assert text.startswith(HEADER)
    assert section(text, "pki") == "## PKI\n\nfigures"


def test_a_section_is_replaced_and_the_rest_kept(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text("# Hand-written\n\nintro\n")
    write_section(path, "exchange", "old exchange")
    write_section(path, "pki", "old pki")
    write_section(path, "exchange", "new exchange")
    text = path.read_text()
    assert text.startswith("# Hand-written\n\nintro\n")
    assert section(text, "exchange") == "new exchange"
    assert section(text, "pki") == "old pki"
    assert text.index("bench:exchange") < text.index("bench:pki")
    assert "old exchange" not in text


def test_a_section_without_its_closing_marker_is_refused() -> None:
    with pytest.raises(DocumentError):
        replace_section("<!-- bench:pki -->\nhalf a section\n", "pki", "figures")


def test_an_option_no_chosen_suite_takes_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run.main(["--suite", "exchange", "--enrollments", "3"])
    assert exit_.value.code == 2
    assert "--enrollments applies to none of the suites chosen" in capsys.readouterr().err
