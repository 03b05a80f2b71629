"""Hostile and malformed input from callers and peers: refused with the exact status and Pintu
code, never reaching a party it was not meant for, never stopping a listener, never making a
gateway buffer without bound."""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import grpc.aio
import pytest

import pki
from tests.integration.support import (
    assert_refusal,
    child_testbed,
    exchange_header,
    refused,
    replace_provider_with_rogue,
    still_serving,
)
from tests.integration.testbed import (
    A_SERVER,
    B_SERVER,
    C_CLIENT,
    C_SERVER,
    CLIENT,
    IDLE,
    B,
    C,
    TwoGateways,
    metadata,
    probe,
    trailers,
)

pytestmark = pytest.mark.integration

S = grpc.StatusCode
KIB = 1024


# -- flow control: memory per stalled stream -------------------------------------------------------


async def test_stalled_streams_do_not_grow_gateway_memory_without_bound() -> None:
    """40 server streams of 64 KiB messages from one plaintext agency client, each read once and
    then left unread, cost the gateways and the backend well under 160 MiB together.

    Flow control holds every sender back after a bounded window per stream and hop; windows that
    grow with bandwidth-delay probing would buffer about 10 MB per stalled stream instead, and a
    few hundred such streams would take a gateway down. The testbed runs in a child process so
    that only its memory is measured, from a baseline taken once its connections are up.
    """
    streams = 40
    spec = json.dumps({"count": 1_000_000, "size": 64 * KIB}).encode()
    async with child_testbed() as child:
        channel = grpc.aio.insecure_channel(child.agency_address)
        try:
            warm = probe(channel, "Echo")(b"warm", metadata=metadata(), timeout=10)
            assert await asyncio.wait_for(warm, 15) == b"warm"
            before = child.rss_mib()
            stream = probe(channel, "ServerStream", "server")
            calls = [stream(spec, metadata=metadata(), timeout=60) for _ in range(streams)]
            for call in calls:
                await asyncio.wait_for(call.read(), 20)  # one message each, then never again
            await asyncio.sleep(2)  # every hop fills what flow control allows
            grown = child.rss_mib() - before
            for call in calls:
                call.cancel()
        finally:
            await channel.close()
    assert grown < 160, f"the testbed grew by {grown} MiB for {streams} stalled streams"


# -- robustness: malformed calls do not stop a listener --------------------------------------------


async def test_non_utf8_method_path_on_the_peer_listener(testbed: TwoGateways) -> None:
    """A call whose method path is not UTF-8, from any holder of a federation certificate (here
    an agency client certificate of member C), is refused and B's peer listener keeps serving."""
    key, certificate = testbed.pki.client_identity(C_CLIENT)
    attacker = testbed.peer_channel(pki.TlsIdentity(key, certificate, testbed.pki.anchors))
    with pytest.raises(grpc.aio.AioRpcError):
        await asyncio.wait_for(attacker.unary_unary(b"/test.v1.Probe/\xff")(b"x", timeout=5), 8)
    await still_serving(testbed)


async def test_non_utf8_method_path_on_the_agency_listener(testbed: TwoGateways) -> None:
    """A call whose method path is not UTF-8, from any local process, is refused and the
    consumer's plaintext agency listener keeps serving."""
    channel = testbed.agency_channel()
    with pytest.raises(grpc.aio.AioRpcError):
        await asyncio.wait_for(
            channel.unary_unary(b"/test.v1.Probe/\xff")(b"x", metadata=metadata(), timeout=5), 8
        )
    await still_serving(testbed)


async def test_many_concurrent_refusals_are_all_answered(testbed: TwoGateways) -> None:
    """800 concurrent calls that are all refused are each answered, within 10 s, and the gateway
    keeps serving."""
    echo = probe(testbed.agency_channel(), "Echo")
    started = time.monotonic()
    results = await asyncio.gather(
        *(echo(b"x", metadata=metadata(client=IDLE), timeout=20) for _ in range(800)),
        return_exceptions=True,
    )
    assert all(isinstance(result, grpc.aio.AioRpcError) for result in results)
    assert {trailers(result)["pintu-error-code"] for result in results} == {"client_not_allowed"}
    assert time.monotonic() - started < 10
    await still_serving(testbed)


async def test_malformed_metaservice_request(testbed: TwoGateways) -> None:
    """Bytes that are not a ListServicesRequest, sent to the gateway's own metaservice, are
    refused with INVALID_ARGUMENT and request_invalid, not protobuf's exception text."""
    call = testbed.agency_channel().unary_unary("/pintu.v1.Metaservices/ListServices")(
        b"\xff\xff\xff", timeout=5
    )
    error = await refused(call)
    assert_refusal(error, S.INVALID_ARGUMENT, "request_invalid", "consumer_gateway")


# -- identity: whom the consumer sends an exchange to ----------------------------------------------


