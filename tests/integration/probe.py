"""A test backend that implements ``test.v1.Probe`` with raw bytes, and records what it saw.

Methods (requests and responses are bytes; JSON where a method needs parameters):

``Echo``          unary: returns the request unchanged
``Metadata``      unary: returns the invocation metadata as JSON (``-bin`` values hex-encoded)
``Deadline``      unary: returns the remaining time (seconds, JSON) or ``null``
``ServerStream``  server-streaming: ``{"count": n, "size": s}`` -> n messages of s bytes, numbered
``ClientStream``  client-streaming: returns ``{"count": n, "bytes": total, "sha256": ...}``
``Bidi``          bidi-streaming: echoes every message as it arrives
``Sleep``         unary: ``{"seconds": x}``; sleeps, records whether it was cancelled
``Fail``          unary: ``{"code": "NOT_FOUND", "details": "..."}``: that status, with trailers
``Big``           unary: ``{"size": n}`` -> one response of n bytes
``Headers``       unary: initial metadata ``x-probe-initial``, trailing ``x-probe-trailing``
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

SERVICE = "test.v1.Probe"


@dataclass
class ProbeRecord:
    """What the probe backend observed."""

    calls: list[str] = field(default_factory=list)
    metadata: list[dict[str, Any]] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    called: asyncio.Event = field(default_factory=asyncio.Event)
    finished_sleeps: int = 0

    async def wait_for_call(self) -> None:
        """Wait (at most 10 s) until the backend has received a call."""
        await asyncio.wait_for(self.called.wait(), 10)


def _metadata_json(context: grpc.aio.ServicerContext) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in context.invocation_metadata() or ():
        seen.setdefault(key, []).append(value.hex() if isinstance(value, bytes) else value)
    return seen


class ProbeHandler(grpc.GenericRpcHandler):
    def __init__(self, record: ProbeRecord) -> None:
        self.record = record

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        prefix = f"/{SERVICE}/"
        if not details.method.startswith(prefix):
            return None
        name = details.method[len(prefix) :]
        record = self.record

        def note(context: grpc.aio.ServicerContext) -> None:
            record.calls.append(name)
            record.metadata.append(_metadata_json(context))
            record.called.set()

        async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            note(context)
            return request

        async def metadata(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            note(context)
            return json.dumps(_metadata_json(context)).encode()

        async def deadline(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            note(context)
            return json.dumps(context.time_remaining()).encode()

        async def server_stream(request: bytes, context: grpc.aio.ServicerContext):
            note(context)
            spec = json.loads(request)
            for index in range(spec["count"]):
                body = index.to_bytes(4, "big")
                yield body + b"x" * max(0, spec["size"] - 4)

        async def client_stream(requests, context: grpc.aio.ServicerContext) -> bytes:
            note(context)
            count, total, digest = 0, 0, hashlib.sha256()
            async for message in requests:
                count += 1
                total += len(message)
                digest.update(message)
            return json.dumps(
                {"count": count, "bytes": total, "sha256": digest.hexdigest()}
            ).encode()

        async def bidi(requests, context: grpc.aio.ServicerContext):
            note(context)
            async for message in requests:
                yield message

        async def sleep(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            note(context)
            try:
                await asyncio.sleep(json.loads(request)["seconds"])
            except asyncio.CancelledError:
                record.cancelled.set()
                raise
            record.finished_sleeps += 1
            return b"slept"

        async def fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            note(context)
            spec = json.loads(request)
            await context.abort(
                grpc.StatusCode[spec["code"]],
                spec["details"],
                trailing_metadata=(
                    ("x-probe-error", "from-backend"),
                    ("pintu-error-code", "forged"),
                ),
            )

        async def big(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            note(context)
            return b"b" * json.loads(request)["size"]

        async def headers(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            note(context)
            await context.send_initial_metadata(
                (("x-probe-initial", "hello"), ("pintu-forged", "no"))
            )
            context.set_trailing_metadata((("x-probe-trailing", "bye"),))
            return b"ok"

        unary = {
            "Echo": echo,
            "Metadata": metadata,
            "Deadline": deadline,
            "Sleep": sleep,
            "Fail": fail,
            "Big": big,
            "Headers": headers,
        }
        if name in unary:
            return grpc.unary_unary_rpc_method_handler(unary[name])
        if name == "ServerStream":
            return grpc.unary_stream_rpc_method_handler(server_stream)
        if name == "ClientStream":
            return grpc.stream_unary_rpc_method_handler(client_stream)
        if name == "Bidi":
            return grpc.stream_stream_rpc_method_handler(bidi)
        return None


async def start_probe(
    record: ProbeRecord, address: str = "127.0.0.1:0"
) -> tuple[grpc.aio.Server, int]:
    """Start the probe backend; returns the server and its port."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 256 * 1024 * 1024),
            ("grpc.max_send_message_length", 256 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers([ProbeHandler(record)])
    port = server.add_insecure_port(address)
    await server.start()
    return server, port
