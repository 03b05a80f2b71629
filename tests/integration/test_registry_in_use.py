"""The registry in use: routing over several provider servers, following changes without a
restart, failing closed once the configuration has expired, registering renewed certificates,
and service discovery (metaservices and gRPC server reflection) from the configuration."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import time
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.protobuf import descriptor_pool, message_factory, wrappers_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from prometheus_client.parser import text_string_to_metric_families

import pki
from proto import SecurityServerId, SubsystemId
from proto.pintu.v1 import metaservices_pb2, metaservices_pb2_grpc, registry_pb2
from tests.integration.probe import DESCRIPTOR_FILE, SERVICE, probe_descriptor_files
from tests.integration.support import assert_refusal, exchange_header, refused
from tests.integration.testbed import (
    A_SERVER,
    B_SERVER,
    C_CLIENT,
    C_SERVER,
    CLIENT,
    OTHER,
    PROBE,
    PROBE_METHODS,
    PROVIDER,
    TwoGateways,
    free_port,
    metadata,
    probe,
)

pytestmark = pytest.mark.integration

S = grpc.StatusCode
Change = registry_pb2.RegistryChange


def echo(testbed: TwoGateways, body: bytes = b"x", timeout: float = 10, **who: Any) -> Any:
    return probe(testbed.agency_channel(), "Echo")(body, metadata=metadata(**who), timeout=timeout)


async def echo_ok(testbed: TwoGateways, body: bytes = b"ok") -> None:
    assert await echo(testbed, body) == body


def sha256_of(identity: pki.TlsIdentity) -> bytes:
    leaf = x509.load_pem_x509_certificate(identity.certificate_chain)
    return hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).digest()


# -- several servers for one provider -------------------------------------------------------------


async def test_exchanges_are_spread_over_every_server_of_the_provider(
    testbed: TwoGateways,
) -> None:
    second = await testbed.start_provider_server()
    channel = testbed.agency_channel()
    call = probe(channel, "Echo")
    # The consumer connects to B/ss2 on first use; until then B/ss1 takes the exchanges.
    for _ in range(20):
        assert await call(b"x", metadata=metadata(), timeout=10) == b"x"
        if second.probe.calls:
            break
    else:
        pytest.fail("B/ss2 was never chosen although the registry lists it")
    first_before, second_before = len(testbed.probe.calls), len(second.probe.calls)
    for _ in range(20):
        assert await call(b"x", metadata=metadata(), timeout=10) == b"x"
    by_first = len(testbed.probe.calls) - first_before
    by_second = len(second.probe.calls) - second_before
    assert by_first + by_second == 20
    # Taken in turn while both are connected: about half each.
    assert by_first >= 5, (by_first, by_second)
    assert by_second >= 5, (by_first, by_second)


async def test_exchanges_started_after_a_provider_server_stops_go_to_the_other(
    testbed: TwoGateways,
) -> None:
    """What is guaranteed: every exchange started after ``stop`` has returned succeeds through the
    remaining server (exchanges in flight on the stopped server at that moment may fail)."""
    second = await testbed.start_provider_server()
    call = probe(testbed.agency_channel(), "Echo")
    for _ in range(20):
        await call(b"x", metadata=metadata(), timeout=10)
        if second.probe.calls and testbed.probe.calls:
            break
    await testbed.provider.stop(0)
    before = len(second.probe.calls)
    for index in range(10):
        try:
            await call(b"after", metadata=metadata(), timeout=10)
        except grpc.aio.AioRpcError as error:
            pytest.fail(f"exchange {index} after the stop failed: {error.code().name}: {error}")
    assert len(second.probe.calls) == before + 10


async def test_every_provider_server_down_is_refused_before_the_deadline(
    testbed: TwoGateways,
) -> None:
    second = await testbed.start_provider_server()
    await echo_ok(testbed)
    await testbed.provider.stop(0)
    await second.gateway.stop(0)
    started = time.monotonic()
    error = await refused(echo(testbed, timeout=20))
    elapsed = time.monotonic() - started
    detail = assert_refusal(error, S.UNAVAILABLE, "provider_unavailable", "consumer_gateway")
    assert str(B_SERVER) in detail.message
    assert str(second.server) in detail.message
    assert elapsed < 10, elapsed  # half the caller's time at most
    # Both servers have now failed a connection attempt: the next refusal is immediate.
    started = time.monotonic()
    error = await refused(echo(testbed, timeout=20))
    assert_refusal(error, S.UNAVAILABLE, "provider_unavailable", "consumer_gateway")
    assert time.monotonic() - started < 1


async def test_an_exchange_is_refused_at_once_when_every_provider_server_refuses_connections(
    testbed: TwoGateways,
) -> None:
    """Both servers are gone and their ports refuse connections within milliseconds: the first
    exchange afterwards must not sit out the whole connect wait (5 s) before saying so."""
    second = await testbed.start_provider_server()
    await echo_ok(testbed)
    await testbed.provider.stop(0)
    await second.gateway.stop(0)
    started = time.monotonic()
    error = await refused(echo(testbed, timeout=20))
    elapsed = time.monotonic() - started
    assert_refusal(error, S.UNAVAILABLE, "provider_unavailable", "consumer_gateway")
    assert elapsed < 2, f"refused only after {elapsed:.1f} s although both connections failed"


# -- routing follows the registry ---------------------------------------------------------------


async def test_a_provider_server_moved_to_another_address_is_followed(
    testbed: TwoGateways,
) -> None:
    await echo_ok(testbed)
    address = f"127.0.0.1:{free_port()}"
    await testbed.move_provider(address)
    # The registry still names the old address: nobody answers there.
    error = await refused(echo(testbed, timeout=2))
    assert_refusal(error, S.UNAVAILABLE, "provider_unavailable", "consumer_gateway")
    before = len(testbed.probe.calls)
    await testbed.registry.change(
        Change(
            put_security_server=registry_pb2.RegisteredServer(
                id=B_SERVER.to_proto(), addresses=[address]
            )
        )
    )
    await echo_ok(testbed)
    assert len(testbed.probe.calls) == before + 1


async def test_a_provider_moved_to_a_new_server_and_the_old_one_removed(
    testbed: TwoGateways,
) -> None:
    second = await testbed.start_provider_server()
    await testbed.registry.change(Change(remove_security_server=B_SERVER.to_proto()))
    before = len(testbed.probe.calls)
    for _ in range(6):
        await echo_ok(testbed)
    assert len(testbed.probe.calls) == before  # B/ss1 runs, but the registry no longer lists it
    assert len(second.probe.calls) == 6
    # B/ss2 serves only the provider subsystem: "other" is now served by no server at all.
    error = await refused(echo(testbed, provider=OTHER))
    detail = assert_refusal(error, S.UNAVAILABLE, "provider_unavailable", "consumer_gateway")
    assert detail.field == "pintu-provider"


async def test_a_subsystem_no_longer_served_by_any_server(testbed: TwoGateways) -> None:
    await echo_ok(testbed)
    await testbed.registry.change(
        Change(
            put_security_server=registry_pb2.RegisteredServer(
                id=B_SERVER.to_proto(),
                addresses=list(testbed.configuration.security_servers[B_SERVER].addresses),
                subsystems=["other"],
            )
        )
    )
    error = await refused(echo(testbed))
    detail = assert_refusal(error, S.UNAVAILABLE, "provider_unavailable", "consumer_gateway")
    assert detail.field == "pintu-provider"


async def test_a_provider_removed_from_the_registry_is_unknown(testbed: TwoGateways) -> None:
    await echo_ok(testbed)
    await testbed.registry.change(
        Change(remove_service=PROBE.to_proto()), Change(remove_subsystem=PROVIDER.to_proto())
    )
    error = await refused(echo(testbed))
    detail = assert_refusal(error, S.NOT_FOUND, "provider_unknown", "consumer_gateway")
    assert detail.field == "pintu-provider"


async def test_a_service_removed_from_the_registry_is_refused_by_the_provider(
    testbed: TwoGateways,
) -> None:
    await echo_ok(testbed)
    calls = len(testbed.probe.calls)
    await testbed.registry.change(Change(remove_service=PROBE.to_proto()))
    error = await refused(echo(testbed))
    detail = assert_refusal(error, S.UNIMPLEMENTED, "service_unknown", "provider_gateway")
    assert detail.field == "method"
    assert len(testbed.probe.calls) == calls


async def test_a_method_removed_from_the_registry_is_refused_by_the_provider(
    testbed: TwoGateways,
) -> None:
    await echo_ok(testbed)
    kept = [name for name in PROBE_METHODS if name != "Echo"]
    registration = registry_pb2.ServiceRegistration(
        service=registry_pb2.RegisteredService(
            id=PROBE.to_proto(), description="Test probe", methods=kept
        )
    )
    for raw in probe_descriptor_files(PROBE_METHODS):
        registration.descriptors.file.add().ParseFromString(raw)
    await testbed.registry.change(Change(put_service=registration))
    error = await refused(echo(testbed))
    detail = assert_refusal(error, S.UNIMPLEMENTED, "method_unknown", "provider_gateway")
    assert detail.field == "method"
    # The service's other methods still pass.
    await probe(testbed.agency_channel(), "Metadata")(b"", metadata=metadata(), timeout=10)


async def test_a_client_subsystem_removed_from_the_registry_is_refused_by_the_provider(
    testbed: TwoGateways,
) -> None:
    await echo_ok(testbed)
    calls = len(testbed.probe.calls)
    await testbed.registry.change(Change(remove_subsystem=CLIENT.to_proto()))
    error = await refused(echo(testbed))
    detail = assert_refusal(error, S.PERMISSION_DENIED, "client_unknown", "provider_gateway")
    assert detail.field == "pintu-client"
    assert len(testbed.probe.calls) == calls


# -- failing closed when the configuration expires ----------------------------------------------


async def scrape(port: int) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_an_expired_configuration_fails_closed_on_both_sides(make_testbed) -> None:
    testbed = await make_testbed(metrics=True, registry_validity=dt.timedelta(seconds=3))
    follower = testbed.consumer.settings.registry
    # A peer whose certificate the registry lists; registering it also gives both gateways a
    # configuration signed just now, valid for 3 s.
    identity = await testbed.registered_identity(C_SERVER)
    kept = follower.configuration
    cached = follower.cache.read_bytes()
    assert kept.expires_at is not None
    await testbed.registry.service.stop(0)
    # Before expiry, with the registry gone, exchanges go on.
    await echo_ok(testbed)
    header = exchange_header(client=C_CLIENT, server=C_SERVER)
    direct = testbed.peer_channel(identity).unary_unary(f"/{SERVICE}/Echo")
    error = await refused(direct(b"x", metadata=[("pintu-exchange-bin", header)], timeout=10))
    # (past the configuration and certificate checks; refused for stapling no OCSP response)
    assert_refusal(error, S.UNAUTHENTICATED, "peer_status_missing", "provider_gateway")

    # Past the expiry of both gateways' copies (at most the validity from now).
    left = max(
        gateway.settings.registry.seconds_to_expiry()
        for gateway in (testbed.consumer, testbed.provider)
    )
    assert left <= 3
    await asyncio.sleep(max(0.0, left) + 0.3)

    error = await refused(echo(testbed))
    detail = assert_refusal(error, S.UNAVAILABLE, "configuration_expired", "consumer_gateway")
    assert f"version {kept.version}" in detail.message
    error = await refused(direct(b"x", metadata=[("pintu-exchange-bin", header)], timeout=10))
    assert_refusal(error, S.UNAVAILABLE, "configuration_expired", "provider_gateway")
    stub = metaservices_pb2_grpc.MetaservicesStub(testbed.agency_channel())
    error = await refused(stub.ListClients(metaservices_pb2.ListClientsRequest(), timeout=10))
    assert_refusal(error, S.UNAVAILABLE, "configuration_expired", "consumer_gateway")

    samples = await scrape(testbed.consumer.metrics_port)
    assert samples["pintu_global_configuration_expiry_seconds"] < 0
    assert samples["pintu_global_configuration_fetch_failures"] > 0
    assert samples["pintu_global_configuration_version"] == kept.version
    # The last good configuration is kept, in memory and on disk, for when the registry is back.
    assert follower.configuration.version == kept.version
    assert follower.cache.read_bytes() == cached


# -- a renewed certificate is registered ---------------------------------------------------------


async def test_a_renewed_certificate_is_registered_beside_the_previous_one(make_testbed) -> None:
    testbed = await make_testbed(
        policy=pki.IssuancePolicy(
            authentication_lifetime=dt.timedelta(seconds=6),
            ocsp_refresh=dt.timedelta(seconds=0.5),
        ),
        max_age=dt.timedelta(seconds=5),
        refresh=dt.timedelta(seconds=0.5),
        renew_at=0.5,
    )
    keeper = testbed.consumer.keeper
    assert keeper is not None
    previous = sha256_of(keeper.identity)
    failures: list[str] = []
    exchanges = 0
    async with asyncio.timeout(15):
        while keeper.renewals == 0:
            try:
                await echo_ok(testbed)
                exchanges += 1
            except grpc.aio.AioRpcError as error:
                failures.append(f"{error.code().name}: {error.details()}")
            await asyncio.sleep(0.05)
    renewed = sha256_of(keeper.identity)
    assert renewed != previous
    state = await testbed.registry.operator.state()
    registered = {
        SecurityServerId.from_proto(server.id): set(server.certificate_sha256)
        for server in state.security_servers
    }
    assert registered[A_SERVER] == {previous, renewed}
    assert all(len(certificates) <= 2 for certificates in registered.values()), registered
    for _ in range(5):
        await echo_ok(testbed)
    assert failures == []
    assert exchanges > 10


# -- metaservices ---------------------------------------------------------------------------------


async def test_list_clients_names_every_registered_subsystem(testbed: TwoGateways) -> None:
    stub = metaservices_pb2_grpc.MetaservicesStub(testbed.agency_channel())
    answer = await stub.ListClients(metaservices_pb2.ListClientsRequest(), timeout=10)
    listed = {(SubsystemId.from_proto(c.id), c.member_name) for c in answer.clients}
    conf = testbed.configuration
    assert listed == {(s, conf.members[s.member].name) for s in conf.subsystems()}
    assert (CLIENT, "Agency A") in listed
    assert (PROVIDER, "Agency B") in listed


async def test_list_services_gives_the_facts_of_each_service(testbed: TwoGateways) -> None:
    stub = metaservices_pb2_grpc.MetaservicesStub(testbed.agency_channel())
    answer = await stub.ListServices(
        metaservices_pb2.ListServicesRequest(provider=str(PROVIDER)), timeout=10
    )
    (service,) = answer.services
    assert service.id.service_name == SERVICE
    assert service.description == "Test probe"
    assert list(service.methods) == list(PROBE_METHODS)
    assert service.personal_data
    assert list(service.data_categories) == ["identity"]
    assert list(service.purposes) == ["testing"]
    assert service.legal_basis == "Test Act, art. 1"
    assert not service.consent_required


async def test_get_service_description_gives_the_defining_file_and_its_imports(
    testbed: TwoGateways,
) -> None:
    stub = metaservices_pb2_grpc.MetaservicesStub(testbed.agency_channel())
    answer = await stub.GetServiceDescription(
        metaservices_pb2.GetServiceDescriptionRequest(service=str(PROBE)), timeout=10
    )
    assert answer.service.id.service_name == SERVICE
    assert answer.service.legal_basis == "Test Act, art. 1"
    files = list(answer.descriptors.file)
    assert files[0].name == DESCRIPTOR_FILE
    assert files[0].package == "test.v1"
    assert [s.name for s in files[0].service] == ["Probe"]
    assert wrappers_pb2.DESCRIPTOR.name in [f.name for f in files]
    # Enough to call the service: the files build a pool that resolves its methods' types.
    pool = descriptor_pool.DescriptorPool()
    for file in reversed(files):
        pool.Add(file)
    method = pool.FindServiceByName(SERVICE).FindMethodByName("Echo")
    assert method.input_type.full_name == "google.protobuf.BytesValue"


@pytest.mark.parametrize(
    ("service", "status", "code"),
    [
        (f"{PROVIDER}/test.v1.Missing", S.UNIMPLEMENTED, "service_unknown"),
        (f"{OTHER}/{SERVICE}", S.UNIMPLEMENTED, "service_unknown"),
        ("DEMO/GOV/B/provider", S.INVALID_ARGUMENT, "request_invalid"),
        ("DEMO/GOV/B/provider/../test.v1.Probe", S.INVALID_ARGUMENT, "request_invalid"),
    ],
)
async def test_get_service_description_refuses_a_bad_service(
    testbed: TwoGateways, service: str, status: grpc.StatusCode, code: str
) -> None:
    stub = metaservices_pb2_grpc.MetaservicesStub(testbed.agency_channel())
    call = stub.GetServiceDescription(
        metaservices_pb2.GetServiceDescriptionRequest(service=service), timeout=10
    )
    detail = assert_refusal(await refused(call), status, code, "consumer_gateway")
    assert detail.field == "service"


async def test_get_service_description_refuses_a_malformed_request(testbed: TwoGateways) -> None:
    call = testbed.agency_channel().unary_unary("/pintu.v1.Metaservices/GetServiceDescription")(
        b"\xff\xff", timeout=10
    )
    detail = assert_refusal(
        await refused(call), S.INVALID_ARGUMENT, "request_invalid", "consumer_gateway"
    )
    assert detail.field == "request"


def list_allowed(testbed: TwoGateways) -> Callable[..., Any]:
    return metaservices_pb2_grpc.MetaservicesStub(testbed.agency_channel()).ListAllowedServices


async def test_list_allowed_services_is_answered_by_the_providers_server(
    testbed: TwoGateways,
) -> None:
    answer = await list_allowed(testbed)(
        metaservices_pb2.ListAllowedServicesRequest(), metadata=metadata(), timeout=10
    )
    assert [s.id.service_name for s in answer.services] == [SERVICE]
    assert list(answer.services[0].methods) == list(PROBE_METHODS)
    assert testbed.probe.calls == []  # the provider's security server answered, not a backend


async def test_list_allowed_services_for_a_provider_that_server_does_not_serve(
    testbed: TwoGateways,
) -> None:
    call = list_allowed(testbed)(
        metaservices_pb2.ListAllowedServicesRequest(), metadata=metadata(provider=OTHER), timeout=10
    )
    detail = assert_refusal(
        await refused(call), S.NOT_FOUND, "provider_not_served", "provider_gateway"
    )
    assert detail.field == "pintu-provider"


async def test_list_allowed_services_without_metadata(testbed: TwoGateways) -> None:
    call = list_allowed(testbed)(metaservices_pb2.ListAllowedServicesRequest(), timeout=10)
    assert_refusal(await refused(call), S.INVALID_ARGUMENT, "metadata_missing", "consumer_gateway")


# -- gRPC server reflection, with grpcio-reflection's own client ----------------------------------


class _AddMetadata(grpc.StreamStreamClientInterceptor):
    """Adds fixed metadata to every streaming call (the reflection client sends none itself)."""

    def __init__(self, entries: list[tuple[str, str]]) -> None:
        self._entries = entries

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        details = client_call_details._replace(
            metadata=[*(client_call_details.metadata or ()), *self._entries]
        )
        return continuation(details, request_iterator)


def reflect(testbed: TwoGateways, task: Callable[[grpc.Channel], Any], **entries: str) -> Any:
    """Run ``task`` with a blocking channel to the consumer's plaintext agency listener (with
    ``entries`` as metadata on every call) in a thread, as a separate tool would."""

    def run() -> Any:
        with grpc.insecure_channel(f"127.0.0.1:{testbed.consumer.agency_ports[0]}") as channel:
            extra = [(key.replace("_", "-"), value) for key, value in entries.items()]
            return task(grpc.intercept_channel(channel, _AddMetadata(extra)))

    return asyncio.wait_for(asyncio.to_thread(run), 20)


def listed_services(channel: grpc.Channel) -> list[str]:
    return list(ProtoReflectionDescriptorDatabase(channel).get_services())


async def test_reflection_lets_a_standard_client_discover_and_call_a_service(
    testbed: TwoGateways,
) -> None:
    def discover(channel: grpc.Channel) -> tuple[list[str], Any, Any]:
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = descriptor_pool.DescriptorPool(database)
        method = pool.FindServiceByName(SERVICE).FindMethodByName("Echo")
        return list(database.get_services()), method.input_type, method.output_type

    services, request_type, response_type = await reflect(testbed, discover)
    assert SERVICE in services
    assert "pintu.v1.Metaservices" in services
    assert request_type.full_name == "google.protobuf.BytesValue"
    request = message_factory.GetMessageClass(request_type)(value=b"discovered")
    raw = await probe(testbed.agency_channel(), "Echo")(
        request.SerializeToString(), metadata=metadata(), timeout=10
    )
    answer = message_factory.GetMessageClass(response_type).FromString(raw)
    assert answer.value == b"discovered"


async def test_reflection_lists_only_the_services_of_the_provider_named(
    testbed: TwoGateways,
) -> None:
    assert SERVICE in await reflect(testbed, listed_services, pintu_provider=str(PROVIDER))
    others = await reflect(testbed, listed_services, pintu_provider=str(OTHER))
    assert SERVICE not in others
    assert "pintu.v1.Metaservices" in others


async def test_reflection_refuses_a_malformed_provider(testbed: TwoGateways) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        await reflect(testbed, listed_services, pintu_provider="DEMO/GOV/B/../x")
    # The blocking client's error has the same code, details and trailers as an aio one.
    error = failure.value
    detail = assert_refusal(error, S.INVALID_ARGUMENT, "metadata_invalid", "consumer_gateway")
    assert detail.field == "pintu-provider"


async def test_reflection_v1_service_answers_like_v1alpha(testbed: TwoGateways) -> None:
    call = testbed.agency_channel().stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
    )
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = [
        reflection_pb2.ServerReflectionResponse.FromString(raw)
        async for raw in call(iter([request.SerializeToString()]), timeout=10)
    ]
    assert len(responses) == 1
    names = [service.name for service in responses[0].list_services_response.service]
    assert SERVICE in names
    assert "pintu.v1.Metaservices" in names
