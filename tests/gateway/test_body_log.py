"""One exchange's kept bodies: each message in order per direction, up to the limit, beyond
which the rest is left out and the exchange marked truncated."""

from __future__ import annotations

from typing import Any

from gateway._audit import BodyLog


class Kept:
    """Stands in for ExchangeAudit.keep_body (what BodyLog asks it to record)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def keep_body(self, *arguments: Any) -> None:
        self.calls.append(arguments)


def test_messages_are_kept_in_order_per_direction_up_to_the_limit() -> None:
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
