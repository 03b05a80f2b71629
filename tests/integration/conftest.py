from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.integration.testbed import TwoGateways, build_testbed


@pytest.fixture
async def make_testbed() -> AsyncIterator[Callable[..., Awaitable[TwoGateways]]]:
    """Build testbeds with options; all are closed at teardown."""
    built: list[TwoGateways] = []

    async def make(**options: Any) -> TwoGateways:
        testbed = await build_testbed(**options)
        built.append(testbed)
        return testbed

    yield make
    for testbed in built:
        await testbed.close()


@pytest.fixture
async def testbed(make_testbed: Callable[..., Awaitable[TwoGateways]]) -> TwoGateways:
    return await make_testbed()
