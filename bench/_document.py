"""docs/benchmarks.md: a hand-written header, then one section per suite between markers.

Each suite rewrites only its own section (``<!-- bench:NAME -->`` ... ``<!-- /bench:NAME -->``)
and leaves the header and the other suites' sections as they are.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

HEADER = """\
# Benchmarks

Pintu's speed, measured by the benchmarks in `bench/`. `make bench` (`python -m bench.run`)
runs every suite; `python -m bench.run --suite NAME` runs one. Each section below is written by
its suite, between `<!-- bench:NAME -->` markers, and names the command that reproduces it;
running one suite leaves the other sections alone. Do not edit inside the markers; this header
is kept by hand.

The machine is shared and noisy: read medians and ratios between rows measured in the same run,
not single figures.
"""


class DocumentError(Exception):
    """The benchmarks document has a section marker without its closing marker."""


def _markers(suite: str) -> tuple[str, str]:
    return f"<!-- bench:{suite} -->", f"<!-- /bench:{suite} -->"


def replace_section(document: str, suite: str, body: str) -> str:
    """``document`` with ``suite``'s section replaced by ``body`` (appended when absent).

    Raises:
        DocumentError: the opening marker is there without its closing marker.
    """
    begin, end = _markers(suite)
    section = f"{begin}\n{body.strip()}\n{end}"
    start = document.find(begin)
    if start < 0:
        return f"{document.rstrip()}\n\n{section}\n"
    stop = document.find(end, start)
    if stop < 0:
        raise DocumentError(f"{begin} has no closing {end}")
    return document[:start] + section + document[stop + len(end) :]


def section(document: str, suite: str) -> str | None:
    """The body of ``suite``'s section, or None."""
    begin, end = _markers(suite)
    start = document.find(begin)
    stop = document.find(end, start)
    if start < 0 or stop < 0:
        return None
    return document[start + len(begin) : stop].strip()


def write_section(path: Path, suite: str, body: str) -> None:
    """Rewrite ``suite``'s section of the document at ``path`` (created with the header)."""
    document = path.read_text(encoding="utf-8") if path.exists() else HEADER
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(replace_section(document, suite, body), encoding="utf-8")
    os.replace(scratch, path)


def machine(*versions: str) -> str:
    """The machine and the versions that matter to a suite, for its section."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return ", ".join(
        (
            f"{os.cpu_count()} cores ({model})",
            f"{platform.system()} {platform.release()}",
            f"Python {platform.python_version()}",
            *versions,
        )
    )


def today() -> str:
    """The date line's value."""
    return f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"


def reproduce(command: str) -> list[str]:
    """The lines telling how to reproduce a section."""
    return [
        "Written by the benchmark itself. Reproduce with:",
        "",
        "```sh",
        command,
        "```",
    ]
