"""The registry service in-process: management over mutual TLS with operators' roles, security
servers registering their certificates, and the signed snapshot over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pb2

import pki
from proto import SecurityServerId, ServiceId
from proto.pintu.v1 import registry_pb2
from registry import RegistryRefusal, VerifiedSnapshot, accept, snapshot_tag
from tests.registry.support import (
    ALICE,
    BANK,
    CERT_A,
    CERT_B,
    CIVIL,
    MALLORY,
    POPREG,
    POPREG_SS1,
    POPREG_SS2,
    TAX_SS1,
    VALIDITY,
    VICTOR,
    Federation,
    RunningRegistry,
    error_code,
    population_descriptors,
    put_member,
    put_server,
    put_service,
    raw_call,
    remove_member,
    sample_registry,
)

TIMEOUT = 10.0


async def get_snapshot(registry: RunningRegistry, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        return await http.get(registry.distribution, headers=headers)


async def refusal(call: Awaitable[object]) -> RegistryRefusal:
    """Await ``call``, which must be refused; the refusal."""
    with pytest.raises(RegistryRefusal) as info:
        await call
    assert info.value.code == "registry_refused"
    return info.value


# --- changes and the published snapshot ---------------------------------------------------------


async def test_the_registry_publishes_version_0_at_start(registry: RunningRegistry) -> None:
    response = await get_snapshot(registry)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    snapshot = registry.federation.verifier().verify(response.content, now=registry.federation.now)
    assert snapshot.configuration.version == 0
    assert not snapshot.configuration.members


async def test_an_admin_change_publishes_a_new_version(registry: RunningRegistry) -> None:
    assert await registry.admin.change(sample_registry(), "import") == 1
    assert await registry.admin.change([remove_member(BANK)], "gone") == 2
    response = await get_snapshot(registry)
    assert response.status_code == 200
    assert response.headers["etag"] == f'"{snapshot_tag(response.content)}"'
    assert response.headers["cache-control"] == "no-cache"
    snapshot = registry.federation.verifier().verify(response.content, now=registry.federation.now)
    configuration = snapshot.configuration
    assert configuration.version == 2
    assert POPREG_SS1 in configuration.security_servers
    assert configuration.expires_at is not None
    assert configuration.built_at is not None
    assert configuration.expires_at - configuration.built_at == VALIDITY
    stored = registry.service.store.latest_snapshot()
    assert stored is not None
    assert (stored.version, stored.blob) == (2, response.content)


async def test_a_matching_if_none_match_gets_304(registry: RunningRegistry) -> None:
    await registry.admin.change([put_member(POPREG, "Population Registry")], "join")
    first = await get_snapshot(registry)
    etag = first.headers["etag"]
    again = await get_snapshot(registry, **{"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    # One of several tags, unquoted, matches too.
    listed = await get_snapshot(registry, **{"If-None-Match": f'"other", {etag.strip(chr(34))}'})
    assert listed.status_code == 304


async def test_a_stale_if_none_match_gets_the_new_snapshot(registry: RunningRegistry) -> None:
    stale = (await get_snapshot(registry)).headers["etag"]
    await registry.admin.change([put_member(POPREG, "Population Registry")], "join")
    response = await get_snapshot(registry, **{"If-None-Match": stale})
    assert response.status_code == 200
    assert response.headers["etag"] != stale


async def test_health(registry: RunningRegistry) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        response = await http.get(f"http://127.0.0.1:{registry.service.http_port}/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")


async def test_a_refused_change_answers_change_refused(registry: RunningRegistry) -> None:
    await registry.admin.change([put_member(POPREG, "Population Registry")], "join")
    batch = [remove_member(POPREG), remove_member(POPREG)]
    refused = await refusal(registry.admin.change(batch, "twice"))
    assert refused.reason == "change_refused"
    assert registry.service.store.version() == 1


async def test_a_refused_change_is_failed_precondition_with_its_code(
    registry: RunningRegistry,
) -> None:
    request = registry_pb2.ChangeRequest(changes=[remove_member(POPREG)], reason="unknown")
    error = await raw_call(
        registry.address,
        registry.federation.operator(ALICE),
        "Change",
        request.SerializeToString(),
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_code(error) == "change_refused"


# --- operators' roles ---------------------------------------------------------------------------


async def test_a_viewer_reads_state_and_journal(registry: RunningRegistry) -> None:
    await registry.admin.change(sample_registry(), "import")
    viewer = registry.operator(VICTOR)
    state = await viewer.state()
    assert state.version == 1
    assert state.instance == "DEMO"
    assert {m.name for m in state.members} == {"Population Registry", "Tax Board", "A Bank"}
    journal = await viewer.journal()
    assert [(e.version, e.actor, e.reason) for e in journal] == [(1, "operator alice", "import")]
    assert journal[0].changes[0] == "put_member DEMO/GOV/POPREG 'Population Registry'"
    assert await viewer.journal(after=1) == []


async def test_a_viewer_may_not_change(registry: RunningRegistry) -> None:
    refused = await refusal(registry.operator(VICTOR).change([put_member(POPREG, "P")], "try"))
    assert refused.reason == "operator_not_authorized"
    assert registry.service.store.version() == 0


async def test_a_viewer_change_is_permission_denied_with_its_code(
    registry: RunningRegistry,
) -> None:
    request = registry_pb2.ChangeRequest(changes=[put_member(POPREG, "P")], reason="try")
    error = await raw_call(
        registry.address,
        registry.federation.operator(VICTOR),
        "Change",
        request.SerializeToString(),
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_code(error) == "operator_not_authorized"


@pytest.mark.parametrize("call", ["change", "state", "journal"])
async def test_an_unknown_operator_may_do_nothing(registry: RunningRegistry, call: str) -> None:
    client = registry.operator(MALLORY)
    calls = {
        "change": lambda: client.change([put_member(POPREG, "P")], "try"),
        "state": client.state,
        "journal": client.journal,
    }
    refused = await refusal(calls[call]())
    assert refused.reason == "operator_not_authorized"
    assert registry.service.store.version() == 0


async def test_a_security_server_may_not_change(registry: RunningRegistry) -> None:
    await registry.admin.change(sample_registry(), "import")
    identity, _ = registry.federation.security_server(POPREG_SS1)
    refused = await refusal(registry.client(identity).change([remove_member(POPREG)], "try"))
    assert refused.reason == "operator_not_authorized"
    refused = await refusal(registry.client(identity).state())
    assert refused.reason == "operator_not_authorized"
    assert registry.service.store.version() == 1


async def test_an_operator_does_not_register_certificates(registry: RunningRegistry) -> None:
    refused = await refusal(registry.admin.register_certificate())
    assert refused.reason == "operator_not_authorized"


# --- security servers' certificates -------------------------------------------------------------


async def test_a_server_registers_its_certificate_keeping_the_previous_one(
    registry: RunningRegistry,
) -> None:
    # The admin registered ss1 with two certificates; it now presents a new one.
    await registry.admin.change(sample_registry(), "import")
    identity, fingerprint = registry.federation.security_server(POPREG_SS1)
    client = registry.client(identity)
    assert await client.register_certificate(previous_sha256=CERT_A) == 2
    server = registry.service.configuration.security_servers[POPREG_SS1]
    assert server.certificates == {fingerprint, CERT_A}
    # Everything else about the server stays.
    assert server.addresses == ("popreg-ss1.example.gov:7101", "127.0.0.1:7101")
    journal = await registry.admin.journal(after=1)
    assert [(e.actor, e.reason) for e in journal] == [
        (f"security server {POPREG_SS1}", "its authentication certificate")
    ]
    # The published snapshot names the new certificate.
    response = await get_snapshot(registry)
    snapshot = registry.federation.verifier().verify(response.content, now=registry.federation.now)
    assert snapshot.configuration.server_with_certificate(fingerprint) == POPREG_SS1
    assert snapshot.configuration.server_with_certificate(CERT_B) is None


async def test_a_previous_certificate_that_was_not_registered_is_not_kept(
    registry: RunningRegistry,
) -> None:
    await registry.admin.change(sample_registry(), "import")
    identity, fingerprint = registry.federation.security_server(POPREG_SS1)
    assert await registry.client(identity).register_certificate(previous_sha256=b"\x05" * 32) == 2
    server = registry.service.configuration.security_servers[POPREG_SS1]
    assert server.certificates == {fingerprint}


async def test_registering_the_same_certificate_again_changes_nothing(
    registry: RunningRegistry,
) -> None:
    await registry.admin.change(sample_registry(), "import")
    identity, fingerprint = registry.federation.security_server(POPREG_SS2)
    client = registry.client(identity)
    assert await client.register_certificate() == 2
    assert await client.register_certificate() == 2
    assert registry.service.store.version() == 2
    assert registry.service.configuration.security_servers[POPREG_SS2].certificates == {fingerprint}


async def test_an_unregistered_server_may_not_register_a_certificate(
    registry: RunningRegistry,
) -> None:
    await registry.admin.change(sample_registry(), "import")
    identity, _ = registry.federation.security_server(SecurityServerId(POPREG, "ss9"))
    refused = await refusal(registry.client(identity).register_certificate())
    assert refused.reason == "change_refused"
    assert registry.service.store.version() == 1


# --- malformed requests -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["Change", "GetJournal", "RegisterCertificate"])
async def test_a_malformed_request_is_refused_with_a_code(
    registry: RunningRegistry, method: str
) -> None:
    error = await raw_call(
        registry.address, registry.federation.operator(ALICE), method, b"\xff\xff\xff"
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_code(error) == "change_refused"
    assert registry.service.store.version() == 0


async def test_an_unknown_method_is_unimplemented(registry: RunningRegistry) -> None:
    error = await raw_call(registry.address, registry.federation.operator(ALICE), "Drop", b"")
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_client_without_a_federation_certificate_is_turned_away(
    registry: RunningRegistry,
) -> None:
    # "alice" certified by another CA: the TLS handshake fails, no call reaches the registry.
    stranger = Federation.create(registry.federation.now).operator(ALICE)
    identity = pki.TlsIdentity(
        stranger.private_key,
        stranger.certificate_chain,
        pki.certificate_pem(*registry.federation.roots),
    )
    refused = await refusal(registry.client(identity).state())
    assert refused.reason == "registry_unavailable"


async def test_a_change_naming_a_malformed_subsystem_code_is_refused_with_its_code(
    registry: RunningRegistry,
) -> None:
    await registry.admin.change(sample_registry(), "import")
    change = put_server(POPREG_SS2, "127.0.0.1:7102", subsystems=["not a code"])
    refused = await refusal(registry.admin.change([change], "typo"))
    assert refused.reason == "change_refused"
    assert registry.service.store.version() == 1


# --- keeping the snapshot fresh -----------------------------------------------------------------


async def test_the_snapshot_is_re_signed_at_half_its_validity(
    federation: Federation, tmp_path: Path
) -> None:
    moment = [federation.now]
    registry = await RunningRegistry.start(
        federation, f"sqlite:///{tmp_path / 'registry.db'}", clock=lambda: moment[0]
    )
    try:
        await registry.admin.change(sample_registry(), "import")
        first = verified(registry, await snapshot_bytes(registry))
        moment[0] = federation.now + VALIDITY / 2
        blobs: list[bytes] = []

        async def resigned() -> bool:
            blobs.append(await snapshot_bytes(registry))
            return blobs[-1] != first.blob

        for _ in range(30):  # the service looks every second
            if await resigned():
                break
            await asyncio.sleep(0.1)
        again = registry.federation.verifier().verify(blobs[-1], now=moment[0])
        assert again.configuration.version == first.configuration.version == 1
        assert again.configuration.built_at == moment[0]
        assert again.configuration.expires_at == moment[0] + VALIDITY
        # A security server takes the re-signed snapshot of the same version.
        assert accept(first, again) is True
    finally:
        await registry.stop()


async def test_a_second_registry_process_serves_the_first_ones_change(
    federation: Federation, postgres_url: str
) -> None:
    first = await RunningRegistry.start(federation, postgres_url)
    second = await RunningRegistry.start(federation, postgres_url)
    try:
        version = await first.admin.change(sample_registry(), "import")
        expected = await snapshot_bytes(first)
        served: list[bytes] = []
        for _ in range(30):  # each process looks at the database every second
            served.append(await snapshot_bytes(second))
            if served[-1] == expected:
                break
            await asyncio.sleep(0.1)
        assert served[-1] == expected
        assert verified(second, served[-1]).configuration.version == version
        assert second.service.configuration.security_servers.keys() == {
            POPREG_SS1,
            POPREG_SS2,
            TAX_SS1,
        }
        # And the other way round, with versions continuing from the shared database.
        assert await second.admin.change([remove_member(BANK)], "gone") == version + 1
    finally:
        await second.stop()
        await first.stop()


async def snapshot_bytes(registry: RunningRegistry) -> bytes:
    response = await get_snapshot(registry)
    assert response.status_code == 200
    return response.content


def verified(registry: RunningRegistry, blob: bytes) -> VerifiedSnapshot:
    return registry.federation.verifier().verify(blob, now=registry.federation.now)


async def test_changes_and_state_larger_than_grpcs_default_limit(
    registry: RunningRegistry, federation: Federation
) -> None:
    # A federation's import carries every service's descriptors: far beyond gRPC's default
    # 4 MiB per message, both ways.
    services = [
        put_service(
            ServiceId(CIVIL, f"popreg{index}.v1.CivilRegistry"),
            description="x" * 600,
            descriptors=_renamed(population_descriptors(), f"popreg{index}.v1"),
        )
        for index in range(6_000)
    ]
    request = registry_pb2.ChangeRequest(changes=[*sample_registry(), *services], reason="big")
    assert request.ByteSize() > 5 * 1024 * 1024
    version = await registry.admin.change(list(request.changes), "a large import")
    state = await registry.admin.state()
    assert state.version == version
    assert len(state.services) == 6_000 + len(
        [c for c in sample_registry() if c.WhichOneof("change") == "put_service"]
    )
    assert state.ByteSize() > 4 * 1024 * 1024


def _renamed(
    files: descriptor_pb2.FileDescriptorSet, package: str
) -> descriptor_pb2.FileDescriptorSet:
    """``files`` with every file in ``package`` (names and type references follow)."""
    renamed = descriptor_pb2.FileDescriptorSet()
    renamed.CopyFrom(files)
    folder = package.replace(".", "/")
    for file in renamed.file:
        file.name = file.name.replace("popreg/v1", folder)
        file.package = package
        file.dependency[:] = [d.replace("popreg/v1", folder) for d in file.dependency]
        for service in file.service:
            for method in service.method:
                method.input_type = method.input_type.replace(".popreg.v1.", f".{package}.")
                method.output_type = method.output_type.replace(".popreg.v1.", f".{package}.")
    return renamed
