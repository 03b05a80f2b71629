"""A security server with a TSA timestamps its checkpoints; while the TSA is down exchanges and
checkpoints go on, and the timestamps catch up when it answers again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from audit import verify_log
from tests.audit.test_timestamp import LocalTsa
from tests.integration.testbed import A, B, TwoGateways, metadata, probe

pytestmark = pytest.mark.integration

MakeTestbed = Callable[..., Awaitable[TwoGateways]]


async def test_checkpoints_go_on_while_the_tsa_is_down_and_are_stamped_when_it_returns(
    make_testbed: MakeTestbed, tmp_path: Path
) -> None:
    tsa = LocalTsa(tmp_path / "tsa")
    try:
        tsa.stop()  # down from the start
        testbed = await make_testbed(audit=True, audit_timestamper=tsa.timestamper(timeout=2))
        servers = ((testbed.consumer, A), (testbed.provider, B))
        for _ in range(3):
            answer = await probe(testbed.agency_channel(), "Echo")(
                b"x", metadata=metadata(), timeout=10
            )
            assert answer == b"x"
        for _ in range(200):
            if all(s.audit and s.audit.tsa_failing for s, _ in servers):
                break
            await asyncio.sleep(0.05)
        for server, member in servers:
            assert server.audit is not None
            assert server.audit.tsa_failing
            verified = verify_log(
                server.audit.log.path, [testbed.pki.root], member, tsa_roots=[tsa.root]
            )
            assert verified.checkpoints >= 1
            assert verified.timestamped == 0

        tsa.start()
        for server, member in servers:
            assert server.audit is not None
            for _ in range(200):
                verified = verify_log(
                    server.audit.log.path, [testbed.pki.root], member, tsa_roots=[tsa.root]
                )
                if verified.timestamped == verified.checkpoints and not server.audit.tsa_failing:
                    break
                await asyncio.sleep(0.05)
            assert verified.timestamped == verified.checkpoints >= 1
            assert not server.audit.tsa_failing
        assert tsa.requests >= 2
    finally:
        tsa.close()
