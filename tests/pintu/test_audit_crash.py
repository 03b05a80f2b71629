"""A security server killed with SIGKILL under load loses no exchange a caller saw succeed: both
security servers wrote its ``request`` and ``outcome`` records durably before the caller saw OK,
both logs verify, and the killed server, started again, continues its log and serves.

The federation is ``pintu up``'s (:class:`pintu.LocalFederation`), reduced to the welfare agency
(the consumer) and the population registry (the provider), every process a real one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from audit import OUTCOME, REQUEST, ExchangeRecord, verify_log
from demo import AGENCIES
from demo.contracts import population_pb2, population_pb2_grpc
from pintu import LocalFederation
from pki import load_certificates
from proto import MemberId
from tests.integration.test_audit_faults import stored_records
from tests.pintu.ca_support import background, environment, pintu, succeeded, wait_until
from tests.pintu.test_up_and_demo import PARENT

pytestmark = pytest.mark.integration

CONSUMER, PROVIDER = "welfare", "popreg"
# Agency systems calling at once, each on its own connection, one call after another.
CLIENTS = 6
# Acknowledged exchanges wanted before the kill, and the bound on every wait.
BEFORE_KILL = 40
WAIT = 20.0


@dataclass
class Load:
    """What the agency systems saw: the message id of every call that succeeded, in order, and
    the status of every call that failed."""

    acknowledged: list[str] = field(default_factory=list)
    failed: list[grpc.StatusCode] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[LocalFederation]:
    """``pintu up``'s federation of the welfare agency and the population registry."""
    agencies = tuple(a for a in AGENCIES if a.key in (CONSUMER, PROVIDER))
    with LocalFederation(tmp_path / "federation", agencies=agencies) as running:
        yield running


def get_person(
    document: dict[str, Any], channel: grpc.Channel
) -> tuple[population_pb2.Person, str]:
    """One exchange through both security servers: the answer and its ``pintu-message-id``."""
    stub = population_pb2_grpc.CivilRegistryStub(channel)
    person, call = stub.GetPerson.with_call(
        population_pb2.GetPersonRequest(citizen_id=PARENT),
        metadata=[
            ("pintu-client", document["agencies"][CONSUMER]["subsystem"]),
            ("pintu-provider", document["agencies"][PROVIDER]["subsystem"]),
            ("pintu-purpose", "birth-support"),
            ("pintu-subject", PARENT),
        ],
        timeout=5,
    )
    trailers = dict(call.trailing_metadata() or ())
    return person, str(trailers["pintu-message-id"])


def call_continuously(document: dict[str, Any], load: Load) -> None:
    """One agency system: call until told to stop (or, at most, for a minute)."""
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(document["gateways"][CONSUMER]["agency_address"]) as channel:
        while not load.stop.is_set() and time.monotonic() < deadline:
            try:
                person, message_id = get_person(document, channel)
            except grpc.RpcError as error:
                load.failed.append(error.code())
                time.sleep(0.02)  # a gateway that is down refuses at once
                continue
            assert person.citizen_id == PARENT
            load.acknowledged.append(message_id)


def serving_again(document: dict[str, Any]) -> str:
    """The message id of the first exchange that succeeds (a consumer reconnects to a provider
    that came back after a backoff)."""
    deadline = time.monotonic() + WAIT
    with grpc.insecure_channel(document["gateways"][CONSUMER]["agency_address"]) as channel:
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.RpcError):
                return get_person(document, channel)[1]
            time.sleep(0.1)
    pytest.fail(f"the security servers did not serve again within {WAIT} s")


def log_of(federation: LocalFederation, key: str) -> Path:
    return federation.state / "gateways" / key / "audit.db"


def assert_recorded(path: Path, acknowledged: list[str]) -> list[ExchangeRecord]:
    """Every acknowledged exchange has its ``request`` and an ``OK`` ``outcome`` in ``path``."""
    written = stored_records(path)
    requests = {r.message_id for r in written if r.kind == REQUEST}
    answered = {r.message_id for r in written if r.kind == OUTCOME and r.status == "OK"}
    missing = [m for m in acknowledged if m not in requests or m not in answered]
    assert not missing, (
        f"{path}: {len(missing)} of {len(acknowledged)} acknowledged exchanges are not recorded"
        f" (first: {missing[0]})"
    )
    return written


def assert_verifies(federation: LocalFederation, key: str) -> str:
    """The log of ``key``'s security server verifies, in-process and with the CLI; the CLI's
    report."""
    document = federation.document
    member = document["agencies"][key]["member"]
    path = log_of(federation, key)
    verify_log(path, load_certificates(federation.ca_bundle), MemberId.parse(member))
    report = succeeded(
        pintu("audit", "verify", path, "--roots", federation.ca_bundle, "--signer", member)
    )
    assert f"checkpoints signed by {member}" in report
    return report


def crash_under_load(federation: LocalFederation, victim: str) -> None:
    """Kill ``victim``'s security server with SIGKILL while agency systems call, then check both
    logs, start it again and check that it continues its log and serves."""
    document = federation.document
    load = Load()
    with ThreadPoolExecutor(CLIENTS) as clients:
        running = [clients.submit(call_continuously, document, load) for _ in range(CLIENTS)]
        wait_until(lambda: len(load.acknowledged) >= BEFORE_KILL, "exchanges before the kill", WAIT)
        failed_before = len(load.failed)
        os.kill(federation.pids[f"gateway-{victim}"], signal.SIGKILL)
        wait_until(
            lambda: len(load.failed) >= failed_before + CLIENTS, "refusals after the kill", WAIT
        )
        load.stop.set()
        for client in running:
            client.result(WAIT)
    assert failed_before == 0, load.failed  # every failure came with the kill
    # A server that died is an outage, never a seal failure (a broken connection is no answer).
    assert grpc.StatusCode.UNAUTHENTICATED not in load.failed, load.failed
    acknowledged = load.acknowledged

    # The killed server's log is read as it was left; the other one's while it keeps running.
    before = {
        key: assert_recorded(log_of(federation, key), acknowledged) for key in document["agencies"]
    }
    for key in document["agencies"]:
        assert_verifies(federation, key)

    config = document["gateways"][victim]["config"]
    scratch = federation.state / "restart"
    with background(
        ["gateway", "run", "--config", config],
        scratch / "gateway.ready",
        scratch / "gateway.log",
        environment(),
    ):
        message_id = serving_again(document)
        for key in document["agencies"]:
            written = assert_recorded(log_of(federation, key), [*acknowledged, message_id])
            # Continued, not restarted: what was there before the kill is still the log's start.
            assert written[: len(before[key])] == before[key]
    # Stopped with SIGTERM, the server signed a last checkpoint over everything it holds,
    # including the records written before the kill.
    report = assert_verifies(federation, victim)
    assert "written since" not in report, report


def test_kill_9_of_the_provider_gateway_under_load_loses_no_acknowledged_exchange(
    federation: LocalFederation,
) -> None:
    crash_under_load(federation, PROVIDER)


def test_kill_9_of_the_consumer_gateway_under_load_loses_no_acknowledged_exchange(
    federation: LocalFederation,
) -> None:
    crash_under_load(federation, CONSUMER)
