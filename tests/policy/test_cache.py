"""The decision cache: the same question under the same policies is answered from memory; a
new revision, a decision-relevant change or an error is never answered from it."""

from __future__ import annotations

import datetime as dt

import pytest

import policy
from policy import CachedEngine, Decision, EmbeddedEngine, PolicyError, PolicyInput, Window
from tests.policy.rego_support import MOMENT, MOMENT_NS, birth_support


class CountingEngine:
    """An engine that answers from a list of results (a decision, or an error to raise) and
    counts the questions: for the cache's own logic."""

    def __init__(self, *results: Decision | PolicyError, revision: str = "r1") -> None:
        self.results = list(results)
        self.asked: list[PolicyInput] = []
        self.revision = revision

    async def decide(self, policy_input: PolicyInput) -> Decision:
        self.asked.append(policy_input)
        result = self.results.pop(0) if len(self.results) > 1 else self.results[0]
        if isinstance(result, PolicyError):
            raise result
        return result


def allowed(revision: str = "r1", decision_id: str = "d1") -> Decision:
    return Decision(True, (), ("log_body",), decision_id, revision)


@pytest.fixture(scope="module")
def shipped() -> EmbeddedEngine:
    return EmbeddedEngine(policy.PolicySet.load(policy.DEFAULT_POLICIES))


async def test_the_same_question_is_answered_from_the_cache(shipped: EmbeddedEngine) -> None:
    cache = CachedEngine(shipped)
    first = await cache.decide(birth_support())
    again = await cache.decide(birth_support())
    assert (first.allow, first.reasons, first.obligations) == (
        True,
        (),
        ("log_body", "notify_subject"),
    )
    assert (again.allow, again.reasons, again.obligations, again.revision) == (
        first.allow,
        first.reasons,
        first.obligations,
        first.revision,
    )
    assert again.decision_id != first.decision_id  # every decision is logged on its own
    assert (cache.hits, cache.misses, len(cache)) == (1, 1, 1)


@pytest.mark.parametrize(
    "change",
    [
        {"client": "DEMO/GOV/OTHER/x"},
        {"client_server": "DEMO/GOV/WELFARE/ss2"},
        {"method": "ListPeople"},
        {"purpose": "marketing"},
        {"client_groups": ()},
        {"subject_concerned": False},
        {"consent": "revoked"},
        {"facts": policy.ServiceFacts()},
        {"rights": ()},
        {"windows": (Window(0, 1),)},
    ],
    ids=lambda change: next(iter(change)),
)
async def test_a_decision_relevant_change_is_asked_anew(change: dict[str, object]) -> None:
    engine = CountingEngine(allowed())
    cache = CachedEngine(engine)
    await cache.decide(birth_support())
    await cache.decide(birth_support(**change))
    assert len(engine.asked) == 2
    assert (cache.hits, cache.misses) == (0, 2)


async def test_time_alone_does_not_miss_but_entering_a_window_does(
    shipped: EmbeddedEngine,
) -> None:
    window = Window(MOMENT_NS + 60 * 10**9, MOMENT_NS + 120 * 10**9)
    cache = CachedEngine(shipped)
    before = await cache.decide(birth_support(windows=(window,)))
    later = await cache.decide(
        birth_support(windows=(window,), time=MOMENT + dt.timedelta(seconds=30))
    )
    inside = await cache.decide(
        birth_support(windows=(window,), time=MOMENT + dt.timedelta(seconds=90))
    )
    assert (before.allow, later.allow) == (True, True)
    assert (inside.allow, inside.reasons) == (False, ("service_closed",))
    assert (cache.hits, cache.misses) == (1, 2)


async def test_a_new_revision_empties_the_cache() -> None:
    engine = CountingEngine(allowed("r1"), allowed("r2"))
    cache = CachedEngine(engine)
    await cache.decide(birth_support())
    engine.revision = "r2"
    decision = await cache.decide(birth_support())
    assert decision.revision == "r2"
    assert len(engine.asked) == 2
    assert cache.revision == "r2"
    await cache.decide(birth_support())
    assert len(engine.asked) == 2  # r2's answer is kept


async def test_an_answer_of_another_revision_than_the_caches_is_not_kept() -> None:
    # The engine switched policies between the cache's check and its answer.
    engine = CountingEngine(allowed("r2"))
    cache = CachedEngine(engine)
    await cache.decide(birth_support())
    assert len(cache) == 0


async def test_an_error_is_never_cached() -> None:
    engine = CountingEngine(PolicyError("the policy engine failed: x"), allowed())
    cache = CachedEngine(engine)
    with pytest.raises(PolicyError):
        await cache.decide(birth_support())
    assert len(cache) == 0
    assert (await cache.decide(birth_support())).allow is True
    assert len(engine.asked) == 2


async def test_an_input_of_the_wrong_shape_is_refused_by_the_engine_uncached(
    shipped: EmbeddedEngine,
) -> None:
    cache = CachedEngine(shipped)
    bad_inputs = (
        birth_support(rights="group:x"),  # hashable, but not rights
        birth_support(client_groups=["a", 1]),  # not even hashable
        birth_support(time="now"),
    )
    for bad in bad_inputs:
        with pytest.raises(PolicyError) as error:
            await cache.decide(bad)
        assert error.value.code == "policy_error"
    assert len(cache) == 0


async def test_the_least_recently_used_decision_goes_first() -> None:
    engine = CountingEngine(allowed())
    cache = CachedEngine(engine, size=2)
    a, b, c = (birth_support(purpose=p) for p in ("a", "b", "c"))
    await cache.decide(a)
    await cache.decide(b)
    await cache.decide(a)  # a is now the most recent
    await cache.decide(c)  # b goes
    asked = len(engine.asked)
    await cache.decide(a)
    assert len(engine.asked) == asked
    await cache.decide(b)
    assert len(engine.asked) == asked + 1
    assert len(cache) == 2


def test_a_cache_holds_at_least_one_decision() -> None:
    with pytest.raises(ValueError, match="at least one"):
        CachedEngine(CountingEngine(allowed()), size=0)


async def test_clear_forgets_every_decision() -> None:
    engine = CountingEngine(allowed())
    cache = CachedEngine(engine)
    await cache.decide(birth_support())
    cache.clear()
    await cache.decide(birth_support())
    assert len(engine.asked) == 2
