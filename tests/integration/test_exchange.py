"""An agency calls another agency's service through two security servers: what must arrive."""

from __future__ import annotations

import asyncio
import hashlib
import json

import grpc
import pytest

from proto.pintu.v1 import metaservices_pb2, metaservices_pb2_grpc
from tests.integration.testbed import (
    CLIENT,
    PROBE,
    PROBE_METHODS,
    PROVIDER,
    SECURE_CLIENT,
    TwoGateways,
    metadata,
    probe,
)

pytestmark = pytest.mark.integration


async def test_unary_call_reaches_the_backend_and_returns(testbed: TwoGateways) -> None:
    call = probe(testbed.agency_channel(), "Echo")(b"hello", metadata=metadata(), timeout=10)
    assert await call == b"hello"
    trailing = dict(await call.trailing_metadata())
    assert len(trailing["pintu-message-id"]) == 32
    assert "pintu-error-code" not in trailing


async def test_payload_bytes_pass_unchanged_including_a_large_message(testbed: TwoGateways) -> None:
    body = bytes(range(256)) * (8 * 1024 * 1024 // 256)  # 8 MiB, every byte value
    answer = await probe(testbed.agency_channel(), "Echo")(body, metadata=metadata(), timeout=30)
    assert answer == body


async def test_server_streaming_passes_every_message_in_order(testbed: TwoGateways) -> None:
    spec = json.dumps({"count": 2000, "size": 100}).encode()
    call = probe(testbed.agency_channel(), "ServerStream", "server")(
        spec, metadata=metadata(), timeout=30
    )
    received = [message async for message in call]
    assert len(received) == 2000
    assert [int.from_bytes(m[:4], "big") for m in received] == list(range(2000))
    assert await call.code() == grpc.StatusCode.OK


async def test_client_streaming_passes_every_message(testbed: TwoGateways) -> None:
    messages = [bytes([i % 251]) * (i + 1) for i in range(1500)]

    async def requests():
        for message in messages:
            yield message

    answer = await probe(testbed.agency_channel(), "ClientStream", "client")(
        requests(), metadata=metadata(), timeout=30
    )
    expected = hashlib.sha256(b"".join(messages)).hexdigest()
    assert json.loads(answer) == {
        "count": 1500,
        "bytes": sum(len(m) for m in messages),
        "sha256": expected,
    }


async def test_bidi_streaming_interleaves_requests_and_responses(testbed: TwoGateways) -> None:
    call = probe(testbed.agency_channel(), "Bidi", "bidi")(metadata=metadata(), timeout=30)
    for index in range(300):
        message = f"ping {index}".encode()
        await call.write(message)
        assert await call.read() == message  # answered before the next request is sent
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_backend_receives_verified_pintu_values_and_the_callers_metadata(
    testbed: TwoGateways,
) -> None:
    sent = [
        *metadata(
            pintu_subject="NIK:3174051234560001",
            pintu_user="caseworker-17",
            pintu_issue="APP-2026-0001",
        ),
        ("x-trace-id", "abc123"),
        ("x-blob-bin", b"\x00\xff"),
    ]
    call = probe(testbed.agency_channel(), "Metadata")(b"", metadata=sent, timeout=10)
    seen = json.loads(await call)
    message_id = dict(await call.trailing_metadata())["pintu-message-id"]
    assert seen["pintu-client"] == [str(CLIENT)]
    assert seen["pintu-purpose"] == ["testing"]
    assert seen["pintu-subject"] == ["NIK:3174051234560001"]
    assert seen["pintu-user"] == ["caseworker-17"]
    assert seen["pintu-issue"] == ["APP-2026-0001"]
    assert seen["pintu-message-id"] == [message_id]
    assert seen["x-trace-id"] == ["abc123"]
    assert seen["x-blob-bin"] == ["00ff"]
    # Internals between the gateways never reach the backend.
    assert "pintu-exchange-bin" not in seen
    assert "pintu-provider" not in seen


async def test_a_hundred_metadata_entries_pass_to_the_backend(testbed: TwoGateways) -> None:
    # About 4 KB in all, well within gRPC's soft limit (8 KiB, counting 32 bytes per entry).
    entries = [*metadata(), *[(f"x-k{i}", f"v{i}") for i in range(100)]]
    seen = json.loads(
        await probe(testbed.agency_channel(), "Metadata")(b"", metadata=entries, timeout=10)
    )
    assert all(seen[f"x-k{i}"] == [f"v{i}"] for i in range(100))


async def test_backend_metadata_and_status_come_back_unchanged(testbed: TwoGateways) -> None:
    call = probe(testbed.agency_channel(), "Headers")(b"", metadata=metadata(), timeout=10)
    assert await call == b"ok"
    initial = dict(await call.initial_metadata())
    trailing = dict(await call.trailing_metadata())
    assert initial["x-probe-initial"] == "hello"
    assert trailing["x-probe-trailing"] == "bye"
    # A backend cannot forge Pintu's own entries.
    assert "pintu-forged" not in initial


async def test_backend_error_status_passes_through_without_a_pintu_code(
    testbed: TwoGateways,
) -> None:
    request = json.dumps({"code": "NOT_FOUND", "details": "no such citizen"}).encode()
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await probe(testbed.agency_channel(), "Fail")(request, metadata=metadata(), timeout=10)
    error = failure.value
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "no such citizen"
    trailing = dict(error.trailing_metadata())
    assert trailing["x-probe-error"] == "from-backend"
    assert "pintu-error-code" not in trailing  # the backend's forged code was removed
    assert len(trailing["pintu-message-id"]) == 32


@pytest.mark.parametrize(
    "code", ["UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED", "INTERNAL"]
)
async def test_backend_status_that_gateways_also_use_passes_through_as_the_backends(
    testbed: TwoGateways, code: str
) -> None:
    # The gateways refuse with these statuses too; a backend's is still not taken for a refusal.
    request = json.dumps({"code": code, "details": "from backend"}).encode()
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await probe(testbed.agency_channel(), "Fail")(request, metadata=metadata(), timeout=10)
    error = failure.value
    assert error.code() == grpc.StatusCode[code]
    assert error.details() == "from backend"
    trailing = dict(error.trailing_metadata())
    assert trailing["x-probe-error"] == "from-backend"
    assert "pintu-error-code" not in trailing


async def test_deadline_propagates_to_the_backend(testbed: TwoGateways) -> None:
    answer = await probe(testbed.agency_channel(), "Deadline")(b"", metadata=metadata(), timeout=7)
    remaining = json.loads(answer)
    assert remaining is not None
    # gRPC sends a timeout, not a deadline, and rounds it up to its wire units at every hop, so
    # the backend may see a few milliseconds more than the caller set; never much more.
    assert 5 < remaining <= 7.05


async def test_no_deadline_means_no_deadline_at_the_backend(testbed: TwoGateways) -> None:
    answer = await probe(testbed.agency_channel(), "Deadline")(b"", metadata=metadata())
    assert json.loads(answer) is None


async def test_many_concurrent_exchanges_each_get_their_own_answer(testbed: TwoGateways) -> None:
    echo = probe(testbed.agency_channel(), "Echo")
    bodies = [f"exchange {i}".encode() * (i + 1) for i in range(200)]
    answers = await asyncio.gather(
        *(echo(body, metadata=metadata(), timeout=30) for body in bodies)
    )
    assert answers == bodies


async def test_mtls_agency_listener_accepts_the_client_its_certificate_names(
    testbed: TwoGateways,
) -> None:
    channel = testbed.agency_tls_channel(SECURE_CLIENT)
    answer = await probe(channel, "Echo")(
        b"secure", metadata=metadata(client=SECURE_CLIENT), timeout=10
    )
    assert answer == b"secure"
    assert testbed.probe.metadata[-1]["pintu-client"] == [str(SECURE_CLIENT)]


async def test_metaservices_list_clients_and_services(testbed: TwoGateways) -> None:
    stub = metaservices_pb2_grpc.MetaservicesStub(testbed.agency_channel())
    clients = await stub.ListClients(metaservices_pb2.ListClientsRequest(), timeout=10)
    names = {(c.id.member.member_code, c.id.subsystem_code, c.member_name) for c in clients.clients}
    assert ("B", "provider", "Agency B") in names
    assert ("A", "client", "Agency A") in names
    services = await stub.ListServices(
        metaservices_pb2.ListServicesRequest(provider=str(PROVIDER)), timeout=10
    )
    assert [s.id.service_name for s in services.services] == [PROBE.service_name]
    assert list(services.services[0].methods) == list(PROBE_METHODS)


async def test_graceful_shutdown_drains_calls_in_flight(testbed: TwoGateways) -> None:
    sleeping = probe(testbed.agency_channel(), "Sleep")(
        json.dumps({"seconds": 0.5}).encode(), metadata=metadata(), timeout=10
    )
    await testbed.probe.wait_for_call()
    await asyncio.gather(testbed.consumer.stop(5), testbed.provider.stop(5))
    assert await sleeping == b"slept"
    assert testbed.probe.finished_sleeps == 1
