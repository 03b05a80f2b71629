"""Assertions and stand-ins shared by the integration tests: refusals, a rogue peer, the exchange
header a consumer gateway sends, and a testbed in a child process whose memory can be measured."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

import pki
from proto import SecurityServerId, SubsystemId
from proto.pintu.v1 import errors_pb2, exchange_pb2
from tests.integration.testbed import (
    C_SERVER,
    CLIENT,
    PROVIDER,
    TwoGateways,
    metadata,
    probe,
    trailers,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error ``call`` fails with; the test fails if it succeeds or hangs."""
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await asyncio.wait_for(call, 20)
    return failure.value


def assert_refusal(
    error: grpc.aio.AioRpcError, status: grpc.StatusCode, code: str, origin: str
) -> errors_pb2.ErrorDetail:
    """``error`` is a Pintu refusal with ``status``, ``code`` and ``origin``; returns its detail."""
    found = trailers(error)
    assert error.code() == status, (error.code(), error.details(), found)
    assert found.get("pintu-error-code") == code, found
    assert found.get("pintu-error-origin") == origin, found
    detail = errors_pb2.ErrorDetail.FromString(found["pintu-error-detail-bin"])
    assert detail.code == code
    assert detail.message == error.details()
    return detail


async def still_serving(testbed: TwoGateways) -> None:
    """The gateways answer a good exchange after whatever the test did."""
    try:
        answer = await asyncio.wait_for(
            probe(testbed.agency_channel(), "Echo")(b"ok", metadata=metadata(), timeout=10), 15
        )
    except grpc.aio.AioRpcError as error:
        pytest.fail(f"the gateways stopped serving: {error.code().name}: {error.details()}")
    assert answer == b"ok"


def running_tasks() -> int:
    """The asyncio tasks of this process's loop (the gateways of the testbed run in it)."""
    return len(asyncio.all_tasks())


def exchange_header(
    client: SubsystemId = CLIENT,
    provider: SubsystemId = PROVIDER,
    server: SecurityServerId = C_SERVER,
    method: str = "/test.v1.Probe/Echo",
) -> bytes:
    """A serialized exchange header, as a consumer gateway ``server`` sends it to a provider."""
    created = Timestamp()
    created.GetCurrentTime()
    return exchange_pb2.ExchangeHeader(
        version=1,
        message_id="0123456789abcdef0123456789abcdef",
        client=client.to_proto(),
        provider=provider.to_proto(),
        method=method,
        purpose="testing",
        created_at=created,
        consumer_server=server.to_proto(),
    ).SerializeToString()


# -- a rogue peer ----------------------------------------------------------------------------------


class RogueBackend(grpc.GenericRpcHandler):
    """Answers every method with ``b"forged"`` and records the metadata it was sent."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str | bytes]] = []

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        seen = self.seen

        async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            seen.append(dict(context.invocation_metadata() or ()))
            return b"forged"

        return grpc.unary_unary_rpc_method_handler(answer)


async def replace_provider_with_rogue(
    testbed: TwoGateways, identity: pki.TlsIdentity
) -> tuple[grpc.aio.Server, RogueBackend]:
    """Stop the provider gateway and serve its registered peer address with ``identity``, as an
    attacker who can reach or redirect traffic to that address would. The caller stops the
    returned server."""
    port = testbed.provider.peer_port
    await testbed.provider.stop(0)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    rogue = RogueBackend()
    server.add_generic_rpc_handlers([rogue])
    credentials = grpc.ssl_server_credentials(
        [(identity.private_key, identity.certificate_chain)],
        root_certificates=testbed.pki.anchors,
        require_client_auth=True,
    )
    assert server.add_secure_port(f"127.0.0.1:{port}", credentials) == port
    await server.start()
    return server, rogue


# -- a testbed in a child process ------------------------------------------------------------------

# Serves a testbed until its standard input closes; prints the consumer's plaintext agency port.
_TESTBED_PROGRAM = """
import asyncio, sys
from tests.integration.testbed import build_testbed

async def main() -> None:
    testbed = await build_testbed()
    print(testbed.consumer.agency_ports[0], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await testbed.close()

asyncio.run(main())
"""


@dataclass(frozen=True)
class ChildTestbed:
    """Both gateways and the probe backend, running in a process of their own."""

    pid: int
    agency_address: str

    def rss_mib(self) -> int:
        """The child's resident set size in MiB."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
        raise RuntimeError(f"no VmRSS in /proc/{self.pid}/status")


@contextlib.asynccontextmanager
async def child_testbed() -> AsyncIterator[ChildTestbed]:
    """Run a default testbed in a fresh Python process, so that what its gateways allocate can be
    measured apart from this process (whose allocator keeps what earlier tests freed)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _TESTBED_PROGRAM,
        cwd=PROJECT_ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        port = int(await asyncio.wait_for(child.stdout.readline(), 30))
        yield ChildTestbed(child.pid, f"127.0.0.1:{port}")
    finally:
        child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 10)
        except TimeoutError:
            child.kill()
            await child.wait()
