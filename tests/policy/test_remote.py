"""The remote engine against an OPA-API-compatible server: decisions, and every way the server
can fail to give one (each a policy_error: the exchange is denied)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import pki
import policy
from pintu import free_port
from policy import PolicyError, RemoteOpaEngine
from tests.policy.opa_server import ENTRY, FakeOpa
from tests.policy.rego_support import birth_support

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture
def opa() -> Iterator[FakeOpa]:
    server = FakeOpa()
    yield server
    server.close()


@pytest.fixture
async def engine(opa: FakeOpa) -> AsyncIterator[RemoteOpaEngine]:
    remote = RemoteOpaEngine("127.0.0.1", opa.port, timeout=0.5, revision="bundle-7")
    yield remote
    await remote.close()


def refused(error: pytest.ExceptionInfo[PolicyError]) -> str:
    assert error.value.code == "policy_error"
    return str(error.value)


async def test_a_decision_comes_from_the_servers_answer(
    opa: FakeOpa, engine: RemoteOpaEngine
) -> None:
    decision = await engine.decide(birth_support())
    assert (decision.allow, decision.reasons) == (True, ())
    assert decision.obligations == ("log_body", "notify_subject")
    assert (decision.decision_id, decision.revision) == ("opa-decision-1", "bundle-7")
    # OPA's Data API: the input document, under "input", at the decision's path.
    assert opa.requests == [{"path": ENTRY, "body": {"input": birth_support().to_json()}}]


async def test_a_denial_keeps_its_reasons(engine: RemoteOpaEngine) -> None:
    decision = await engine.decide(birth_support(rights=()))
    assert (decision.allow, decision.reasons) == (False, ("no_access_right",))


async def test_remote_opa_down() -> None:
    remote = RemoteOpaEngine("127.0.0.1", free_port(), timeout=0.5)
    try:
        with pytest.raises(PolicyError) as error:
            await remote.decide(birth_support())
    finally:
        await remote.close()
    assert refused(error).startswith("OPA could not be asked: ClientConnectorError")


async def test_remote_opa_slow_is_refused_at_the_timeout(
    opa: FakeOpa, engine: RemoteOpaEngine
) -> None:
    opa.mode = "slow"
    started = time.monotonic()
    with pytest.raises(PolicyError) as error:
        await engine.decide(birth_support())
    assert time.monotonic() - started < 1.5
    assert refused(error) == "OPA did not answer within 0.5 s"
    assert len(opa.requests) == 1  # never retried


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("garbage", "OPA answered something that is not JSON: "),
        ("bad_json", "OPA answered something that is not JSON: "),
        ("error", "OPA answered HTTP 500"),
        ("undefined", "the policy's decision is undefined for this input (OPA)"),
        ("not_a_decision", "the policy's result is not a decision object: 'yes'"),
        ("drop", "OPA could not be asked: "),
    ],
)
async def test_remote_opa_answering_no_decision(
    opa: FakeOpa, engine: RemoteOpaEngine, mode: str, message: str
) -> None:
    opa.mode = mode
    with pytest.raises(PolicyError) as error:
        await engine.decide(birth_support())
    assert refused(error).startswith(message), refused(error)


async def test_the_server_comes_back(opa: FakeOpa, engine: RemoteOpaEngine) -> None:
    opa.mode = "error"
    with pytest.raises(PolicyError):
        await engine.decide(birth_support())
    opa.mode = "serve"
    assert (await engine.decide(birth_support())).allow is True


async def test_an_input_of_the_wrong_shape_is_not_sent(
    opa: FakeOpa, engine: RemoteOpaEngine
) -> None:
    with pytest.raises(PolicyError):
        await engine.decide(birth_support(consent="maybe"))
    assert opa.requests == []


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(PolicyError, match="positive"):
        RemoteOpaEngine("127.0.0.1", 8181, timeout=0)


# --- over HTTPS, trusting the federation's roots -------------------------------------------------


def tls_files(folder: Path, ca: pki.CertificateAuthority) -> tuple[Path, Path]:
    key = pki.generate_key()
    certificate = ca.issue_service_certificate(
        "OPA sidecar", ["127.0.0.1", "localhost"], key.public_key(), now=NOW, lifetime=DAY
    )
    folder.mkdir(parents=True, exist_ok=True)
    pki.write_public(folder / "opa.pem", pki.certificate_pem(certificate, ca.certificate))
    pki.write_private(folder / "opa.key", pki.key_pem(key))
    return folder / "opa.pem", folder / "opa.key"


@pytest.fixture
def federation_ca() -> pki.CertificateAuthority:
    return pki.CertificateAuthority.create("DEMO", now=NOW - DAY, lifetime=DAY * 30)


async def test_over_https_the_server_must_chain_to_the_federations_roots(
    tmp_path: Path, federation_ca: pki.CertificateAuthority
) -> None:
    server = FakeOpa(tls=tls_files(tmp_path / "opa", federation_ca))
    roots = tmp_path / "roots.pem"
    pki.write_public(roots, pki.certificate_pem(federation_ca.certificate))
    stranger = pki.CertificateAuthority.create("DEMO", now=NOW - DAY, lifetime=DAY * 30)
    other_roots = tmp_path / "other-roots.pem"
    pki.write_public(other_roots, pki.certificate_pem(stranger.certificate))
    trusting = RemoteOpaEngine("127.0.0.1", server.port, roots=roots, timeout=2)
    distrusting = RemoteOpaEngine("127.0.0.1", server.port, roots=other_roots, timeout=2)
    try:
        assert (await trusting.decide(birth_support())).allow is True
        with pytest.raises(PolicyError) as error:
            await distrusting.decide(birth_support())
        assert "certificate verify failed" in refused(error).lower() or "SSL" in refused(error)
        assert len(server.requests) == 1
    finally:
        await trusting.close()
        await distrusting.close()
        server.close()


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"rights": ()},
        {"consent": "revoked"},
        {"purpose": "marketing"},
        {"facts": policy.ServiceFacts()},
    ],
    ids=["allowed", "no right", "revoked", "purpose", "no personal data"],
)
async def test_the_remote_engine_carries_input_and_result_unchanged(
    engine: RemoteOpaEngine, change: dict[str, object]
) -> None:
    embedded = policy.EmbeddedEngine(policy.PolicySet.load(policy.DEFAULT_POLICIES))
    local = embedded.decide_now(birth_support(**change))
    remote = await engine.decide(birth_support(**change))
    assert (remote.allow, remote.reasons, remote.obligations) == (
        local.allow,
        local.reasons,
        local.obligations,
    )


def test_unusable_tls_settings_are_refused_at_construction(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="OPA's TLS settings cannot be used"):
        RemoteOpaEngine("127.0.0.1", 8181, roots=tmp_path / "missing.pem")
    (tmp_path / "roots.pem").write_text("not a certificate")
    with pytest.raises(PolicyError, match="OPA's TLS settings cannot be used"):
        RemoteOpaEngine("127.0.0.1", 8181, roots=tmp_path / "roots.pem")
    with pytest.raises(PolicyError, match="needs HTTPS"):
        RemoteOpaEngine("127.0.0.1", 8181, client_certificate=(tmp_path / "c", tmp_path / "k"))
