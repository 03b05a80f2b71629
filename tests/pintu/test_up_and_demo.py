"""The operator's commands, run as users run them: ``pintu up`` and ``pintu demo``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from demo.contracts import population_pb2, population_pb2_grpc

pytestmark = pytest.mark.integration

PARENT = "NIK:3174055403940003"


def pintu(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "pintu", *arguments]


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``pintu up --dir DIR`` running for the module; stopped with SIGTERM at the end."""
    state = tmp_path_factory.mktemp("federation")
    log = (state / "up.log").open("w")
    process = subprocess.Popen(
        pintu("up", "--dir", str(state)), stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    endpoints = state / "federation.json"
    deadline = time.monotonic() + 60
    while not endpoints.exists():
        if process.poll() is not None:
            pytest.fail(f"pintu up exited early:\n{(state / 'up.log').read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("pintu up did not write federation.json within 60 s")
        time.sleep(0.1)
    document = json.loads(endpoints.read_text())
    document["_process"] = process
    document["_state"] = state
    yield document
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def _pids(state: Path) -> list[int]:
    return [json.loads(p.read_text())["pid"] for p in (state / "run").glob("*.ready")]


def test_up_writes_every_endpoint(federation: dict[str, Any]) -> None:
    assert set(federation["gateways"]) == {"welfare", "popreg", "nhis", "tax"}
    assert set(federation["agencies"]) == set(federation["gateways"])
    assert Path(federation["ca_bundle"]).is_file()
    for key, agency in federation["agencies"].items():
        gateway = federation["gateways"][agency["gateway"]]
        assert gateway["server"].startswith(agency["member"] + "/")
        assert Path(agency["client_certificate"]).is_file()
        assert Path(agency["client_key"]).is_file()
        if key == "welfare":
            assert agency["backend_address"] is None
        else:
            assert agency["services"]


def test_private_keys_are_readable_by_their_owner_only(federation: dict[str, Any]) -> None:
    state: Path = federation["_state"]
    keys = [
        *state.glob("ca/*.key"),
        *state.glob("ca/service/*.key"),
        *state.glob("gateways/*/*.key"),
        *state.glob("clients/*/key.pem"),
        state / "ca-passphrase",
    ]
    # The CA's root, issuing, responder and service keys; per gateway its authentication,
    # signing, agency-listener and body keys; per agency a client key; the CA's passphrase.
    assert len(keys) == 4 + 4 * 4 + 4 + 1
    for key in keys:
        assert oct(key.stat().st_mode & 0o777) == "0o600", key


def call_population_registry(
    federation: dict[str, Any], channel: grpc.Channel, client: str
) -> population_pb2.Person:
    stub = population_pb2_grpc.CivilRegistryStub(channel)
    return stub.GetPerson(
        population_pb2.GetPersonRequest(citizen_id=PARENT),
        metadata=[
            ("pintu-client", client),
            ("pintu-provider", federation["agencies"]["popreg"]["subsystem"]),
            ("pintu-purpose", "birth-support"),
            ("pintu-subject", PARENT),
        ],
        timeout=10,
    )


def test_an_ordinary_stub_reaches_another_agency_through_the_gateways(
    federation: dict[str, Any],
) -> None:
    address = federation["gateways"]["welfare"]["agency_address"]
    with grpc.insecure_channel(address) as channel:
        person = call_population_registry(
            federation, channel, federation["agencies"]["welfare"]["subsystem"]
        )
    assert person.citizen_id == PARENT


def test_the_registry_of_up_answers_its_operator(federation: dict[str, Any]) -> None:
    """The registry ``pintu up`` runs holds the four security servers, each with the certificate
    it registered after enrolling, and answers the operator credentials it wrote."""
    result = subprocess.run(
        pintu("registry", "state", "--operator", federation["registry"]["operator"]),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    servers = {server["id"]: server for server in state["security_servers"]}
    assert set(servers) == {gateway["server"] for gateway in federation["gateways"].values()}
    for gateway in federation["gateways"].values():
        registered = servers[gateway["server"]]
        assert registered["addresses"] == [gateway["peer_address"]]
        assert len(registered["certificates_sha256"]) == 1
    popreg = next(s for s in state["services"] if s["id"].endswith("popreg.v1.CivilRegistry"))
    assert popreg["personal_data"] is True
    assert "birth-support" in popreg["purposes"]


def test_the_mtls_agency_listener_with_the_client_certificate_from_up(
    federation: dict[str, Any],
) -> None:
    welfare = federation["agencies"]["welfare"]
    credentials = grpc.ssl_channel_credentials(
        Path(federation["ca_bundle"]).read_bytes(),
        Path(welfare["client_key"]).read_bytes(),
        Path(welfare["client_certificate"]).read_bytes(),
    )
    port = federation["gateways"]["welfare"]["agency_tls_address"].rsplit(":", 1)[1]
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        person = call_population_registry(federation, channel, welfare["subsystem"])
    assert person.citizen_id == PARENT


def test_the_peer_port_verified_with_openssl(federation: dict[str, Any], tmp_path: Path) -> None:
    """An outside TLS client sees TLS 1.3 and a certificate chaining to the federation CA."""
    welfare = federation["agencies"]["welfare"]
    address = federation["gateways"]["popreg"]["peer_address"]
    result = subprocess.run(
        [
            "timeout",
            "10",
            "openssl",
            "s_client",
            "-connect",
            address,
            "-tls1_3",
            "-CAfile",
            federation["ca_bundle"],
            "-verify_return_error",
            "-cert",
            welfare["client_certificate"],
            "-key",
            welfare["client_key"],
            "-brief",
        ],
        input="",
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert "Protocol version: TLSv1.3" in output
    assert "Verification: OK" in output


def test_the_peer_port_refuses_tls_below_1_2(federation: dict[str, Any]) -> None:
    address = federation["gateways"]["popreg"]["peer_address"]
    result = subprocess.run(
        ["timeout", "10", "openssl", "s_client", "-connect", address, "-tls1_1", "-brief"],
        input="",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "Protocol version" not in result.stdout + result.stderr


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Whatever a test asserted: no ``pintu up`` (and so none of its children) outlives it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_up_stops_every_child_on_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "state"
    process = subprocess.Popen(pintu("up", "--dir", str(state)), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (state / "federation.json").exists():
            assert process.poll() is None, "pintu up exited early"
            assert time.monotonic() < deadline, "pintu up did not start"
            time.sleep(0.1)
        children = _pids(state)
        # The CA, the registry, the consent service, four security servers, three backends.
        assert len(children) == 10
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        _stop(process)
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not (state / "federation.json").exists()
    # A second start reuses the CA and the keys.
    ca = (state / "ca/G1/root.pem").read_bytes()
    again = subprocess.Popen(pintu("up", "--dir", str(state)), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (state / "federation.json").exists():
            assert again.poll() is None, "second pintu up exited early"
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert (state / "ca/G1/root.pem").read_bytes() == ca
        again.send_signal(signal.SIGINT)
        assert again.wait(30) == 0
    finally:
        _stop(again)


def test_a_second_up_reuses_the_state_folder(tmp_path: Path) -> None:
    """Stopped and started again on the same folder, the federation keeps its CA and registry
    (the registry's journal goes on), moves to new ports and still carries exchanges."""
    from pintu import LocalFederation

    with LocalFederation(tmp_path) as first:
        first_registry = first.document["registry"]["address"]
    root = (tmp_path / "ca-bundle.pem").read_bytes()
    with LocalFederation(tmp_path) as second:
        assert (tmp_path / "ca-bundle.pem").read_bytes() == root
        assert second.document["registry"]["address"] != first_registry
        address = second.document["gateways"]["welfare"]["agency_address"]
        with grpc.insecure_channel(address) as channel:
            person = call_population_registry(
                second.document, channel, second.document["agencies"]["welfare"]["subsystem"]
            )
        assert person.citizen_id == PARENT
        journal = subprocess.run(
            pintu("registry", "journal", "--operator", second.document["registry"]["operator"]),
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert "at this run's addresses" in journal
        assert journal.count("security server") >= 8  # each server registered twice


def test_demo_runs_the_scenario_and_exits_zero() -> None:
    result = subprocess.run(pintu("demo"), capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "client_not_allowed" in result.stdout
    assert "PERMISSION_DENIED" in result.stdout
    # The parent's consent first; a refusal without one; a refusal right after revocation.
    assert "consents online" in result.stdout
    assert result.stdout.count("consent_missing") == 2
    assert "revokes her consent" in result.stdout


def consent_command(
    federation: dict[str, Any], *arguments: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pintu("consent", *arguments, "--operator", federation["registry"]["operator"]),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_consent_service_of_up_grants_lists_revokes_and_receipts_verify(
    federation: dict[str, Any], tmp_path: Path
) -> None:
    nhis, welfare = federation["agencies"]["nhis"], federation["agencies"]["welfare"]
    subject = "NIK:3174059999990001"
    granted = consent_command(
        federation,
        "grant",
        "--subject",
        subject,
        "--provider",
        nhis["subsystem"],
        "--consumer",
        welfare["subsystem"],
        "--service",
        f"{nhis['subsystem']}/{nhis['services'][0]}",
        "--purpose",
        "birth-support",
        "--text",
        "To decide on the birth-support application",
        "--days",
        "30",
    )
    assert granted.returncode == 0, granted.stderr
    consent_id = granted.stdout.split()[0]
    assert " active " in granted.stdout
    listed = consent_command(federation, "list", subject)
    assert consent_id in listed.stdout
    receipt = tmp_path / "receipt.jws"
    got = consent_command(
        federation, "get", consent_id, "--subject", subject, "--receipt", str(receipt)
    )
    assert got.returncode == 0, got.stderr
    verified = subprocess.run(
        pintu(
            "consent",
            "verify",
            str(receipt),
            "--roots",
            federation["consent"]["roots"],
            "--signer",
            federation["consent"]["signer"],
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    assert f"valid receipt of consent {consent_id}" in verified.stdout
    text = receipt.read_text()
    tampered = tmp_path / "tampered.jws"
    middle = text.index(".") + 10
    tampered.write_text(text[:middle] + ("A" if text[middle] != "A" else "B") + text[middle + 1 :])
    refusal = subprocess.run(
        pintu(
            "consent",
            "verify",
            str(tampered),
            "--roots",
            federation["consent"]["roots"],
            "--signer",
            federation["consent"]["signer"],
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refusal.returncode == 2
    assert "[consent_receipt_invalid]" in refusal.stderr
    revoked = consent_command(
        federation, "revoke", consent_id, "--subject", subject, "--reason", "changed my mind"
    )
    assert revoked.returncode == 0, revoked.stderr
    assert "changed my mind" in revoked.stdout
    again = consent_command(federation, "revoke", consent_id, "--subject", subject)
    assert again.returncode == 2
    assert "[consent_already_revoked]" in again.stderr


def test_the_providers_audit_log_of_up_records_exchanges_and_verifies(
    federation: dict[str, Any],
) -> None:
    welfare = federation["agencies"]["welfare"]
    with grpc.insecure_channel(federation["gateways"]["welfare"]["agency_address"]) as channel:
        call_population_registry(federation, channel, welfare["subsystem"])
    log = federation["_state"] / "gateways" / "popreg" / "audit.db"
    command = pintu(
        "audit",
        "verify",
        str(log),
        "--roots",
        federation["ca_bundle"],
        "--signer",
        federation["agencies"]["popreg"]["member"],
    )
    deadline = time.monotonic() + 15
    while True:  # checkpoints come every 5 s
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        if "written since" not in result.stdout and " 0 records" not in result.stdout:
            break
        assert time.monotonic() < deadline, result.stdout
        time.sleep(0.5)
    assert "checkpoints signed by DEMO/GOV/POPREG" in result.stdout
    # Citizens appear as pseudonyms only (in the database and its write-ahead log).
    stored = b"".join(path.read_bytes() for path in log.parent.glob("audit.db*"))
    assert b'"kind":"request"' in stored
    assert PARENT.encode() not in stored
