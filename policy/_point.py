"""The decision point a security server asks: an engine that a verified bundle replaces at once.

A new bundle is verified (:func:`verify_bundle`), compiled and its test cases run before it is
used; until all of that has succeeded the previous policies keep deciding. A refused bundle is
logged at level ``error`` (``policy_bundle_refused``) for alerting.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

from cryptography import x509

from policy._bundle import PolicyBundleInvalid, verify_bundle
from policy._engine import EmbeddedEngine, tested
from policy._errors import PolicyError
from policy._model import Decision, PolicyInput
from proto import MemberId

LOGGER = logging.getLogger("pintu.policy")


class PolicyPoint:
    """Decides with the current :class:`EmbeddedEngine`; :meth:`install` switches it."""

    def __init__(self, engine: EmbeddedEngine) -> None:
        self._engine = engine

    @property
    def revision(self) -> str:
        """The revision of the policies deciding now."""
        return self._engine.revision

    async def decide(self, policy_input: PolicyInput) -> Decision:
        """The current engine's decision (PolicyError: none could be made)."""
        return await self._engine.decide(policy_input)

    def install(
        self,
        bundle: bytes,
        roots: Iterable[x509.Certificate],
        member: MemberId,
        *,
        now: dt.datetime,
    ) -> str:
        """Verify, compile and test ``bundle``, then decide with it; its revision.

        Raises:
            PolicyError: the bundle was refused (``policy_bundle_invalid``,
                ``policy_tests_failed``, ``policy_error``); the previous policies still decide.
        """
        try:
            try:
                policies, label = verify_bundle(bundle, roots, member, now=now)
                outcomes = tested(policies)
                engine = EmbeddedEngine(policies)
            except PolicyError:
                raise
            except Exception as unexpected:  # whatever else a hostile bundle causes
                raise PolicyBundleInvalid(
                    f"the bundle could not be read: {type(unexpected).__name__}"
                ) from None
        except PolicyError as error:
            LOGGER.error(
                "policy bundle refused: %s: %s; revision %s still decides",
                error.code,
                error,
                self._engine.revision,
                extra={
                    "pintu_event": {
                        "event": "policy_bundle_refused",
                        "code": error.code,
                        "revision": self._engine.revision,
                    }
                },
            )
            raise
        previous, self._engine = self._engine, engine
        LOGGER.info(
            "policies of bundle %s (revision %s, %d cases passed) decide from now on",
            label,
            engine.revision,
            len(outcomes),
            extra={
                "pintu_event": {
                    "event": "policy_installed",
                    "revision": engine.revision,
                    "previous": previous.revision,
                    "bundle": label,
                }
            },
        )
        return engine.revision
