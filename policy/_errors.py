"""The policy package's errors; ``code`` is stable (docs/errors.md)."""

from __future__ import annotations

from typing import ClassVar


class PolicyError(Exception):
    """The decision could not be made: the exchange is denied (``policy_error``).

    Raised for an engine that fails, a policy that does not compile, an input of the wrong
    shape, and a result that is undefined or not a decision.
    """

    code: ClassVar[str] = "policy_error"


class PolicyTestsFailed(PolicyError):
    """A policy set's own tests (``*_test.rego``) do not all pass."""

    code: ClassVar[str] = "policy_tests_failed"
