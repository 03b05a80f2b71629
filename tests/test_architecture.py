"""The packages' import direction (docs: ARCHITECTURE, "Packages and their direction").

``pintu`` is the composition root and nothing imports it; ``gateway`` may use the domain packages;
the domain packages use ``proto`` and never ``gateway``; none import each other in a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = {"registry", "pki", "policy", "consent", "audit", "monitoring"}
OURS = {"pintu", "gateway", "proto", "demo", "bench", "tools", *DOMAIN}

# What each package may import besides itself. Domain packages form a strict order, so no loop
# is possible: pki < registry < policy < consent < audit < monitoring (each may use earlier ones).
ALLOWED = {
    "proto": set(),
    "pki": {"proto"},
    "registry": {"proto", "pki"},
    "policy": {"proto", "pki", "registry"},
    "consent": {"proto", "pki", "registry", "policy"},
    "audit": {"proto", "pki", "registry", "policy", "consent"},
    "monitoring": {"proto", "pki", "registry", "policy", "consent", "audit"},
    "gateway": {"proto", *DOMAIN},
    "demo": {"proto"},
    "pintu": {"proto", "gateway", "demo", *DOMAIN},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


WITH_CODE = sorted(name for name in ALLOWED if (ROOT / name / "__init__.py").is_file())


def test_the_core_packages_exist() -> None:
    assert {"proto", "pki", "registry", "gateway", "demo", "pintu"} <= set(WITH_CODE)


@pytest.mark.parametrize("package", WITH_CODE)
def test_package_imports_only_what_it_may(package: str) -> None:
    folder = ROOT / package
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in folder.rglob("*.py")
        for name in imported_packages(path) - {package} - ALLOWED[package]
    }
    assert not wrong, sorted(wrong)


def test_the_direction_allows_no_loop() -> None:
    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(
            nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt}))
            for nxt in ALLOWED.get(start, set())
        )

    assert not [name for name in ALLOWED if reaches(name, name)]
    assert not any("pintu" in allowed for allowed in ALLOWED.values())
