"""Signed exchanges: the consumer's security server seals the request, the provider's checks it
and seals its answer bound to the request, the consumer checks that; both record the exchange
with both seals, durably, and either side can export evidence anyone can check offline."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from audit import (
    BODY,
    CERTIFICATE,
    OUTCOME,
    REFUSAL,
    REQUEST,
    Digest,
    ExchangeRecord,
    Sealer,
    SealParts,
    pseudonym,
    request_statement,
    verify_log,
)
from gateway import SecurityServer
from pki import unb64url
from proto.pintu.v1 import exchange_pb2
from tests.integration.support import assert_refusal, refused
from tests.integration.testbed import (
    A_SERVER,
    CLIENT,
    PROVIDER,
    PSEUDONYM_KEY,
    A,
    B,
    TwoGateways,
    metadata,
    probe,
)

pytestmark = pytest.mark.integration

S = grpc.StatusCode
MakeTestbed = Callable[..., Awaitable[TwoGateways]]


def records(server: SecurityServer) -> list[ExchangeRecord]:
    audit = server.audit
    assert audit is not None
    return [ExchangeRecord.decode(audit.log.record(n)) for n in range(audit.log.size)]


def about(server: SecurityServer, message_id: str) -> list[ExchangeRecord]:
    """The exchange's records, but for its kept bodies (test_kept_bodies)."""
    return [r for r in records(server) if r.message_id == message_id and r.kind != BODY]


def statement(token: str) -> dict[str, Any]:
    document = json.loads(unb64url(token.split(".")[1]))
    assert isinstance(document, dict)
    return document


def digest_of(*messages: bytes) -> str:
    digest = Digest()
    for message in messages:
        digest.update(message)
    return digest.hexdigest()


async def sealed_call(
    testbed: TwoGateways, method: str, kind: str, request: Any
) -> tuple[Any, str]:
    """A call through both gateways; its answer and message id."""
    entries = metadata(
        pintu_subject="NIK:3174051234560001", pintu_user="clerk-7", pintu_issue="case-42"
    )
    call = probe(testbed.agency_channel(), method, kind)(request, metadata=entries, timeout=10)
    if kind in ("server", "bidi"):
        answer = [message async for message in call]
    else:
        answer = await call
    trailers = dict(await call.trailing_metadata())
    return answer, str(trailers["pintu-message-id"])


async def test_an_exchange_is_sealed_both_ways_and_recorded_by_both_servers(
    make_testbed: MakeTestbed,
) -> None:
    testbed = await make_testbed(audit=True)
    answer, message_id = await sealed_call(testbed, "Echo", "unary", b"hello")
    assert answer == b"hello"

    consumer, provider = about(testbed.consumer, message_id), about(testbed.provider, message_id)
    assert [r.kind for r in consumer] == [REQUEST, OUTCOME]
    assert [r.kind for r in provider] == [REQUEST, OUTCOME]
    assert {r.role for r in consumer} == {"consumer"}
    assert {r.role for r in provider} == {"provider"}
    subject = pseudonym(PSEUDONYM_KEY, "NIK:3174051234560001")
    assert consumer[0].subject == provider[0].subject == subject
    assert "3174051234560001" not in json.dumps([r.encode().decode() for r in consumer + provider])
    # Each side names the other server's certificate: the one the consumer authenticated with,
    # and the one the provider's OCSP staple is about.
    assert testbed.consumer.keeper is not None
    assert testbed.provider.keeper is not None
    assert provider[0].peer_certificate == f"{testbed.consumer.keeper.certificate.serial_number:x}"
    assert consumer[1].peer_certificate == f"{testbed.provider.keeper.certificate.serial_number:x}"
    # Both sides hold the same two seals.
    assert consumer[1].request_seal == provider[1].request_seal != ""
    assert consumer[1].response_seal == provider[1].response_seal != ""
    assert consumer[1].status == provider[1].status == "OK"
    assert consumer[1].request_bytes == provider[1].request_bytes == 5

    request = statement(provider[1].request_seal)
    assert request == {
        "type": "pintu.exchange.request",
        "message_id": message_id,
        "client": str(CLIENT),
        "consumer_server": str(A_SERVER),
        "provider": str(PROVIDER),
        "method": "/test.v1.Probe/Echo",
        "purpose": "testing",
        "subject": subject,
        "user": "clerk-7",
        "issue": "case-42",
        "created_ns": request["created_ns"],
        "digest": digest_of(b"hello"),
        "messages": 1,
        "bytes": 5,
    }
    response = statement(provider[1].response_seal)
    request_bytes = unb64url(provider[1].request_seal.split(".")[1])
    assert response["request"] == hashlib.sha256(request_bytes).hexdigest()
    assert response["digest"] == digest_of(b"hello")
    assert response["status"] == "OK"

    # Each log holds both certificate chains, and verifies.
    for server, member in ((testbed.consumer, A), (testbed.provider, B)):
        chains = [r for r in records(server) if r.kind == CERTIFICATE]
        assert len(chains) == 2, chains
        assert server.audit is not None
        server.audit.log.checkpoint(server.audit.now())
        verified = verify_log(server.audit.log.path, [testbed.pki.root], member)
        assert verified.uncovered == 0


