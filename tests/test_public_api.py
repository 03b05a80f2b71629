"""Each package's public face is its sorted ``__all__``; modules inside it are private.

Add a package to ``PACKAGES`` when it is created; the checks below then apply to it too.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import pytest

PACKAGES = ["proto", "pki", "registry", "policy", "consent", "audit", "gateway"]

# Public subpackages a package may expose besides ``__all__``: generated code only.
# Subpackages that are not modules of the API: generated code, Alembic's migration scripts.
PUBLIC_SUBPACKAGES: dict[str, set[str]] = {
    "proto": {"pintu"},
    "registry": {"migrations"},
    "consent": {"migrations"},
}

packages = pytest.mark.parametrize("name", PACKAGES)


def package(name: str) -> ModuleType:
    return importlib.import_module(name)


def exported(name: str) -> list[str]:
    names = getattr(package(name), "__all__", None)
    assert isinstance(names, list), f"{name}.__all__ must be a list"
    return names


def isort_key(name: str) -> tuple[int, list[int | str]]:
    """ruff's RUF022 order: SCREAMING_CASE, then CamelCase, then the rest, each naturally sorted."""
    if len(name) > 1 and name.isupper():
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    natural = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
    return group, natural


def own_docstring(value: object) -> str | None:
    """The docstring written for ``value``, ignoring ones that dataclass and enum generate."""
    doc = value.__dict__.get("__doc__") if isinstance(value, type) else value.__doc__
    if not doc:
        return None
    if isinstance(value, type) and dataclasses.is_dataclass(value):
        generated = value.__name__ + str(inspect.signature(value)).replace(" -> None", "")
        if doc == generated:
            return None
    if isinstance(value, type) and issubclass(value, enum.Enum) and doc == "An enumeration.":
        return None
    return str(doc)


def test_isort_key_orders_like_ruff() -> None:
    # The order `ruff check --select RUF022 --fix` gives these names.
    names = ["parse", "MAX_B", "Thing", "MAX_A", "A10", "A9", "_x", "A", "X_1", "Ab", "__d__"]
    assert sorted(names, key=isort_key) == [
        *["A9", "A10", "MAX_A", "MAX_B", "X_1"],
        *["A", "Ab", "Thing"],
        *["__d__", "_x", "parse"],
    ]


@packages
def test_all_is_sorted(name: str) -> None:
    names = exported(name)
    assert names == sorted(names, key=isort_key)


@packages
def test_all_has_no_duplicates(name: str) -> None:
    names = exported(name)
    assert len(names) == len(set(names))


@packages
def test_every_name_in_all_exists(name: str) -> None:
    module = package(name)
    missing = [n for n in exported(name) if not hasattr(module, n)]
    assert missing == []


@packages
def test_every_exported_class_and_function_has_a_docstring(name: str) -> None:
    module = package(name)
    values = {n: getattr(module, n, None) for n in exported(name)}
    undocumented = [
        n
        for n, value in values.items()
        if (inspect.isclass(value) or inspect.isfunction(value)) and not own_docstring(value)
    ]
    assert undocumented == []


@packages
def test_every_public_method_of_an_exported_class_has_a_docstring(name: str) -> None:
    module = package(name)
    undocumented = []
    for class_name in exported(name):
        cls = getattr(module, class_name, None)
        if not inspect.isclass(cls) or issubclass(cls, enum.Enum | BaseException):
            continue
        for attribute, value in vars(cls).items():
            if attribute.startswith("_"):
                continue
            function = value.__func__ if isinstance(value, staticmethod | classmethod) else value
            if isinstance(function, property):
                function = function.fget
            if inspect.isfunction(function) and not function.__doc__:
                undocumented.append(f"{class_name}.{attribute}")
    assert undocumented == []


@packages
def test_package_has_a_docstring(name: str) -> None:
    assert (package(name).__doc__ or "").strip()


@packages
def test_no_public_names_beyond_all(name: str) -> None:
    module = package(name)
    allowed = set(exported(name)) | PUBLIC_SUBPACKAGES.get(name, set())
    extra = sorted(n for n in vars(module) if not n.startswith("_") and n not in allowed)
    assert extra == []


@packages
def test_modules_are_private(name: str) -> None:
    module = package(name)
    public = [
        info.name
        for info in pkgutil.iter_modules(module.__path__)
        if not info.name.startswith("_")
        and not (info.ispkg and info.name in PUBLIC_SUBPACKAGES.get(name, set()))
    ]
    assert public == []


@packages
def test_exported_names_come_from_the_package(name: str) -> None:
    # Re-exporting another package's names would make two homes for one API.
    module = package(name)
    foreign = []
    for exported_name in exported(name):
        value = getattr(module, exported_name, None)
        home = getattr(value, "__module__", None)
        is_code = inspect.isclass(value) or inspect.isfunction(value)
        if is_code and home is not None and home != name and not home.startswith(f"{name}."):
            foreign.append(f"{exported_name} ({home})")
    assert foreign == []


@packages
def test_package_is_typed(name: str) -> None:
    assert (Path(package(name).__path__[0]) / "py.typed").is_file()
