"""Streams through two security servers behave as without them: headers, messages, status, rich
error details, backpressure, and the ordinary ends of a call (cancellation, deadlines)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter

import grpc
import grpc.aio
import pytest

from tests.integration.probe import RICH_STATUS
from tests.integration.support import refused, running_tasks
from tests.integration.testbed import TwoGateways, metadata, probe, trailers

pytestmark = pytest.mark.integration

S = grpc.StatusCode
KIB = 1024
MIB = 1024 * KIB


# -- headers and errors ----------------------------------------------------------------------------


async def test_backend_rich_error_details_reach_the_client(testbed: TwoGateways) -> None:
    """A backend failing with the standard rich error model (``grpc-status-details-bin``, a
    serialized google.rpc.Status, as grpcio-status' ``abort_with_status`` sends it) reaches the
    client with its status, message and details unchanged."""
    call = probe(testbed.agency_channel(), "RichFail")(b"", metadata=metadata(), timeout=5)
    error = await refused(call)
    assert error.code() == S.INVALID_ARGUMENT
    assert error.details() == "bad nik"
    assert trailers(error).get("grpc-status-details-bin") == RICH_STATUS


async def test_backend_headers_reach_the_client_before_the_first_message(
    testbed: TwoGateways,
) -> None:
    """A server-streaming backend's (empty) headers, sent at once with the first message 2 s
    later, reach the client at once: clients await ``initial_metadata()`` as the signal that the
    stream is open."""
    call = probe(testbed.agency_channel(), "HeadersFirst", "server")(
        b"", metadata=metadata(), timeout=10
    )
    try:
        try:
            await asyncio.wait_for(call.initial_metadata(), 1)
        except TimeoutError:
            pytest.fail("the backend's headers were held back until its first message")
        assert await asyncio.wait_for(call.read(), 5) == b"late"
    finally:
        call.cancel()


async def test_backend_error_after_stream_messages_keeps_messages_status_and_trailers(
    testbed: TwoGateways,
) -> None:
    """A backend that fails after streaming three messages: the client receives the messages,
    then the backend's status, details and own trailers; the backend's forged Pintu entries are
    removed or replaced."""
    call = probe(testbed.agency_channel(), "StreamFail", "server")(
        b"", metadata=metadata(), timeout=10
    )
    assert [await call.read() for _ in range(3)] == [b"m0", b"m1", b"m2"]
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call.read()
    assert failure.value.code() == S.ABORTED
    assert failure.value.details() == "midway"
    found = trailers(failure.value)
    assert found["x-why"] == "because"
    assert "pintu-error-code" not in found
    assert found["pintu-message-id"] != "f" * 32
    assert len(found["pintu-message-id"]) == 32


# -- bidi-streaming --------------------------------------------------------------------------------


async def test_bidi_backend_answers_after_the_client_half_closes(testbed: TwoGateways) -> None:
    """A bidi backend that reads every request before answering receives the client's
    half-close and answers every message."""
    call = probe(testbed.agency_channel(), "Collect", "bidi")(metadata=metadata(), timeout=10)
    for index in range(5):
        await call.write(b"%d" % index)
    await call.done_writing()
    answers = await asyncio.wait_for(_read_all(call), 5)
    assert answers == [b"0!", b"1!", b"2!", b"3!", b"4!"]
    assert await call.code() == S.OK


async def test_bidi_backend_may_speak_first(testbed: TwoGateways) -> None:
    """A bidi backend's first message reaches the client before the client sends anything."""
    call = probe(testbed.agency_channel(), "Greeter", "bidi")(metadata=metadata(), timeout=10)
    assert await asyncio.wait_for(call.read(), 5) == b"hello"
    await call.write(b"a")
    assert await asyncio.wait_for(call.read(), 5) == b"a"
    await call.done_writing()
    assert await asyncio.wait_for(call.read(), 5) == grpc.aio.EOF
    assert await call.code() == S.OK


async def test_bidi_backend_ending_before_the_client_half_closes_leaks_nothing(
    testbed: TwoGateways,
) -> None:
    """A bidi backend that ends the call before the client half-closes ends it for the client
    with OK, and the gateways keep no task behind for it."""
    channel = testbed.agency_channel()
    before = running_tasks()
    for _ in range(20):
        call = probe(channel, "Once", "bidi")(metadata=metadata(), timeout=10)
        await call.write(b"one")  # and never half-close
        assert await asyncio.wait_for(call.read(), 5) == b"one"
        assert await asyncio.wait_for(call.read(), 5) == grpc.aio.EOF
        assert await call.code() == S.OK
    await asyncio.sleep(0.5)
    assert running_tasks() <= before


# -- flow control: one stream ----------------------------------------------------------------------


async def test_a_stalled_reader_backpressures_the_backend(testbed: TwoGateways) -> None:
    """A client that stops reading a server stream holds the backend back after well under
    64 MiB, instead of the gateways buffering without end; its cancel then reaches the backend."""
    call = probe(testbed.agency_channel(), "Counting", "server")(
        b"", metadata=metadata(), timeout=30
    )
    await call.read()
    await asyncio.sleep(1.5)
    first = testbed.probe.streamed
    await asyncio.sleep(1)
    assert testbed.probe.streamed == first
    assert first * 64 * KIB < 64 * MIB
    call.cancel()
    await asyncio.wait_for(testbed.probe.stream_closed.wait(), 5)


async def test_a_slow_backend_reader_backpressures_a_client_stream(testbed: TwoGateways) -> None:
    """A backend that reads a client stream slowly holds the client back after well under
    64 MiB."""
    sent = 0

    async def requests():
        nonlocal sent
        while True:
            sent += 1
            yield b"y" * (64 * KIB)

    call = probe(testbed.agency_channel(), "SlowReader", "client")(
        requests(), metadata=metadata(), timeout=30
    )
    await asyncio.sleep(1.5)
    first = sent
    await asyncio.sleep(1)
    assert sent == first
    assert first * 64 * KIB < 64 * MIB
    assert testbed.probe.slow_reads == 1
    call.cancel()


# -- the ordinary ends of a call -------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["client_cancels", "deadline_passes"])
async def test_end_of_a_backpressured_stream_is_not_an_internal_error(
    testbed: TwoGateways, caplog: pytest.LogCaptureFixture, ending: str
) -> None:
    """A server stream whose reader stalls (so both gateways wait to write to it) and which then
    ends because the client cancels or its deadline passes ends quietly: no ERROR record and no
    internal_error refusal in either gateway."""
    caplog.set_level(logging.WARNING, logger="pintu.gateway")
    spec = json.dumps({"count": 1000, "size": 256 * KIB}).encode()
    call = probe(testbed.agency_channel(), "ServerStream", "server")(
        spec, metadata=metadata(), timeout=1.5 if ending == "deadline_passes" else 30
    )
    await call.read()
    await asyncio.sleep(1)  # every hop's flow-control window fills up
    if ending == "client_cancels":
        call.cancel()
    expected = S.CANCELLED if ending == "client_cancels" else S.DEADLINE_EXCEEDED
    assert await asyncio.wait_for(call.code(), 5) == expected
    await asyncio.sleep(1)  # the gateways notice
    gateway = [r for r in caplog.records if r.name == "pintu.gateway"]
    codes = [r.pintu_event["code"] for r in gateway if hasattr(r, "pintu_event")]
    assert "internal_error" not in codes
    assert [r.getMessage() for r in gateway if r.levelno >= logging.ERROR] == []


async def test_one_millisecond_deadlines_leak_no_tasks(testbed: TwoGateways) -> None:
    """Calls whose deadline passes at once end with OK or DEADLINE_EXCEEDED, nothing else, and
    leave no task behind in the gateways."""
    echo = probe(testbed.agency_channel(), "Echo")
    await echo(b"warm", metadata=metadata(), timeout=5)
    before = running_tasks()
    outcomes: Counter[str] = Counter()
    for _ in range(100):
        try:
            await echo(b"x", metadata=metadata(), timeout=0.001)
            outcomes["OK"] += 1
        except grpc.aio.AioRpcError as error:
            outcomes[error.code().name] += 1
    await asyncio.sleep(0.5)
    assert running_tasks() <= before
    assert set(outcomes) <= {"OK", "DEADLINE_EXCEEDED"}, outcomes


async def test_many_cancelled_calls_reach_the_backend_and_leak_no_tasks(
    testbed: TwoGateways,
) -> None:
    """50 unary and 50 streaming calls cancelled midway: every cancelled ``Sleep`` ends in the
    backend, no task is left behind and the gateways keep serving on the same channel."""
    channel = testbed.agency_channel()
    before = running_tasks()
    sleeping = [
        probe(channel, "Sleep")(
            json.dumps({"seconds": 30}).encode(), metadata=metadata(), timeout=30
        )
        for _ in range(50)
    ]
    streams = [
        probe(channel, "ServerStream", "server")(
            json.dumps({"count": 100_000, "size": 1000}).encode(), metadata=metadata(), timeout=30
        )
        for _ in range(50)
    ]
    for stream in streams:
        await asyncio.wait_for(stream.read(), 5)
    await asyncio.sleep(0.3)
    for call in [*sleeping, *streams]:
        call.cancel()
    await asyncio.sleep(1)
    assert testbed.probe.finished_sleeps == 0
    assert testbed.probe.cancelled_sleeps == 50
    assert running_tasks() <= before
    answer = await probe(channel, "Echo")(b"ok", metadata=metadata(), timeout=5)
    assert answer == b"ok"


async def _read_all(call: grpc.aio.StreamStreamCall) -> list[bytes]:
    return [message async for message in call]