@pytest.mark.parametrize(
    ("method", "kind", "outgoing", "sent", "received"),
    [
        ("ServerStream", "server", b'{"count": 4, "size": 10}', 1, 4),
        ("ClientStream", "client", iter([b"a", b"bb", b"ccc"]), 3, 1),
        ("Bidi", "bidi", iter([b"a", b"bb", b"ccc"]), 3, 3),
    ],
)
async def test_streams_are_sealed_over_every_message(
    make_testbed: MakeTestbed, method: str, kind: str, outgoing: Any, sent: int, received: int
) -> None:
    testbed = await make_testbed(audit=True)
    answer, message_id = await sealed_call(testbed, method, kind, outgoing)
    answers = answer if isinstance(answer, list) else [answer]
    assert len(answers) == received
    outcome = next(r for r in about(testbed.consumer, message_id) if r.kind == OUTCOME)
    assert outcome.status == "OK"
    assert statement(outcome.request_seal)["messages"] == sent
    response = statement(outcome.response_seal)
    assert response["messages"] == received
    assert response["digest"] == digest_of(*answers)


async def test_a_backend_error_is_sealed_and_passed_on(make_testbed: MakeTestbed) -> None:
    testbed = await make_testbed(audit=True)
    call = probe(testbed.agency_channel(), "Fail")(
        json.dumps({"code": "NOT_FOUND", "details": "no such person"}).encode(),
        metadata=metadata(),
        timeout=10,
    )
    error = await refused(call)
    assert error.code() == S.NOT_FOUND
    message_id = str(dict(error.trailing_metadata())["pintu-message-id"])
    for server in (testbed.consumer, testbed.provider):
        outcome = next(r for r in about(server, message_id) if r.kind == OUTCOME)
        assert outcome.status == "NOT_FOUND"
        assert statement(outcome.response_seal)["status"] == "NOT_FOUND"


# -- a consumer server that forges or leaves out the request's seal ------------------------------


def forged_header(
    testbed: TwoGateways, message_id: str, marker: bytes
) -> exchange_pb2.ExchangeHeader:
    consumer = testbed.consumer
    assert consumer.keeper is not None
    created = Timestamp()
    created.GetCurrentTime()
    return exchange_pb2.ExchangeHeader(
        version=1,
        message_id=message_id,
        client=CLIENT.to_proto(),
        provider=PROVIDER.to_proto(),
        method="/test.v1.Probe/Echo",
        purpose="testing",
        created_at=created,
        consumer_server=A_SERVER.to_proto(),
        ocsp_response=consumer.keeper.staple,
        seal_marker=marker,
    )


