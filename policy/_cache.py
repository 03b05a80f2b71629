"""A decision cache in front of an engine: the same question, under the same policies, gets
the same answer without asking the engine again.

The key is every field of the input that a decision may depend on — all of them but the time,
which policies see only through the closed windows: the key holds which windows are open or
closed at that moment instead. A new policy revision empties the cache; errors are never kept.
"""

from __future__ import annotations

import operator
import uuid
from collections import OrderedDict
from dataclasses import fields, replace

from policy._engine import PolicyEngine
from policy._errors import PolicyError
from policy._model import Decision, PolicyInput, nanoseconds

_Key = tuple[object, tuple[bool, ...]]


class CachedEngine:
    """``engine`` behind a least-recently-used cache of at most ``size`` decisions."""

    def __init__(self, engine: PolicyEngine, size: int = 10_000) -> None:
        if size < 1:
            raise ValueError("a cache holds at least one decision")
        self._engine = engine
        self._size = size
        self._revision = engine.revision
        self._decisions: OrderedDict[_Key, Decision] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def revision(self) -> str:
        """The engine's revision."""
        return self._engine.revision

    def __len__(self) -> int:
        return len(self._decisions)

    def clear(self) -> None:
        """Forget every decision (the data behind the inputs changed in a way they do not show)."""
        self._decisions.clear()

    async def decide(self, policy_input: PolicyInput) -> Decision:
        """The engine's decision for ``policy_input``, from the cache when it was asked before
        under the same revision (a new decision id either way).

        Raises:
            PolicyError: as the engine; nothing is cached then.
        """
        revision = self._engine.revision
        if revision != self._revision:
            self._decisions.clear()
            self._revision = revision
        try:
            key = _key(policy_input)
            hash(key)
        except (TypeError, AttributeError, PolicyError):
            # An input of the wrong shape: the engine refuses it (PolicyError), uncached.
            return await self._engine.decide(policy_input)
        known = self._decisions.get(key)
        if known is not None:
            self._decisions.move_to_end(key)
            self.hits += 1
            return replace(known, decision_id=str(uuid.uuid4()))
        decision = await self._engine.decide(policy_input)
        self.misses += 1
        if decision.revision == self._revision:
            self._decisions[key] = decision
            if len(self._decisions) > self._size:
                self._decisions.popitem(last=False)
        return decision


# Every field of the input but the time, read in one call (follows the fields as they change).
_DECIDING = operator.attrgetter(*(f.name for f in fields(PolicyInput) if f.name != "time"))


def _key(policy_input: PolicyInput) -> _Key:
    # The time counts only through which windows are closed at that moment (see the module
    # docstring).
    now = nanoseconds(policy_input.time)
    closed = tuple(w.from_ns <= now < w.until_ns for w in policy_input.windows)
    return (_DECIDING(policy_input), closed)
