"""One exchange's kept bodies: each message in order per direction, up to the limit, beyond
which the rest is left out and the exchange marked truncated; a body that could not be written
marks the exchange failed (its answer is withheld)."""

from __future__ import annotations

import asyncio
from typing import Any

from audit import AuditUnavailable
from gateway._audit import BodyLog


class Kept:
    """Stands in for ExchangeAudit.keep_body: what BodyLog asks it to record, and the future
    of each write (failing when told to)."""

    def __init__(self, failing: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.failing = failing

    def keep_body(self, *arguments: Any) -> asyncio.Future[int]:
        self.calls.append(arguments)
        written: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if self.failing:
            written.set_exception(AuditUnavailable("disk full"))
        else:
            written.set_result(len(self.calls))
        return written


async def test_messages_are_kept_in_order_per_direction_up_to_the_limit() -> None:
    kept = Kept()
    bodies = BodyLog(kept, "provider", "m" * 32, limit=10)  # type: ignore[arg-type]
    bodies.request(b"aaaa")
    bodies.response(b"bbbbbb")
    bodies.request(b"cccccc")  # 4 + 6: exactly the limit
    assert not bodies.truncated
    bodies.request(b"d")  # over the limit: left out
    bodies.response(b"eeee")  # 6 + 4: still within
    assert bodies.truncated
    assert kept.calls == [
        ("provider", "m" * 32, "request", 0, b"aaaa"),
        ("provider", "m" * 32, "response", 0, b"bbbbbb"),
        ("provider", "m" * 32, "request", 1, b"cccccc"),
        ("provider", "m" * 32, "response", 1, b"eeee"),
    ]
    await asyncio.sleep(0)
    assert not bodies.failed


async def test_a_body_that_could_not_be_written_marks_the_exchange_failed() -> None:
    bodies = BodyLog(Kept(failing=True), "provider", "m" * 32, limit=10)  # type: ignore[arg-type]
    bodies.request(b"aaaa")
    await asyncio.sleep(0)  # the write's callbacks run
    assert bodies.failed
