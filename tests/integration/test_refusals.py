"""Bad input and faults: each refused with the exact gRPC status and Pintu error code, logged,
and never taking a gateway down."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import pki
from gateway import Limits
from proto.pintu.v1 import metaservices_pb2, metaservices_pb2_grpc, registry_pb2
from tests.integration.support import assert_refusal, exchange_header, refused, still_serving
from tests.integration.testbed import (
    B_SERVER,
    C_CLIENT,
    C_SERVER,
    CLIENT,
    IDLE,
    OTHER,
    SECURE_CLIENT,
    Z_SYSTEM,
    B,
    TwoGateways,
    metadata,
    probe,
)

pytestmark = pytest.mark.integration

S = grpc.StatusCode


def echo(testbed: TwoGateways, entries, body: bytes = b"x", timeout: float = 10):
    return probe(testbed.agency_channel(), "Echo")(body, metadata=entries, timeout=timeout)


# -- metadata -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["pintu-client", "pintu-provider", "pintu-purpose"])
async def test_missing_required_metadata(testbed: TwoGateways, key: str) -> None:
    entries = [entry for entry in metadata() if entry[0] != key]
    error = await refused(echo(testbed, entries))
    detail = assert_refusal(error, S.INVALID_ARGUMENT, "metadata_missing", "consumer_gateway")
    assert detail.field == key
    assert testbed.probe.calls == []


# gRPC clients only send printable ASCII header values; non-ASCII look-alikes and control
# characters are covered by the unit tests of the metadata reader (tests/gateway).
MALFORMED = {
    "pintu-client": [
        "DEMO/GOV/A",
        "DEMO/GOV/A/client/extra",
        "DEMO/GOV/../client",
        "DEMO/GOV/A/cli ent",
        "DEMO//A/client",
        "",
        "DEMO/GOV/A/%2e%2e",
    ],
    "pintu-provider": [
        "DEMO/GOV/B/",
        "../../etc/passwd",
        "DEMO/GOV/B/" + "p" * 65,
        "DEMO/GOV/B/-provider",
        "DEMO\\GOV\\B\\provider",
    ],
    "pintu-purpose": ["", "has space", "x" * 65, "../purpose", "purpose/sub"],
    "pintu-subject": ["", "NIK 3174", "s" * 129, "NIK:1234;drop", "NIK:<script>"],
    "pintu-user": ["", "user name", "u" * 129, 'user"quoted"'],
    "pintu-issue": ["", "issue issue", "i" * 129, "-issue"],
}


@pytest.mark.parametrize(
    ("key", "value"),
    [(key, value) for key, values in MALFORMED.items() for value in values],
)
async def test_malformed_identifier_in_metadata(testbed: TwoGateways, key: str, value: str) -> None:
    entries = [entry for entry in metadata() if entry[0] != key] + [(key, value)]
    try:
        error = await refused(echo(testbed, entries))
    except ValueError:
        pytest.fail("the gRPC client refused to send the value; choose another test value")
    detail = assert_refusal(error, S.INVALID_ARGUMENT, "metadata_invalid", "consumer_gateway")
    assert detail.field == key
    assert error.details().isascii()
    assert testbed.probe.calls == []


async def test_metadata_key_given_twice(testbed: TwoGateways) -> None:
    entries = [*metadata(), ("pintu-client", str(CLIENT))]
    error = await refused(echo(testbed, entries))
    detail = assert_refusal(error, S.INVALID_ARGUMENT, "metadata_invalid", "consumer_gateway")
    assert detail.field == "pintu-client"


async def test_unknown_pintu_metadata_key(testbed: TwoGateways) -> None:
    entries = [*metadata(), ("pintu-subjct", "NIK:3174051234560001")]
    error = await refused(echo(testbed, entries))
    detail = assert_refusal(error, S.INVALID_ARGUMENT, "metadata_invalid", "consumer_gateway")
    assert detail.field == "pintu-subjct"


@pytest.mark.parametrize(
    "key", ["pintu-client-bin", "pintu-exchange-bin", "pintu-message-id", "pintu-error-code"]
)
async def test_reserved_pintu_key_from_a_caller(testbed: TwoGateways, key: str) -> None:
    # Keys the gateways use between themselves or in answers are never accepted from a caller.
    value: str | bytes = b"\x01" if key.endswith("-bin") else "x"
    error = await refused(echo(testbed, [*metadata(), (key, value)]))
    detail = assert_refusal(error, S.INVALID_ARGUMENT, "metadata_invalid", "consumer_gateway")
    assert detail.field == key
    assert testbed.probe.calls == []


@pytest.mark.parametrize(
    "method",
    [
        "/NoPackage/Method",
        "/test.v1.Probe/" + "E" * 5000,
        "/test.v1.Probé/Echo",
        "/test.v1.Probe/Echo/",
        "test.v1.Probe/Echo",
        "//test.v1.Probe/Echo",
        "/test.v1.Probe/Echo?x=1",
        "/test.v1.Probe/Echo\x00",
    ],
    ids=[
        "no-package",
        "very-long",
        "non-ascii",
        "trailing-slash",
        "no-slash",
        "double-slash",
        "query",
        "nul",
    ],
)
async def test_malformed_method_path(testbed: TwoGateways, method: str) -> None:
    call = testbed.agency_channel().unary_unary(method)(b"x", metadata=metadata(), timeout=10)
    error = await refused(call)
    assert_refusal(error, S.INVALID_ARGUMENT, "method_invalid", "consumer_gateway")
    assert error.details().isascii()
    assert testbed.probe.calls == []


# -- who may call -------------------------------------------------------------------------------


async def test_unregistered_subsystem_cannot_act_as_client(testbed: TwoGateways) -> None:
    error = await refused(echo(testbed, metadata(client=IDLE)))
    assert_refusal(error, S.PERMISSION_DENIED, "client_not_allowed", "consumer_gateway")


async def test_another_members_subsystem_cannot_act_as_client(testbed: TwoGateways) -> None:
    error = await refused(echo(testbed, metadata(client=C_CLIENT)))
    assert_refusal(error, S.PERMISSION_DENIED, "client_not_allowed", "consumer_gateway")


async def test_client_that_requires_tls_is_refused_on_plaintext(testbed: TwoGateways) -> None:
    error = await refused(echo(testbed, metadata(client=SECURE_CLIENT)))
    assert_refusal(error, S.PERMISSION_DENIED, "client_not_allowed", "consumer_gateway")


async def test_client_certificate_naming_another_subsystem(testbed: TwoGateways) -> None:
    channel = testbed.agency_tls_channel(CLIENT)
    call = probe(channel, "Echo")(b"x", metadata=metadata(client=SECURE_CLIENT), timeout=10)
    error = await refused(call)
    assert_refusal(error, S.PERMISSION_DENIED, "client_not_allowed", "consumer_gateway")


async def test_client_certificate_from_a_foreign_ca_fails_the_handshake(
    testbed: TwoGateways,
) -> None:
    channel = testbed.agency_tls_channel(SECURE_CLIENT, testbed.pki.foreign)
    call = probe(channel, "Echo")(b"x", metadata=metadata(client=SECURE_CLIENT), timeout=5)
    error = await refused(call)
    assert error.code() == S.UNAVAILABLE
    await still_serving(testbed)


# -- routing ------------------------------------------------------------------------------------


async def test_unknown_provider(testbed: TwoGateways) -> None:
    error = await refused(echo(testbed, metadata(provider="DEMO/GOV/B/nonexistent")))
    detail = assert_refusal(error, S.NOT_FOUND, "provider_unknown", "consumer_gateway")
    assert detail.field == "pintu-provider"


async def test_provider_without_a_security_server(testbed: TwoGateways) -> None:
    error = await refused(echo(testbed, metadata(provider=Z_SYSTEM)))
    assert_refusal(error, S.UNAVAILABLE, "provider_unavailable", "consumer_gateway")


async def test_provider_subsystem_not_served_by_that_server(testbed: TwoGateways) -> None:
    error = await refused(echo(testbed, metadata(provider=OTHER)))
    assert_refusal(error, S.NOT_FOUND, "provider_not_served", "provider_gateway")


async def test_unknown_service(testbed: TwoGateways) -> None:
    call = testbed.agency_channel().unary_unary("/test.v1.Unknown/Echo")(
        b"x", metadata=metadata(), timeout=10
    )
    error = await refused(call)
    assert_refusal(error, S.UNIMPLEMENTED, "service_unknown", "provider_gateway")


async def test_provider_gateway_down(make_testbed) -> None:
    testbed = await make_testbed()
    await testbed.provider.stop(0)
    error = await refused(echo(testbed, metadata(), timeout=5))
    assert_refusal(error, S.UNAVAILABLE, "provider_unavailable", "consumer_gateway")


# -- the peer hop -------------------------------------------------------------------------------


async def test_peer_certificate_of_another_member_than_the_client(testbed: TwoGateways) -> None:
    # A server of member C presents its own, valid certificate but claims a client of member A.
    channel = testbed.peer_channel(await testbed.registered_identity(C_SERVER))
    call = channel.unary_unary("/test.v1.Probe/Echo")(
        b"x", metadata=[("pintu-exchange-bin", exchange_header(client=CLIENT))], timeout=10
    )
    error = await refused(call)
    assert_refusal(error, S.PERMISSION_DENIED, "peer_member_mismatch", "provider_gateway")
    assert testbed.probe.calls == []


async def test_peer_claiming_to_be_another_server(testbed: TwoGateways) -> None:
    channel = testbed.peer_channel(await testbed.registered_identity(C_SERVER))
    header = exchange_header(client=C_CLIENT, server=B_SERVER)
    call = channel.unary_unary("/test.v1.Probe/Echo")(
        b"x", metadata=[("pintu-exchange-bin", header)], timeout=10
    )
    error = await refused(call)
    assert_refusal(error, S.INVALID_ARGUMENT, "exchange_header_invalid", "provider_gateway")


async def test_peer_not_registered(testbed: TwoGateways) -> None:
    stranger = B.server("ss9")  # a valid certificate from the federation CA, never registered
    channel = testbed.peer_channel(testbed.pki.server_identity(stranger))
    header = exchange_header(client=B.subsystem("provider"), server=stranger)
    call = channel.unary_unary("/test.v1.Probe/Echo")(
        b"x", metadata=[("pintu-exchange-bin", header)], timeout=10
    )
    error = await refused(call)
    assert_refusal(error, S.PERMISSION_DENIED, "peer_unknown", "provider_gateway")


async def test_peer_certificate_not_registered_for_its_server(testbed: TwoGateways) -> None:
    """C/ss1 is registered, and this certificate from the federation CA names it, but it is not
    the certificate registered for C/ss1 (a stolen key, a forgotten test box): refused."""
    channel = testbed.peer_channel(testbed.pki.server_identity(C_SERVER))
    header = exchange_header(client=C_CLIENT, server=C_SERVER)
    call = channel.unary_unary("/test.v1.Probe/Echo")(
        b"x", metadata=[("pintu-exchange-bin", header)], timeout=10
    )
    error = await refused(call)
    assert_refusal(error, S.PERMISSION_DENIED, "peer_certificate_unregistered", "provider_gateway")
    assert testbed.probe.calls == []


async def test_a_removed_certificate_is_refused_once_the_registry_says_so(
    testbed: TwoGateways,
) -> None:
    """The same peer passes the registration check while its certificate is registered (and is
    stopped only later, for stapling no OCSP response), and is refused for its certificate once
    the registry removed it: no restart, no static file."""
    identity = await testbed.registered_identity(C_SERVER)
    header = exchange_header(client=C_CLIENT, server=C_SERVER)
    call = testbed.peer_channel(identity).unary_unary("/test.v1.Probe/Echo")
    error = await refused(call(b"x", metadata=[("pintu-exchange-bin", header)], timeout=10))
    assert_refusal(error, S.UNAUTHENTICATED, "peer_status_missing", "provider_gateway")
    der = x509.load_pem_x509_certificate(identity.certificate_chain).public_bytes(
        serialization.Encoding.DER
    )
    await testbed.registry.change(
        registry_pb2.RegistryChange(
            remove_certificate=registry_pb2.CertificateChange(
                server=C_SERVER.to_proto(), sha256=hashlib.sha256(der).digest()
            )
        )
    )
    error = await refused(call(b"x", metadata=[("pintu-exchange-bin", header)], timeout=10))
    assert_refusal(error, S.PERMISSION_DENIED, "peer_certificate_unregistered", "provider_gateway")


@pytest.mark.parametrize(
    "header",
    [None, b"\xff\xff\xff", b""],
    ids=["missing", "garbage", "empty"],
)
async def test_exchange_header_missing_or_malformed(testbed: TwoGateways, header) -> None:
    channel = testbed.peer_channel(await testbed.registered_identity(C_SERVER))
    entries = [] if header is None else [("pintu-exchange-bin", header)]
    call = channel.unary_unary("/test.v1.Probe/Echo")(b"x", metadata=entries, timeout=10)
    error = await refused(call)
    assert_refusal(error, S.INVALID_ARGUMENT, "exchange_header_invalid", "provider_gateway")


async def test_exchange_header_for_another_method(testbed: TwoGateways) -> None:
    channel = testbed.peer_channel(await testbed.registered_identity(C_SERVER))
    header = exchange_header(client=C_CLIENT, method="/test.v1.Probe/Metadata")
    call = channel.unary_unary("/test.v1.Probe/Echo")(
        b"x", metadata=[("pintu-exchange-bin", header)], timeout=10
    )
    error = await refused(call)
    assert_refusal(error, S.INVALID_ARGUMENT, "exchange_header_invalid", "provider_gateway")


async def test_peer_certificate_that_names_no_security_server(testbed: TwoGateways) -> None:
    # A valid agency client certificate from the federation CA is not a security server's.
    key, certificate = testbed.pki.client_identity(CLIENT)
    identity = pki.TlsIdentity(key, certificate, testbed.pki.anchors)
    channel = testbed.peer_channel(identity)
    call = channel.unary_unary("/test.v1.Probe/Echo")(
        b"x", metadata=[("pintu-exchange-bin", exchange_header(client=CLIENT))], timeout=10
    )
    error = await refused(call)
    assert_refusal(error, S.UNAUTHENTICATED, "peer_not_authenticated", "provider_gateway")
    assert testbed.probe.calls == []


async def test_peer_certificate_from_a_foreign_ca_fails_the_handshake(testbed: TwoGateways) -> None:
    channel = testbed.peer_channel(testbed.pki.server_identity(C_SERVER, testbed.pki.foreign))
    call = channel.unary_unary("/test.v1.Probe/Echo")(
        b"x", metadata=[("pintu-exchange-bin", exchange_header(client=C_CLIENT))], timeout=5
    )
    error = await refused(call)
    assert error.code() == S.UNAVAILABLE
    assert testbed.probe.calls == []
    await still_serving(testbed)


async def test_provider_presenting_a_foreign_ca_certificate(make_testbed) -> None:
    testbed = await make_testbed(provider_authority="foreign")
    error = await refused(echo(testbed, metadata(), timeout=5))
    assert_refusal(error, S.UNAVAILABLE, "provider_unavailable", "consumer_gateway")
    assert testbed.probe.calls == []


async def test_plaintext_connection_to_the_peer_port(testbed: TwoGateways) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{testbed.provider.peer_port}")
    testbed.channels.append(channel)
    call = channel.unary_unary("/test.v1.Probe/Echo")(
        b"x", metadata=[("pintu-exchange-bin", exchange_header(client=C_CLIENT))], timeout=5
    )
    error = await refused(call)
    assert error.code() == S.UNAVAILABLE
    assert testbed.probe.calls == []
    await still_serving(testbed)


# -- the backend --------------------------------------------------------------------------------


async def test_backend_down(make_testbed) -> None:
    testbed = await make_testbed(backend_up=False)
    error = await refused(echo(testbed, metadata()))
    assert_refusal(error, S.UNAVAILABLE, "backend_unavailable", "provider_gateway")


async def test_backend_exceeds_the_services_timeout(make_testbed) -> None:
    testbed = await make_testbed(service_timeout=0.3)
    call = probe(testbed.agency_channel(), "Sleep")(
        json.dumps({"seconds": 30}).encode(), metadata=metadata(), timeout=20
    )
    error = await refused(call)
    assert_refusal(error, S.DEADLINE_EXCEEDED, "backend_timeout", "provider_gateway")
    await asyncio.wait_for(testbed.probe.cancelled.wait(), 5)


async def test_backend_timeout_is_classified_every_time(make_testbed) -> None:
    # The service's timeout is short enough to race the gateway's own bookkeeping.
    testbed = await make_testbed(service_timeout=0.05)
    sleep = probe(testbed.agency_channel(), "Sleep")
    for _ in range(20):
        error = await refused(
            sleep(json.dumps({"seconds": 5}).encode(), metadata=metadata(), timeout=10)
        )
        assert_refusal(error, S.DEADLINE_EXCEEDED, "backend_timeout", "provider_gateway")


async def test_deadline_exceeded_on_the_backend(testbed: TwoGateways) -> None:
    started = time.monotonic()
    call = probe(testbed.agency_channel(), "Sleep")(
        json.dumps({"seconds": 30}).encode(), metadata=metadata(), timeout=0.5
    )
    error = await refused(call)
    assert error.code() == S.DEADLINE_EXCEEDED
    # The deadline travelled with the exchange: the backend's call ends too, promptly.
    await asyncio.wait_for(testbed.probe.cancelled.wait(), 5)
    assert time.monotonic() - started < 5
    assert testbed.probe.finished_sleeps == 0
    await still_serving(testbed)


async def test_cancellation_by_the_client_reaches_the_backend(testbed: TwoGateways) -> None:
    call = probe(testbed.agency_channel(), "Sleep")(
        json.dumps({"seconds": 30}).encode(), metadata=metadata(), timeout=60
    )
    await testbed.probe.wait_for_call()
    call.cancel()
    await asyncio.wait_for(testbed.probe.cancelled.wait(), 5)
    assert testbed.probe.finished_sleeps == 0
    await still_serving(testbed)


async def test_cancelling_a_stream_midway_reaches_the_backend(testbed: TwoGateways) -> None:
    call = probe(testbed.agency_channel(), "Bidi", "bidi")(metadata=metadata(), timeout=60)
    await call.write(b"first")
    assert await call.read() == b"first"
    call.cancel()
    await still_serving(testbed)
    assert await call.code() == S.CANCELLED


# -- size limits --------------------------------------------------------------------------------

LIMIT = 64 * 1024


async def test_oversized_request_message(make_testbed) -> None:
    testbed = await make_testbed(limits=Limits(max_message_bytes=LIMIT))
    error = await refused(echo(testbed, metadata(), body=b"r" * (LIMIT + 1)))
    assert_refusal(error, S.RESOURCE_EXHAUSTED, "message_too_large", "consumer_gateway")
    assert testbed.probe.calls == []
    await still_serving(testbed)


async def test_request_message_at_the_limit_passes(make_testbed) -> None:
    testbed = await make_testbed(limits=Limits(max_message_bytes=LIMIT))
    assert await echo(testbed, metadata(), body=b"r" * LIMIT) == b"r" * LIMIT


async def test_oversized_response_message(make_testbed) -> None:
    testbed = await make_testbed(limits=Limits(max_message_bytes=LIMIT))
    call = probe(testbed.agency_channel(), "Big")(
        json.dumps({"size": LIMIT + 1}).encode(), metadata=metadata(), timeout=10
    )
    error = await refused(call)
    assert_refusal(error, S.RESOURCE_EXHAUSTED, "message_too_large", "provider_gateway")


async def test_message_beyond_the_transport_ceiling(make_testbed) -> None:
    limits = Limits(max_message_bytes=LIMIT)
    testbed = await make_testbed(limits=limits)
    error = await refused(echo(testbed, metadata(), body=b"r" * (limits.transport_ceiling + 1)))
    assert error.code() == S.RESOURCE_EXHAUSTED
    assert testbed.probe.calls == []
    await still_serving(testbed)


async def test_default_limit_allows_messages_of_64_mib(testbed: TwoGateways) -> None:
    body = b"m" * (64 * 1024 * 1024)
    assert await echo(testbed, metadata(), body=body, timeout=60) == body


# -- faults inside the gateway -------------------------------------------------------------------


async def test_unexpected_error_is_an_internal_error_not_a_crash(make_testbed) -> None:
    broken = False

    def clock() -> float:
        if broken:
            raise RuntimeError("clock failure")
        return time.time()

    testbed = await make_testbed(consumer_clock=clock)
    broken = True
    error = await refused(echo(testbed, metadata()))
    assert_refusal(error, S.INTERNAL, "internal_error", "consumer_gateway")
    assert "clock failure" not in error.details()  # internals stay in the gateway's log
    error = await refused(echo(testbed, metadata()))  # and the gateway keeps answering
    assert_refusal(error, S.INTERNAL, "internal_error", "consumer_gateway")


# -- metaservices -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "status", "code"),
    [
        ("DEMO/GOV/B", S.INVALID_ARGUMENT, "request_invalid"),
        ("DEMO/GOV/B/../x", S.INVALID_ARGUMENT, "request_invalid"),
        ("DEMO/GOV/B/missing", S.NOT_FOUND, "provider_unknown"),
    ],
)
async def test_metaservice_refuses_a_bad_provider(
    testbed: TwoGateways, provider: str, status: grpc.StatusCode, code: str
) -> None:
    stub = metaservices_pb2_grpc.MetaservicesStub(testbed.agency_channel())
    call = stub.ListServices(metaservices_pb2.ListServicesRequest(provider=provider), timeout=10)
    error = await refused(call)
    detail = assert_refusal(error, status, code, "consumer_gateway")
    assert detail.field == "provider"


# -- every refusal is logged ----------------------------------------------------------------------


async def test_refusals_are_logged_as_events(
    testbed: TwoGateways, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pintu.gateway")
    await refused(echo(testbed, metadata(client=IDLE)))
    await refused(echo(testbed, metadata(provider=OTHER)))
    events = [r.pintu_event for r in caplog.records if hasattr(r, "pintu_event")]
    by_code = {event["code"]: event for event in events}
    consumer = by_code["client_not_allowed"]
    assert consumer["origin"] == "consumer_gateway"
    assert consumer["client"] == str(IDLE)
    assert consumer["status"] == "PERMISSION_DENIED"
    assert len(consumer["message_id"]) == 32
    provider = by_code["provider_not_served"]
    assert provider["origin"] == "provider_gateway"
    assert provider["peer"] == "DEMO/GOV/A/ss1"
    assert provider["method"] == "/test.v1.Probe/Echo"
