"""The decision point for every exchange: Rego policies (``package pintu.authz``) that decide
with a documented, versioned input (:class:`PolicyInput`, docs/policy.md), behind one small
interface (:class:`PolicyEngine`).

:class:`EmbeddedEngine` evaluates them in process with rego-cpp; :class:`AccessRights` looks up
the rights that apply to an exchange so that the engine's work does not grow with their number.
Every failure to decide raises :class:`PolicyError` (``policy_error``): the exchange is denied.
"""

from policy._bundle import SIGNING_KEY_TYPES, PolicyBundleInvalid, build_bundle, verify_bundle
from policy._cache import CachedEngine
from policy._engine import (
    DEFAULT_POLICIES,
    ENTRYPOINT,
    EmbeddedEngine,
    PolicyEngine,
    PolicySet,
    TestOutcome,
    run_tests,
    tested,
)
from policy._errors import PolicyError, PolicyTestsFailed
from policy._log import DecisionLog, DecisionRecord, LoggedEngine
from policy._model import (
    CONSENT_STATES,
    INPUT_VERSION,
    Decision,
    PolicyInput,
    Right,
    ServiceFacts,
    Window,
    canonical,
    parse_decision,
)
from policy._point import PolicyPoint
from policy._remote import RemoteOpaEngine
from policy._rights import AccessRights, ClosedWindow, Grant

__all__ = [
    "CONSENT_STATES",
    "DEFAULT_POLICIES",
    "ENTRYPOINT",
    "INPUT_VERSION",
    "SIGNING_KEY_TYPES",
    "AccessRights",
    "CachedEngine",
    "ClosedWindow",
    "Decision",
    "DecisionLog",
    "DecisionRecord",
    "EmbeddedEngine",
    "Grant",
    "LoggedEngine",
    "PolicyBundleInvalid",
    "PolicyEngine",
    "PolicyError",
    "PolicyInput",
    "PolicyPoint",
    "PolicySet",
    "PolicyTestsFailed",
    "RemoteOpaEngine",
    "Right",
    "ServiceFacts",
    "TestOutcome",
    "Window",
    "build_bundle",
    "canonical",
    "parse_decision",
    "run_tests",
    "tested",
    "verify_bundle",
]
