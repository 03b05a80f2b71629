"""Engines that decide: the interface, and the embedded one (rego-cpp through regopy).

A :class:`PolicySet` is the policy files of a folder (``*.rego``, each with its ``*_test.rego``
beside it, and an optional ``data.json``) and their revision. :class:`EmbeddedEngine` compiles a
set once into a bundle and evaluates ``data.pintu.authz.decision`` per exchange; anything that
goes wrong — a set that does not compile, an input it cannot take, an engine error, an undefined
or malformed result — raises :class:`PolicyError` (the exchange is then denied, ``policy_error``).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import regopy

from policy._errors import PolicyError, PolicyTestsFailed
from policy._model import Decision, PolicyInput, canonical, parse_decision

ENTRYPOINT = "pintu/authz/decision"
# The policies Pintu ships (package data).
DEFAULT_POLICIES = Path(__file__).parent / "rego"
_PACKAGE = re.compile(r"^package\s+([A-Za-z0-9_.]+)", re.MULTILINE)
_DECISION_KEYS = frozenset({"allow", "reasons", "obligations"})


class PolicyEngine(Protocol):
    """What a security server asks: one decision per exchange."""

    @property
    def revision(self) -> str:
        """The revision of the policies and data that decide."""
        ...

    async def decide(self, policy_input: PolicyInput) -> Decision:
        """The decision for ``policy_input``.

        Raises:
            PolicyError: no decision could be made (deny the exchange).
        """
        ...


@dataclass(frozen=True)
class PolicySet:
    """Rego modules (name → text), their tests, and the data they read, with a revision."""

    modules: dict[str, str]
    tests: dict[str, str]
    data: dict[str, Any]

    @staticmethod
    def load(folder: Path) -> PolicySet:
        """Every ``*.rego`` below ``folder`` (names relative to it) and ``folder/data.json``.

        Raises:
            PolicyError: unreadable files, bad data, or a policy file without its test file.
        """
        try:
            files = {
                path.relative_to(folder).as_posix(): path.read_bytes()
                for path in sorted(folder.rglob("*.rego"))
            }
            data_file = folder / "data.json"
            if data_file.exists():
                files["data.json"] = data_file.read_bytes()
        except OSError as error:
            raise PolicyError(f"policy folder {folder}: {error}") from None
        return PolicySet.from_files(files, f"policy folder {folder}", str(folder / "data.json"))

    @staticmethod
    def from_files(files: dict[str, bytes], where: str, data_name: str = "data.json") -> PolicySet:
        """The set made of ``files`` (``*.rego`` and ``data.json``, by name), as :meth:`load`
        checks it; ``where`` and ``data_name`` name them in errors."""
        modules: dict[str, str] = {}
        tests: dict[str, str] = {}
        try:
            for name, content in sorted(files.items()):
                if name.endswith(".rego"):
                    text = content.decode("utf-8")
                    (tests if name.endswith("_test.rego") else modules)[name] = text
            data = json.loads(files["data.json"]) if "data.json" in files else {}
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise PolicyError(f"{where}: {error}") from None
        if not modules:
            raise PolicyError(f"{where}: no .rego file")
        if not isinstance(data, dict):
            raise PolicyError(f"{data_name}: expected a JSON object")
        untested = [n for n in modules if n.removesuffix(".rego") + "_test.rego" not in tests]
        if untested:
            raise PolicyError(f"policy files without a _test.rego beside them: {untested}")
        return PolicySet(modules, tests, data)

    @property
    def revision(self) -> str:
        """SHA-256 (hex, first 16 characters) over every file and the data."""
        digest = hashlib.sha256()
        for name, text in sorted({**self.modules, **self.tests}.items()):
            digest.update(name.encode() + b"\0" + text.encode() + b"\0")
        digest.update(canonical(self.data))
        return digest.hexdigest()[:16]


# rego-cpp's error tree: (error LEN:FILE|OFFSET|LENGTH (errormsg LEN:MESSAGE) ...
_COMPILE_ERROR = re.compile(r"\(error \d+:([^|\s]*)\|(\d+)\|\d+\s+\(errormsg \d+:([^)\n]*)\)")


def _interpreter(modules: dict[str, str], data: dict[str, Any]) -> regopy.Interpreter:
    interpreter = regopy.Interpreter()
    # Errors are ours to report (PolicyError); rego-cpp would print its own report otherwise.
    interpreter.log_level = regopy.LogLevel.NONE
    try:
        for name, text in sorted(modules.items()):
            interpreter.add_module(name, text)
        if data:
            interpreter.add_data_json(json.dumps(data))
    except regopy.RegoError as error:
        raise PolicyError(
            f"the policies do not compile: {_compile_error(error, modules)}"
        ) from None
    return interpreter


def _compile_error(error: Exception, modules: dict[str, str]) -> str:
    """``FILE:LINE:COLUMN: message`` for each error rego-cpp reports (its tree otherwise)."""
    found = []
    for file, offset, message in _COMPILE_ERROR.findall(str(error)):
        text = modules.get(file)
        if text is None:
            found.append(f"{file or '?'}: {message}")
            continue
        before = text[: int(offset)]
        line, column = before.count("\n") + 1, int(offset) - (before.rfind("\n") + 1) + 1
        found.append(f"{file}:{line}:{column}: {message}")
    return "; ".join(dict.fromkeys(found)) if found else _first_line(error)


def _first_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text[:300]


def _evaluated(query: Callable[[], Any]) -> Any:
    """The result of ``query()`` (an engine query), or PolicyError whatever went wrong."""
    try:
        output = query()
    except json.JSONDecodeError:
        # regopy cannot read what rego-cpp answers for some run-time errors (an unknown
        # function, a division by zero): their text is not reachable.
        raise PolicyError(
            "the policy engine failed: a run-time error in the policy (an unknown function,"
            " a division by zero, ...)"
        ) from None
    except Exception as error:  # the engine's own failures, whatever their type
        raise PolicyError(f"the policy engine failed: {_first_line(error)}") from None
    if not output.ok():
        raise PolicyError(
            "the policy engine failed: a run-time error in the policy (e.g. a complete rule"
            " with more than one value)"
        )
    return _result(output)


def _result(output: object) -> Any:
    """The value of the single expression of a query's output (PolicyError: none)."""
    text = str(output)
    if text == "undefined":
        raise PolicyError("the policy's decision is undefined for this input")
    try:
        expressions = json.loads(text)["expressions"]
    except (ValueError, KeyError, TypeError):
        raise PolicyError(f"the engine answered something unreadable: {text[:200]!r}") from None
    if not isinstance(expressions, list) or len(expressions) != 1:
        raise PolicyError(f"the engine answered {len(expressions)} values, not one")
    return expressions[0]