async def test_consumer_refuses_an_unregistered_server_of_the_provider_member(
    testbed: TwoGateways,
) -> None:
    """A valid certificate of B/ss9, a server of member B that is not registered (decommissioned,
    or a stolen test box), answering at the provider's registered address, receives nothing: the
    consumer talks only to registered servers and refuses with provider_unavailable."""
    rogue_server, rogue = await replace_provider_with_rogue(
        testbed, testbed.pki.server_identity(B.server("ss9"))
    )
    try:
        call = probe(testbed.agency_channel(), "Echo")(
            b"x", metadata=metadata(pintu_subject="NIK:3174051234560001"), timeout=5
        )
        error = await refused(call)
        assert rogue.seen == []
        assert_refusal(error, S.UNAVAILABLE, "provider_unavailable", "consumer_gateway")
    finally:
        await rogue_server.stop(0)


async def test_ca_refuses_a_security_servers_tls_name_in_a_listener_certificate(
    testbed: TwoGateways,
) -> None:
    """The federation CA never puts a security server's TLS name into an agency-listener
    certificate, whoever asks for it."""
    with pytest.raises(pki.IssuanceRefused):
        testbed.pki.listener_identity(C_SERVER, [pki.tls_server_name(B_SERVER)])


async def test_consumer_refuses_another_members_listener_certificate_as_provider(
    testbed: TwoGateways,
) -> None:
    """An agency-listener certificate of C/ss1 answering at B's registered address receives
    nothing (no exchange header, no citizen subject) and its answer does not pass for B's: the
    consumer refuses with provider_unavailable."""
    identity = testbed.pki.listener_identity(C_SERVER, ["localhost", "127.0.0.1"])
    rogue_server, rogue = await replace_provider_with_rogue(testbed, identity)
    try:
        call = probe(testbed.agency_channel(), "Echo")(
            b"x", metadata=metadata(pintu_subject="NIK:3174051234560001"), timeout=5
        )
        error = await refused(call)
        assert rogue.seen == []
        assert_refusal(error, S.UNAVAILABLE, "provider_unavailable", "consumer_gateway")
    finally:
        await rogue_server.stop(0)


# -- identity: whom the provider accepts an exchange from ------------------------------------------


async def test_provider_refuses_an_exchange_for_an_unregistered_client_subsystem(
    testbed: TwoGateways,
) -> None:
    """An exchange from C's registered server for a client subsystem C/ghost that the registry
    does not know is refused by the provider with client_unknown; the backend sees no call."""
    channel = testbed.peer_channel(await testbed.registered_identity(C_SERVER))
    header = exchange_header(client=C.subsystem("ghost"), server=C_SERVER)
    call = channel.unary_unary("/test.v1.Probe/Echo")(
        b"x", metadata=[("pintu-exchange-bin", header)], timeout=5
    )
    error = await refused(call)
    assert testbed.probe.calls == []
    assert_refusal(error, S.PERMISSION_DENIED, "client_unknown", "provider_gateway")


async def test_a_listener_certificate_cannot_authenticate_to_the_peer_listener(
    testbed: TwoGateways,
) -> None:
    """An agency-listener certificate names A/ss1 but is for TLS servers only (no clientAuth):
    the handshake with the provider's peer listener fails and the backend sees no call."""
    identity = testbed.pki.listener_identity(A_SERVER, ["localhost"])
    channel = testbed.peer_channel(identity)
    error = await refused(
        channel.unary_unary("/test.v1.Probe/Echo")(
            b"x",
            metadata=[("pintu-exchange-bin", exchange_header(client=CLIENT, server=A_SERVER))],
            timeout=5,
        )
    )
    assert error.code() == S.UNAVAILABLE
    assert testbed.probe.calls == []


async def test_a_server_certificate_cannot_act_as_an_agency_client(testbed: TwoGateways) -> None:
    """A/ss1's own authentication certificate, on A's mTLS agency listener, does not name a
    client subsystem: client_not_allowed."""
    identity = testbed.pki.server_identity(A_SERVER)
    credentials = grpc.ssl_channel_credentials(
        testbed.pki.anchors, identity.private_key, identity.certificate_chain
    )
    channel = grpc.aio.secure_channel(f"localhost:{testbed.consumer.agency_ports[1]}", credentials)
    testbed.channels.append(channel)
    error = await refused(probe(channel, "Echo")(b"x", metadata=metadata(client=CLIENT), timeout=5))
    assert_refusal(error, S.PERMISSION_DENIED, "client_not_allowed", "consumer_gateway")


# -- metadata --------------------------------------------------------------------------------------


async def test_oversized_metadata_is_never_reported_as_message_too_large(
    testbed: TwoGateways,
) -> None:
    """About 12 KB of ordinary metadata with a 1-byte message either passes or is refused as
    metadata (by a gRPC transport, or by the consumer with metadata_too_large), never with
    message_too_large or any other Pintu code.

    gRPC's metadata limit is soft, so the outcome varies from call to call; 40 calls make every
    outcome likely.
    """
    entries = [*metadata(), ("x-large", "v" * 12_000)]
    echo = probe(testbed.agency_channel(), "Echo")
    codes: list[str | bytes | None] = []
    for _ in range(40):
        try:
            await asyncio.wait_for(echo(b"x", metadata=entries, timeout=5), 8)
        except grpc.aio.AioRpcError as error:
            codes.append(trailers(error).get("pintu-error-code"))
    assert set(codes) <= {None, "metadata_too_large"}, codes
