"""The provider's security server decides every exchange with policy: access rights by
subsystem, global or local group and method, purpose binding, closed windows, engine failures,
the decision log, and rights files and signed bundles replaced while it runs."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import pki
import policy
from gateway import PolicySettings, SettingsError, security_server
from policy import (
    AccessRights,
    ClosedWindow,
    Decision,
    DecisionLog,
    EmbeddedEngine,
    Grant,
    PolicyError,
    PolicyInput,
    PolicySet,
    RemoteOpaEngine,
    build_bundle,
)
from proto.pintu.v1 import metaservices_pb2, metaservices_pb2_grpc, registry_pb2
from tests.integration.support import assert_refusal, refused
from tests.integration.testbed import (
    CLIENT,
    PROBE,
    PROVIDER,
    SECURE_CLIENT,
    B,
    TwoGateways,
    free_port,
    metadata,
    probe,
)

pytestmark = pytest.mark.integration

S = grpc.StatusCode
MakeTestbed = Callable[..., Awaitable[TwoGateways]]


def call(testbed: TwoGateways, method: str = "Echo", **entries: str) -> Any:
    return probe(testbed.agency_channel(), method)(b"x", metadata=metadata(**entries), timeout=10)


async def denied(testbed: TwoGateways, *reasons: str, method: str = "Echo", **entries: str):
    error = await refused(call(testbed, method, **entries))
    detail = assert_refusal(error, S.PERMISSION_DENIED, "access_denied", "provider_gateway")
    assert list(detail.reasons) == list(reasons)
    assert len(detail.decision_id) == 36
    assert testbed.probe.calls == []
    return detail


def rights(*grants: Grant, **options: Any) -> PolicySettings:
    return PolicySettings(rights=AccessRights(grants), **options)


def grant(client: object = CLIENT, methods: tuple[str, ...] = ()) -> Grant:
    return Grant(str(PROBE), f"subsystem:{client}", methods)


# -- access rights -----------------------------------------------------------------------------


async def test_a_client_without_a_right_is_denied(make_testbed: MakeTestbed) -> None:
    testbed = await make_testbed(provider_policy=rights(grant(SECURE_CLIENT)))
    await denied(testbed, "no_access_right")


async def test_no_rights_at_all_denies_everything(make_testbed: MakeTestbed) -> None:
    testbed = await make_testbed(provider_policy=PolicySettings())
    await denied(testbed, "no_access_right")


async def test_a_right_for_some_methods_only(make_testbed: MakeTestbed) -> None:
    testbed = await make_testbed(provider_policy=rights(grant(methods=("Echo",))))
    assert await call(testbed, "Echo") == b"x"
    testbed.probe.calls.clear()
    await denied(testbed, "no_access_right", method="Metadata")


async def test_a_right_held_through_a_global_group(make_testbed: MakeTestbed) -> None:
    testbed = await make_testbed(provider_policy=rights(Grant(str(PROBE), "group:social-services")))
    await denied(testbed, "no_access_right")
    version = await testbed.registry.change(
        registry_pb2.RegistryChange(
            put_global_group=registry_pb2.GlobalGroup(
                code="social-services", description="Social services", members=[CLIENT.to_proto()]
            )
        )
    )
    await testbed.registry.caught_up(version)
    assert await call(testbed) == b"x"


async def test_a_right_held_through_a_local_group(make_testbed: MakeTestbed) -> None:
    local = AccessRights(
        [Grant(str(PROBE), "local:caseworkers", ("Echo",))],
        {"caseworkers": [str(CLIENT)]},
    )
    testbed = await make_testbed(provider_policy=PolicySettings(rights=local))
    assert await call(testbed) == b"x"


# -- purpose, windows --------------------------------------------------------------------------


async def test_a_purpose_the_service_does_not_serve_is_denied(testbed: TwoGateways) -> None:
    await denied(testbed, "purpose_not_allowed", purpose="marketing")


async def test_a_closed_window_denies_and_an_open_one_does_not(make_testbed: MakeTestbed) -> None:
    now = dt.datetime.now(dt.UTC)
    hour = dt.timedelta(hours=1)
    closed = AccessRights(
        [grant()],
        windows=[
            ClosedWindow(str(PROBE), now - hour, now + hour, "maintenance"),
            ClosedWindow(str(PROBE), now + 2 * hour, now + 3 * hour, "maintenance"),
        ],
    )
    testbed = await make_testbed(provider_policy=PolicySettings(rights=closed))
    await denied(testbed, "service_closed")
    later = AccessRights([grant()], windows=[ClosedWindow(str(PROBE), now + hour, now + 2 * hour)])
    other = await make_testbed(provider_policy=PolicySettings(rights=later))
    assert await call(other) == b"x"


# -- failing to decide -------------------------------------------------------------------------


class _Failing:
    revision = "failing"

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def decide(self, policy_input: PolicyInput) -> Decision:
        raise self.error


@pytest.mark.parametrize(
    "error", [PolicyError("engine down"), RuntimeError("bug")], ids=["policy_error", "crash"]
)
async def test_an_engine_that_fails_denies_with_policy_error(
    make_testbed: MakeTestbed, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    testbed = await make_testbed(
        provider_policy=rights(grant(), engine=_Failing(error), cache_size=0)
    )
    with caplog.at_level(logging.WARNING, "pintu"):
        failure = await refused(call(testbed))
    assert_refusal(failure, S.PERMISSION_DENIED, "policy_error", "provider_gateway")
    assert testbed.probe.calls == []
    events = [getattr(r, "pintu_event", {}) for r in caplog.records]
    assert any(e.get("code") == "policy_error" for e in events)


async def test_a_remote_opa_that_is_down_denies_with_policy_error(
    make_testbed: MakeTestbed,
) -> None:
    engine = RemoteOpaEngine("127.0.0.1", free_port(), timeout=0.5)
    testbed = await make_testbed(provider_policy=rights(grant(), engine=engine, cache_size=0))
    failure = await refused(call(testbed))
    assert_refusal(failure, S.PERMISSION_DENIED, "policy_error", "provider_gateway")
    assert testbed.probe.calls == []


def _policies(rego: str) -> PolicySet:
    """The shipped test file beside a replacement authz.rego (its cases are not run here)."""
    shipped = PolicySet.load(policy.DEFAULT_POLICIES)
    return PolicySet({"pintu/authz.rego": rego}, dict(shipped.tests), dict(shipped.data))


OBLIGING = """package pintu.authz
import rego.v1
decision := {"allow": true, "reasons": [], "obligations": ["shred_after_reading"]}
"""


async def test_an_obligation_the_gateway_cannot_meet_denies(make_testbed: MakeTestbed) -> None:
    engine = EmbeddedEngine(_policies(OBLIGING))
    testbed = await make_testbed(provider_policy=rights(grant(), engine=engine))
    failure = await refused(call(testbed))
    detail = assert_refusal(failure, S.PERMISSION_DENIED, "policy_error", "provider_gateway")
    assert "shred_after_reading" in detail.message
    assert testbed.probe.calls == []


async def test_an_unwritable_decision_log_denies(make_testbed: MakeTestbed, tmp_path: Path) -> None:
    testbed = await make_testbed(
        provider_policy=rights(grant(), decision_log=tmp_path / "missing" / "decisions.jsonl")
    )
    failure = await refused(call(testbed))
    assert_refusal(failure, S.PERMISSION_DENIED, "policy_error", "provider_gateway")
    assert testbed.probe.calls == []


# -- the decision log and the cache --------------------------------------------------------------


async def test_every_decision_is_logged_with_the_id_the_caller_sees(
    make_testbed: MakeTestbed, tmp_path: Path
) -> None:
    log = tmp_path / "decisions.jsonl"
    testbed = await make_testbed(provider_policy=rights(grant(methods=("Echo",)), decision_log=log))
    assert await asyncio.gather(*(call(testbed) for _ in range(20))) == [b"x"] * 20
    testbed.probe.calls.clear()
    detail = await denied(testbed, "no_access_right", method="Metadata")
    records = list(DecisionLog(log).records())
    assert len(records) == 21
    assert sum(r.allow for r in records) == 20
    refusal = records[-1]
    assert (refusal.decision_id, refusal.allow, refusal.reasons) == (
        detail.decision_id,
        False,
        ("no_access_right",),
    )
    assert len({r.decision_id for r in records}) == 21
    assert testbed.provider.authorizer is not None
    cache = testbed.provider.authorizer.cache
    assert cache is not None
    assert cache.hits >= 19


# -- rights files and bundles replaced at run time -----------------------------------------------


async def until(condition: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "not within the time allowed"
        await asyncio.sleep(0.05)


async def succeeds(testbed: TwoGateways) -> bool:
    try:
        return await call(testbed) == b"x"
    except grpc.aio.AioRpcError:
        return False


def write_rights(path: Path, document: object) -> None:
    temporary = path.with_suffix(".new")
    temporary.write_text(json.dumps(document))
    temporary.replace(path)


async def test_a_changed_rights_file_applies_and_a_broken_one_is_refused(
    make_testbed: MakeTestbed, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "rights.json"
    write_rights(path, {"rights": []})
    testbed = await make_testbed(
        provider_policy=PolicySettings(
            rights=AccessRights.load(path), rights_file=path, watch_seconds=0.1
        )
    )
    await denied(testbed, "no_access_right")
    write_rights(path, {"rights": [{"service": str(PROBE), "holder": f"subsystem:{CLIENT}"}]})
    await until(lambda: succeeds(testbed))
    authorizer = testbed.provider.authorizer
    assert authorizer is not None
    with caplog.at_level(logging.ERROR, "pintu.gateway"):
        write_rights(path, {"rights": [{"service": "DEMO/GOV/B/other/x.v1.X", "holder": "x"}]})
        await until(lambda: asyncio.sleep(0, authorizer.counts.rights_refusals == 1))
    assert await call(testbed) == b"x"  # the rights read last stay in force
    with caplog.at_level(logging.ERROR, "pintu.gateway"):
        path.unlink()
        await asyncio.sleep(0.5)
    assert await call(testbed) == b"x"  # a file gone changes nothing either
    events = [getattr(r, "pintu_event", {}).get("event") for r in caplog.records]
    assert "policy_rights_refused" in events
    assert "policy_file_missing" in events


FROZEN = """package pintu.authz
import rego.v1
decision := {"allow": false, "reasons": ["frozen"], "obligations": []}
"""
FROZEN_TEST = """package pintu.authz_test
import rego.v1
cases := [{"name": "frozen", "input": {}, "expect": {"allow": false}}]
"""


def signed_bundle(testbed: TwoGateways, files: dict[str, bytes], revision: str) -> bytes:
    key = pki.generate_key()
    certificate = testbed.pki.ca.issue_signing_certificate(
        B, key.public_key(), now=testbed.pki.now, lifetime=dt.timedelta(days=1)
    )
    return build_bundle(files, key, [certificate, testbed.pki.ca.certificate], revision=revision)


async def test_a_signed_bundle_replaces_the_policies_and_a_bad_one_is_refused(
    make_testbed: MakeTestbed, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bundle.tar.gz"
    testbed = await make_testbed(
        provider_policy=rights(grant(), bundle_file=path, watch_seconds=0.1)
    )
    assert await call(testbed) == b"x"
    authorizer = testbed.provider.authorizer
    assert authorizer is not None
    shipped_revision = authorizer.revision
    frozen = signed_bundle(
        testbed,
        {"pintu/authz.rego": FROZEN.encode(), "pintu/authz_test.rego": FROZEN_TEST.encode()},
        "frozen-1",
    )
    path.with_suffix(".new").write_bytes(frozen)
    path.with_suffix(".new").replace(path)
    await until(lambda: asyncio.sleep(0, authorizer.revision != shipped_revision))
    testbed.probe.calls.clear()
    await denied(testbed, "frozen")
    frozen_revision = authorizer.revision
    # One byte changed after signing: refused, and the frozen policies stay.
    tampered = bytearray(frozen)
    tampered[len(tampered) // 2] ^= 0x01
    with caplog.at_level(logging.ERROR, "pintu.policy"):
        path.with_suffix(".new").write_bytes(bytes(tampered))
        path.with_suffix(".new").replace(path)
        await until(lambda: asyncio.sleep(0, authorizer.counts.bundle_refusals == 1))
    assert authorizer.revision == frozen_revision
    await denied(testbed, "frozen")
    events = [getattr(r, "pintu_event", {}).get("event") for r in caplog.records]
    assert "policy_bundle_refused" in events


async def test_a_bundle_signed_by_another_member_is_refused_at_start(
    make_testbed: MakeTestbed, tmp_path: Path
) -> None:
    path = tmp_path / "bundle.tar.gz"
    testbed = await make_testbed()
    key = pki.generate_key()
    certificate = testbed.pki.ca.issue_signing_certificate(
        CLIENT.member, key.public_key(), now=testbed.pki.now, lifetime=dt.timedelta(days=1)
    )
    files = {"pintu/authz.rego": FROZEN.encode(), "pintu/authz_test.rego": FROZEN_TEST.encode()}
    path.write_bytes(
        build_bundle(files, key, [certificate, testbed.pki.ca.certificate], revision="x")
    )
    server = security_server(
        dataclasses.replace(testbed.provider.settings, policy=rights(grant(), bundle_file=path))
    )
    with pytest.raises(SettingsError, match=r"policy\.bundle"):
        await server.start()


# -- the list of allowed services and the metrics ------------------------------------------------


def list_allowed(testbed: TwoGateways) -> Any:
    stub = metaservices_pb2_grpc.MetaservicesStub(testbed.agency_channel())
    return stub.ListAllowedServices(
        metaservices_pb2.ListAllowedServicesRequest(), metadata=metadata(), timeout=10
    )


async def test_list_allowed_services_shows_only_services_with_a_right(
    make_testbed: MakeTestbed,
) -> None:
    without = await make_testbed(provider_policy=rights(grant(SECURE_CLIENT)))
    assert list((await list_allowed(without)).services) == []
    with_right = await make_testbed(provider_policy=rights(grant(methods=("Echo",))))
    answer = await list_allowed(with_right)
    assert [s.id.service_name for s in answer.services] == [PROBE.service_name]
    assert PROBE.provider == PROVIDER


async def test_policy_metrics_count_decisions_and_denials(make_testbed: MakeTestbed) -> None:
    testbed = await make_testbed(metrics=True, provider_policy=rights(grant(methods=("Echo",))))
    assert await call(testbed) == b"x"
    testbed.probe.calls.clear()
    await denied(testbed, "no_access_right", method="Metadata")
    await denied(testbed, "no_access_right", "purpose_not_allowed", method="Metadata", purpose="ad")
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"http://127.0.0.1:{testbed.provider.metrics_port}/metrics", timeout=5
        )
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    assert samples[("pintu_policy_decisions_total", (("outcome", "allow"),))] == 1
    assert samples[("pintu_policy_decisions_total", (("outcome", "deny"),))] == 2
    assert samples[("pintu_policy_decisions_total", (("outcome", "error"),))] == 0
    assert samples[("pintu_policy_denials_total", (("reason", "no_access_right"),))] == 2
    assert samples[("pintu_policy_denials_total", (("reason", "purpose_not_allowed"),))] == 1
    assert samples[("pintu_policy_bundle_refusals_total", ())] == 0
    revision = [k for k in samples if k[0] == "pintu_policy_revision_info"]
    assert len(revision) == 1
    assert samples[revision[0]] == 1