class EmbeddedEngine:
    """Decides in process with rego-cpp: the policy set compiled once into a bundle."""

    def __init__(self, policies: PolicySet) -> None:
        self._revision = policies.revision
        self._interpreter = _interpreter(policies.modules, policies.data)
        try:
            self._bundle = self._interpreter.build(None, [ENTRYPOINT])
        except regopy.RegoError as error:
            raise PolicyError(
                f"the policies do not compile: {_compile_error(error, policies.modules)}"
            ) from None

    @property
    def revision(self) -> str:
        """The policy set's revision (:attr:`PolicySet.revision`)."""
        return self._revision

    async def decide(self, policy_input: PolicyInput) -> Decision:
        """The decision for ``policy_input`` (PolicyError: none could be made)."""
        return self.decide_now(policy_input)

    def decide_now(self, policy_input: PolicyInput) -> Decision:
        """:meth:`decide`, synchronously (rego-cpp answers in well under a millisecond)."""
        result = self.evaluate(policy_input.to_json())
        return parse_decision(result, decision_id=str(uuid.uuid4()), revision=self._revision)

    def evaluate(self, document: Any) -> Any:
        """The raw result of the decision for an input document (a JSON-like value).

        Raises:
            PolicyError: the engine failed, or the result is undefined.
        """
        try:
            # Built as terms directly: rego-cpp parsing JSON text costs twice as much.
            self._interpreter.set_input(regopy.Input(document))
        except Exception as error:
            raise PolicyError(f"the engine refused the input: {_first_line(error)}") from None
        return _evaluated(
            lambda: self._interpreter.query_bundle_entrypoint(self._bundle, ENTRYPOINT)
        )

    def value_of(self, reference: str) -> Any:
        """The value of a data reference (``data.package.name``); it should not depend on the
        input (the last one set is still in place).

        Raises:
            PolicyError: the engine failed, or the value is undefined.
        """
        return _evaluated(lambda: self._interpreter.query(reference))


