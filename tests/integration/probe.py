"""A test backend that implements ``test.v1.Probe`` with raw bytes, and records what it saw.

Methods (requests and responses are bytes; JSON where a method needs parameters):

``Echo``          unary: returns the request unchanged
``Metadata``      unary: returns the invocation metadata as JSON (``-bin`` values hex-encoded)
``Deadline``      unary: returns the remaining time (seconds, JSON) or ``null``
``ServerStream``  server-streaming: ``{"count": n, "size": s}`` -> n messages of s bytes, numbered
``ClientStream``  client-streaming: returns ``{"count": n, "bytes": total, "sha256": ...}``
``Bidi``          bidi-streaming: echoes every message as it arrives
``Sleep``         unary: ``{"seconds": x}``; sleeps, counts whether it finished or was cancelled
``Fail``          unary: ``{"code": "NOT_FOUND", "details": "..."}``: that status, with trailers
``Big``           unary: ``{"size": n}`` -> one response of n bytes
``Headers``       unary: initial metadata ``x-probe-initial``, trailing ``x-probe-trailing``
``RichFail``      unary: fails INVALID_ARGUMENT "bad nik" with :data:`RICH_STATUS` as
                  ``grpc-status-details-bin`` (the rich error model, as grpcio-status sends it)
``HeadersFirst``  server-streaming: sends empty headers at once, then ``b"late"`` 2 s later
``Counting``      server-streaming: up to 100,000 numbered messages of 64 KiB, counted in
                  ``ProbeRecord.streamed`` as produced; sets ``stream_closed`` when it ends
``SlowReader``    client-streaming: reads one message every 10 s, counted in
                  ``ProbeRecord.slow_reads``; returns ``b"done"``
``StreamFail``    server-streaming: ``b"m0"``, ``b"m1"``, ``b"m2"``, then ABORTED "midway" with
                  trailers ``x-why`` and forged ``pintu-error-code`` and ``pintu-message-id``
``Collect``       bidi-streaming: reads until the client half-closes, then answers every
                  message with ``b"!"`` appended
``Greeter``       bidi-streaming: sends ``b"hello"`` before reading, then echoes
``Once``          bidi-streaming: echoes the first message and ends, without waiting for the
                  client to half-close
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
# What ``RichFail`` sends as grpc-status-details-bin: google.rpc.Status(code=3, message="bad nik").
RICH_STATUS = b"\x08\x03\x12\x07bad nik"


@dataclass
class ProbeRecord:
    """What the probe backend observed."""

    calls: list[str] = field(default_factory=list)
    metadata: list[dict[str, Any]] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    called: asyncio.Event = field(default_factory=asyncio.Event)
    finished_sleeps: int = 0
    cancelled_sleeps: int = 0
    # Messages ``Counting`` has produced, and whether its stream has ended.
    streamed: int = 0
    stream_closed: asyncio.Event = field(default_factory=asyncio.Event)
    # Messages ``SlowReader`` has read.
    slow_reads: int = 0

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
                record.cancelled_sleeps += 1
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

        async def rich_fail(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            note(context)
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "bad nik",
                trailing_metadata=(("grpc-status-details-bin", RICH_STATUS),),
            )

        async def headers_first(request: bytes, context: grpc.aio.ServicerContext):
            note(context)
            await context.send_initial_metadata(())
            await asyncio.sleep(2)
            yield b"late"

        async def counting(request: bytes, context: grpc.aio.ServicerContext):
            note(context)
            try:
                for index in range(100_000):
                    record.streamed += 1
                    yield index.to_bytes(4, "big") + b"x" * (64 * 1024 - 4)
            finally:
                record.stream_closed.set()

        async def slow_reader(requests, context: grpc.aio.ServicerContext) -> bytes:
            note(context)
            async for _ in requests:
                record.slow_reads += 1
                await asyncio.sleep(10)
            return b"done"

        async def stream_fail(request: bytes, context: grpc.aio.ServicerContext):
            note(context)
            for index in range(3):
                yield b"m%d" % index
            await context.abort(
                grpc.StatusCode.ABORTED,
                "midway",
                trailing_metadata=(
                    ("x-why", "because"),
                    ("pintu-error-code", "forged"),
                    ("pintu-message-id", "f" * 32),
                ),
            )

        async def collect(requests, context: grpc.aio.ServicerContext):
            note(context)
            collected = [message async for message in requests]
            for message in collected:
                yield message + b"!"

        async def greeter(requests, context: grpc.aio.ServicerContext):
            note(context)
            yield b"hello"
            async for message in requests:
                yield message

        async def once(requests, context: grpc.aio.ServicerContext):
            note(context)
            async for message in requests:
                yield message
                return

        unary = {
            "Echo": echo,
            "Metadata": metadata,
            "Deadline": deadline,
            "Sleep": sleep,
            "Fail": fail,
            "Big": big,
            "Headers": headers,
            "RichFail": rich_fail,
        }
        server_streaming = {
            "ServerStream": server_stream,
            "HeadersFirst": headers_first,
            "Counting": counting,
            "StreamFail": stream_fail,
        }
        client_streaming = {"ClientStream": client_stream, "SlowReader": slow_reader}
        bidi_streaming = {"Bidi": bidi, "Collect": collect, "Greeter": greeter, "Once": once}
        if name in unary:
            return grpc.unary_unary_rpc_method_handler(unary[name])
        if name in server_streaming:
            return grpc.unary_stream_rpc_method_handler(server_streaming[name])
        if name in client_streaming:
            return grpc.stream_unary_rpc_method_handler(client_streaming[name])
        if name in bidi_streaming:
            return grpc.stream_stream_rpc_method_handler(bidi_streaming[name])
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


SERVER_STREAMING = frozenset({"ServerStream", "HeadersFirst", "Counting", "StreamFail"})
CLIENT_STREAMING = frozenset({"ClientStream", "SlowReader"})
BIDI_STREAMING = frozenset({"Bidi", "Collect", "Greeter", "Once"})
DESCRIPTOR_FILE = "test/v1/probe.proto"


def probe_descriptor_files(methods: tuple[str, ...]) -> tuple[bytes, ...]:
    """Descriptor files that declare ``test.v1.Probe`` with ``methods`` (each taking and
    returning ``google.protobuf.BytesValue``), as a provider registers them; the wrappers file
    it imports comes second."""
    from google.protobuf import descriptor_pb2, wrappers_pb2

    file = descriptor_pb2.FileDescriptorProto(
        name=DESCRIPTOR_FILE,
        package="test.v1",
        syntax="proto3",
        dependency=[wrappers_pb2.DESCRIPTOR.name],
    )
    service = file.service.add(name="Probe")
    for name in methods:
        service.method.add(
            name=name,
            input_type=".google.protobuf.BytesValue",
            output_type=".google.protobuf.BytesValue",
            client_streaming=name in CLIENT_STREAMING or name in BIDI_STREAMING,
            server_streaming=name in SERVER_STREAMING or name in BIDI_STREAMING,
        )
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    return (
        file.SerializeToString(deterministic=True),
        wrappers.SerializeToString(deterministic=True),
    )