def seal_for(header: exchange_pb2.ExchangeHeader, sealer: Sealer, *messages: bytes) -> SealParts:
    digest = Digest()
    for message in messages:
        digest.update(message)
    return sealer.seal(
        request_statement(
            message_id=header.message_id,
            client=str(CLIENT),
            consumer_server=str(A_SERVER),
            provider=str(PROVIDER),
            method=header.method,
            purpose=header.purpose,
            subject="",
            created_ns=header.created_at.ToNanoseconds(),
            digest=digest,
        )
    )


@pytest.mark.parametrize(
    ("case", "code", "why"),
    [
        ("body_tampered", "signature_invalid", "differs in digest"),
        ("wrong_member_key", "signature_invalid", f"the seal is by {B}, not by {A}"),
        ("garbage", "signature_invalid", "malformed"),
        ("signature_altered", "signature_invalid", "does not verify"),
        ("seal_left_out", "signature_missing", "ended without the consumer's seal"),
        ("not_sealed", "signature_missing", "not sealed"),
    ],
)
async def test_a_forged_or_missing_request_seal_is_refused_and_recorded(
    make_testbed: MakeTestbed, case: str, code: str, why: str
) -> None:
    testbed = await make_testbed(audit=True)
    consumer, provider = testbed.consumer.audit, testbed.provider.audit
    assert consumer is not None
    assert provider is not None
    assert testbed.consumer.keeper is not None
    message_id = hashlib.sha256(case.encode()).hexdigest()[:32]
    marker = b"" if case == "not_sealed" else b"m" * 16
    header = forged_header(testbed, message_id, marker)
    body = b"transfer 100"
    messages = [body]
    if case == "body_tampered":
        messages.append(marker + seal_for(header, consumer.sealer, b"transfer 999").encode())
    elif case == "wrong_member_key":
        messages.append(marker + seal_for(header, provider.sealer, body).encode())
    elif case == "garbage":
        messages.append(marker + b"\x0a\xff not a seal")
    elif case == "signature_altered":
        parts = seal_for(header, consumer.sealer, body)
        token = parts.token[:-4] + ("AAAA" if not parts.token.endswith("AAAA") else "BBBB")
        messages.append(marker + SealParts(token, parts.statement, parts.chain).encode())
    channel = testbed.peer_channel(testbed.consumer.keeper.identity)
    call = channel.stream_stream("/test.v1.Probe/Echo")(
        iter(messages),
        metadata=[("pintu-exchange-bin", header.SerializeToString())],
        timeout=10,
    )
    error = await refused(_drain(call))
    detail = assert_refusal(error, S.UNAUTHENTICATED, code, "provider_gateway")
    assert why in detail.message, detail.message

    for _ in range(100):  # refusals are recorded in the background
        recorded = [r for r in about(testbed.provider, message_id) if r.kind in (OUTCOME, REFUSAL)]
        if recorded:
            break
        await asyncio.sleep(0.02)
    assert recorded, records(testbed.provider)
    end = recorded[0]
    assert (end.code or end.status) == code
    if case in ("body_tampered", "wrong_member_key", "signature_altered"):
        assert end.request_seal  # the forged seal is kept as evidence
        assert end.response_seal == ""


async def _drain(call: Any) -> list[bytes]:
    return [message async for message in call]