@dataclass(frozen=True, slots=True)
class TestOutcome:
    """One case of a ``*_test.rego`` file: passed, or why not."""

    file: str
    case: str
    passed: bool
    detail: str = ""


def run_tests(policies: PolicySet) -> list[TestOutcome]:
    """Run every case of the set's test files against its policies.

    A test file's package defines ``cases``: objects with a ``name``, an ``input`` and an
    ``expect``ed decision (the keys given: ``allow``, ``reasons``, ``obligations``). Each input
    is evaluated as a security server evaluates it (the compiled bundle, input set directly):
    rego-cpp 1.5 crashes on built-in functions evaluated ``with input as``, so OPA-style
    ``test_`` rules are not used.

    Raises:
        PolicyError: the policies and tests do not compile together, or a test file has no
            well-formed ``cases``.
    """
    engine = EmbeddedEngine(PolicySet({**policies.modules, **policies.tests}, {}, policies.data))
    outcomes: list[TestOutcome] = []
    for name, text in sorted(policies.tests.items()):
        package = _PACKAGE.search(text)
        if package is None:
            raise PolicyError(f"{name}: no package line")
        try:
            cases = engine.value_of(f"data.{package[1]}.cases")
        except PolicyError as error:
            raise PolicyError(f"{name}: no cases ({error})") from None
        if not isinstance(cases, list) or not cases:
            raise PolicyError(f"{name}: cases must be a non-empty array")
        for index, case in enumerate(cases):
            outcomes.append(_run_case(engine, name, index, case))
    return outcomes


def _run_case(engine: EmbeddedEngine, file: str, index: int, case: object) -> TestOutcome:
    if not isinstance(case, dict) or not {"name", "input", "expect"} <= set(case):
        return TestOutcome(file, f"cases[{index}]", False, "needs name, input and expect")
    label = str(case["name"])
    expect = case["expect"]
    if not isinstance(expect, dict) or not expect or not set(expect) <= _DECISION_KEYS:
        return TestOutcome(file, label, False, f"expect must name some of {sorted(_DECISION_KEYS)}")
    try:
        # As a security server takes it: a result that is not a valid decision fails the case.
        parsed = parse_decision(engine.evaluate(case["input"]), decision_id="", revision="")
    except PolicyError as error:
        return TestOutcome(file, label, False, str(error))
    decision = {
        "allow": parsed.allow,
        "reasons": list(parsed.reasons),
        "obligations": list(parsed.obligations),
    }
    if any(decision[key] != value for key, value in expect.items()):
        return TestOutcome(file, label, False, f"expected {expect}, got {decision}")
    return TestOutcome(file, label, True)


def tested(policies: PolicySet) -> list[TestOutcome]:
    """:func:`run_tests`, refusing a set whose tests do not all pass.

    Raises:
        PolicyError: as :func:`run_tests`.
        PolicyTestsFailed: a case failed.
    """
    outcomes = run_tests(policies)
    failed = [o for o in outcomes if not o.passed]
    if failed:
        names = "; ".join(f"{o.file}: {o.case}" for o in failed[:5])
        raise PolicyTestsFailed(f"{len(failed)} of {len(outcomes)} policy cases failed: {names}")
    return outcomes