# -- a provider server that forges its seal --------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["wrong_member_key", "status_changed", "left_out", "error_code_on_success"]
)
async def test_a_forged_or_missing_answer_seal_is_refused_and_recorded(
    make_testbed: MakeTestbed, case: str
) -> None:
    testbed = await make_testbed(audit=True)
    consumer, provider = testbed.consumer.audit, testbed.provider.audit
    assert consumer is not None
    assert provider is not None
    honest = provider.sealer

    class Forger:
        chain = honest.chain

        def seal(self, statement: bytes) -> SealParts:
            if case == "wrong_member_key":
                return consumer.sealer.seal(statement)
            document = json.loads(statement)
            document["status"] = "NOT_FOUND"
            return honest.seal(json.dumps(document, sort_keys=True, separators=(",", ":")).encode())

    provider.sealer = Forger()  # type: ignore[assignment]
    unsealed_cases = ("left_out", "error_code_on_success")
    if case in unsealed_cases:
        from gateway import _seals

        async def unsealed(self: Any, *arguments: Any) -> Any:
            await original(self, *arguments)
            # No seal; a success dressed as a refusal must not escape the seal check either.
            return (("pintu-error-code", "access_denied"),) if case != "left_out" else ()

        original = _seals.ProviderSeals.finish
        _seals.ProviderSeals.finish = unsealed  # type: ignore[method-assign]
    try:
        error = await refused(
            probe(testbed.agency_channel(), "Echo")(b"x", metadata=metadata(), timeout=10)
        )
    finally:
        if case in unsealed_cases:
            _seals.ProviderSeals.finish = original  # type: ignore[method-assign]
    code = "signature_missing" if case in unsealed_cases else "signature_invalid"
    detail = assert_refusal(error, S.UNAUTHENTICATED, code, "consumer_gateway")
    for _ in range(100):
        ended = [r for r in about(testbed.consumer, detail.message_id) if r.kind == OUTCOME]
        if ended:
            break
        await asyncio.sleep(0.02)
    assert ended
    assert ended[0].status == code
    assert ended[0].request_seal
    if case not in unsealed_cases:
        assert ended[0].response_seal  # the forged seal is kept as evidence


# -- evidence --------------------------------------------------------------------------------------


def pintu(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pintu", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_either_side_exports_evidence_that_verifies_offline(
    make_testbed: MakeTestbed, tmp_path: Path
) -> None:
    testbed = await make_testbed(audit=True)
    _, message_id = await sealed_call(testbed, "Echo", "unary", b"birth certificate 42")
    roots = tmp_path / "roots.pem"
    roots.write_bytes(testbed.pki.anchors)
    for side, server, member in (
        ("consumer", testbed.consumer, A),
        ("provider", testbed.provider, B),
    ):
        assert server.audit is not None
        log = server.audit.log.path
        server.audit.log.checkpoint(server.audit.now())
        evidence = tmp_path / f"{side}.json"
        exported = pintu("audit", "prove", message_id, "--log", str(log), "--out", str(evidence))
        assert exported.returncode == 0, exported.stderr
        checked = pintu(
            "audit",
            "verify-evidence",
            str(evidence),
            "--roots",
            str(roots),
            "--signer",
            str(member),
        )
        assert checked.returncode == 0, checked.stderr
        assert f"request sealed by {A}" in checked.stdout
        assert f"answer sealed by {B}: status OK" in checked.stdout
        assert digest_of(b"birth certificate 42") in checked.stdout

        # Another member's name as the log's keeper, a changed record, a changed seal: refused.
        other = B if member == A else A
        wrong = pintu(
            "audit", "verify-evidence", str(evidence), "--roots", str(roots), "--signer", str(other)
        )
        assert wrong.returncode == 1
        assert "evidence_invalid" in wrong.stderr
        document = json.loads(evidence.read_text())
        outcome = next(
            entry
            for entry in document["records"]
            if json.loads(base64.b64decode(entry["body"]))["kind"] == OUTCOME
        )
        original = outcome["body"]
        record = json.loads(base64.b64decode(original))
        record["status"] = "NOT_FOUND"
        outcome["body"] = base64.b64encode(json.dumps(record).encode()).decode()
        evidence.write_text(json.dumps(document))
        changed = pintu(
            "audit",
            "verify-evidence",
            str(evidence),
            "--roots",
            str(roots),
            "--signer",
            str(member),
        )
        assert changed.returncode == 1, changed.stdout
        assert "evidence_invalid" in changed.stderr, changed.stderr

    missing = pintu("audit", "prove", "0" * 32, "--log", str(log))
    assert missing.returncode == 1
    assert "evidence_missing" in missing.stderr
