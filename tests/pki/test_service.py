"""The CA service for real, on 127.0.0.1: gRPC over TLS and HTTP, checked with CaClient, raw gRPC
calls, httpx, and OpenSSL's ``ocsp`` and ``crl`` commands."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import subprocess
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import grpc
import grpc.aio
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

import pintu
import pki
from proto import ERROR_CODE_KEY, SecurityServerId
from proto.pintu.v1 import ca_pb2

pytestmark = pytest.mark.integration

OPENSSL = "/usr/bin/openssl"
SHA1 = hashes.SHA1()
# The service looks for revocations and rollover steps of other processes once a second.
PICK_UP = 5.0


free_port = pintu.free_port


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPENSSL, *map(str, args)], capture_output=True, text=True, check=False, timeout=30
    )


def write_pem(path: Path, *certificates: x509.Certificate) -> Path:
    path.write_bytes(pki.certificate_pem(*certificates))
    return path


def der(message: ocsp.OCSPRequest) -> bytes:
    return message.public_bytes(serialization.Encoding.DER)


def ocsp_request(
    certificate: x509.Certificate,
    issuer: x509.Certificate,
    nonce: bytes | None = None,
) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, SHA1)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return der(builder.build())


@dataclass
class RunningCa:
    """A CA folder and its service, running."""

    folder: pki.CaFolder
    service: pki.CaService
    files: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.service.port}"

    @property
    def renewal_address(self) -> str:
        return f"127.0.0.1:{self.service.renewal_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.service.http_port}"

    @property
    def anchors(self) -> bytes:
        return pki.certificate_pem(*self.folder.trust_bundle().roots)

    def client(self, anchors: bytes | None = None) -> pki.CaClient:
        return pki.CaClient(self.address, anchors or self.anchors)

    def token(self, server: SecurityServerId) -> str:
        """A token as ``pintu ca token`` makes it (another connection to the ledger)."""
        with closing(self.folder.ledger()) as ledger:
            return self.folder.authority(self.folder.active, ledger).create_token(
                server, actor="registrar@demo", now=dt.datetime.now(dt.UTC)
            )

    def revoke(self, serial: int, reason: str = "key_compromise") -> None:
        """Revoke as ``pintu ca revoke`` does (another connection to the ledger)."""
        with closing(self.folder.ledger()) as ledger:
            self.folder.authority(self.folder.active, ledger).revoke(
                serial, reason, actor="ca-admin", now=dt.datetime.now(dt.UTC)
            )

    def serials(self) -> list[int]:
        with closing(self.folder.ledger()) as ledger:
            return [record.serial for record in ledger.certificates()]

    def pem(self, name: str, *certificates: x509.Certificate) -> Path:
        return write_pem(self.files / name, *certificates)


def create_folder(path: Path, now: dt.datetime) -> pki.CaFolder:
    # The HTTP and renewal addresses are published (in certificates and the trust bundle):
    # they must be known before the service starts.
    http = free_port()
    settings = pki.CaSettings(
        "DEMO",
        listen="127.0.0.1:0",
        http_listen=f"127.0.0.1:{http}",
        renewal_listen=f"127.0.0.1:{free_port()}",
        public_url=f"http://127.0.0.1:{http}",
    )
    return pki.CaFolder.create(
        path, settings, pki.FileKeyStorage(path, None), now=now, actor="ca-admin"
    )


@asynccontextmanager
async def serving(
    folder: pki.CaFolder, files: Path, clock: Callable[[], dt.datetime] | None = None
) -> AsyncIterator[RunningCa]:
    service = pki.CaService(folder) if clock is None else pki.CaService(folder, clock=clock)
    await service.start()
    try:
        yield RunningCa(folder, service, files)
    finally:
        await service.stop(0)


@pytest.fixture
async def running_ca(tmp_path: Path, now: dt.datetime) -> AsyncIterator[RunningCa]:
    async with serving(create_folder(tmp_path / "ca", now), tmp_path) as running:
        yield running


@dataclass(frozen=True)
class Enrolled:
    authentication: pki.Credential
    signing: pki.Credential
    trust: pki.TrustUpdate


@pytest.fixture
async def enrolled(running_ca: RunningCa, server: SecurityServerId) -> Enrolled:
    return Enrolled(*await running_ca.client().enroll(running_ca.token(server), server))


@asynccontextmanager
async def raw_channel(
    address: str, anchors: bytes, identity: pki.TlsIdentity | None = None
) -> AsyncIterator[grpc.aio.Channel]:
    """A TLS channel to the CA service, with ``identity`` as client certificate if given."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=anchors,
        private_key=identity.private_key if identity else None,
        certificate_chain=identity.certificate_chain if identity else None,
    )
    channel = grpc.aio.secure_channel(
        address, credentials, options=[("grpc.ssl_target_name_override", pki.SERVICE_TLS_NAME)]
    )
    try:
        yield channel
    finally:
        await channel.close(None)


async def refused_call(
    ca: RunningCa,
    method: str,
    body: bytes,
    *,
    renewal: bool = False,
    identity: pki.TlsIdentity | None = None,
) -> tuple[grpc.StatusCode, object]:
    """The status and ``pintu-error-code`` trailer of a call the service must refuse."""
    address = ca.renewal_address if renewal else ca.address
    async with raw_channel(address, ca.anchors, identity) as channel:
        call = channel.unary_unary(f"/pintu.v1.CertificateAuthority/{method}", None, None)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(body, timeout=10)
    trailers = cast(Iterable[tuple[str, object]], caught.value.trailing_metadata() or ())
    return caught.value.code(), dict(trailers).get(ERROR_CODE_KEY)


def renew_request(uri: str) -> bytes:
    return ca_pb2.RenewRequest(
        kind=ca_pb2.CERTIFICATE_KIND_AUTHENTICATION,
        csr=pki.certificate_request(pki.generate_key(), uri),
    ).SerializeToString()


async def openssl_ocsp(ca: RunningCa, leaf: x509.Certificate, *options: str) -> str:
    """``openssl ocsp`` asking the service about ``leaf``; what it prints."""
    generation = ca.folder.generation(1)
    result = await asyncio.to_thread(
        openssl,
        "ocsp",
        *options,
        "-issuer",
        ca.pem("issuing.pem", generation.issuing),
        "-cert",
        ca.pem("leaf.pem", leaf),
        "-url",
        f"{ca.http}/ocsp",
        "-CAfile",
        ca.pem("root.pem", generation.root),
        "-resp_text",
    )
    assert result.returncode == 0, result.stderr
    assert "Response verify OK" in result.stderr
    return result.stdout


async def eventually(check: Callable[[], object]) -> None:
    """Wait until ``check()`` is true, for at most PICK_UP seconds."""
    deadline = asyncio.get_running_loop().time() + PICK_UP
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not picked up in time"
        await asyncio.sleep(0.1)


def http_get(url: str) -> httpx.Response:
    with httpx.Client(timeout=10) as http:
        return http.get(url)


async def post_ocsp(ca: RunningCa, body: bytes) -> ocsp.OCSPResponse:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(
            f"{ca.http}/ocsp", content=body, headers={"Content-Type": "application/ocsp-request"}
        )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(answer.content)


async def get_ocsp(ca: RunningCa, path: str) -> ocsp.OCSPResponse:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{ca.http}/ocsp/{path}")
    assert answer.status_code == 200
    return ocsp.load_der_ocsp_response(answer.content)


# --- enrollment, renewal and the trust bundle over gRPC -----------------------------------------


async def test_enrollment_through_the_client_over_tls(
    running_ca: RunningCa, server: SecurityServerId
) -> None:
    authentication, signing, trust = await running_ca.client().enroll(
        running_ca.token(server), server
    )
    generation = running_ca.folder.generation(1)
    assert pki.certificate_identity(authentication.certificate) == server
    assert pki.certificate_identity(signing.certificate) == server.owner
    for credential in (authentication, signing):
        assert credential.chain == (generation.issuing,)
        assert credential.certificate.public_key() == credential.key.public_key()
        credential.certificate.verify_directly_issued_by(generation.issuing)
    assert authentication.key.public_key() != signing.key.public_key()
    assert trust.roots == (generation.root,)
    assert running_ca.serials() == [
        authentication.certificate.serial_number,
        signing.certificate.serial_number,
    ]


async def test_second_enrollment_with_the_same_token_is_refused_token_used(
    running_ca: RunningCa, server: SecurityServerId
) -> None:
    client, token = running_ca.client(), running_ca.token(server)
    await client.enroll(token, server)
    before = running_ca.serials()
    with pytest.raises(pki.CaRefused) as caught:
        await client.enroll(token, server)
    assert caught.value.reason == "token_used"
    assert running_ca.serials() == before


async def test_enrollment_with_an_unknown_token_is_refused_token_unknown(
    running_ca: RunningCa, server: SecurityServerId
) -> None:
    with pytest.raises(pki.CaRefused) as caught:
        await running_ca.client().enroll("pintu-enroll-made-up", server)
    assert caught.value.reason == "token_unknown"
    assert running_ca.serials() == []


async def test_enrollment_for_another_server_than_the_token_is_refused(
    running_ca: RunningCa, server: SecurityServerId
) -> None:
    token = running_ca.token(server)
    with pytest.raises(pki.CaRefused) as caught:
        await running_ca.client().enroll(token, server.owner.server("ss2"))
    assert caught.value.reason == "csr_identity_mismatch"
    await running_ca.client().enroll(token, server)


async def test_renewal_over_mutual_tls(
    running_ca: RunningCa, enrolled: Enrolled, server: SecurityServerId
) -> None:
    # As a gateway does: the renewal address comes from the trust bundle it was given.
    assert enrolled.trust.renewal_address == running_ca.renewal_address
    current = enrolled.authentication
    client = pki.CaClient(running_ca.address, running_ca.anchors, enrolled.trust.renewal_address)
    renewed, trust = await client.renew(current.identity(running_ca.anchors), server.uri)
    assert pki.certificate_identity(renewed.certificate) == server
    assert renewed.key.public_key() != current.key.public_key()
    assert renewed.chain == current.chain
    assert trust.roots == running_ca.folder.trust_bundle().roots
    with closing(running_ca.folder.ledger()) as ledger:
        record = ledger.certificate(renewed.certificate.serial_number)
    assert record is not None
    assert record.renewed_from == current.certificate.serial_number


async def test_renewal_of_the_signing_certificate_over_mutual_tls(
    running_ca: RunningCa, enrolled: Enrolled, server: SecurityServerId
) -> None:
    client = pki.CaClient(running_ca.address, running_ca.anchors, running_ca.renewal_address)
    renewed, _ = await client.renew(
        enrolled.authentication.identity(running_ca.anchors), server.owner.uri, signing=True
    )
    assert pki.certificate_identity(renewed.certificate) == server.owner
    usage = renewed.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [pki.DOCUMENT_SIGNING]


async def test_renewal_without_a_client_certificate_is_refused(
    running_ca: RunningCa, enrolled: Enrolled, server: SecurityServerId
) -> None:
    before = running_ca.serials()
    status, code = await refused_call(running_ca, "Renew", renew_request(server.uri))
    assert (status, code) == (grpc.StatusCode.PERMISSION_DENIED, "renewal_refused")
    assert running_ca.serials() == before


async def test_renewal_port_refuses_a_connection_without_a_client_certificate(
    running_ca: RunningCa, enrolled: Enrolled, server: SecurityServerId
) -> None:
    before = running_ca.serials()
    status, code = await refused_call(running_ca, "Renew", renew_request(server.uri), renewal=True)
    assert (status, code) == (grpc.StatusCode.UNAVAILABLE, None)
    assert running_ca.serials() == before


async def test_renewal_port_refuses_a_client_certificate_of_another_ca(
    running_ca: RunningCa, enrolled: Enrolled, server: SecurityServerId, now: dt.datetime
) -> None:
    stranger = pki.CertificateAuthority.create("DEMO", now=now, lifetime=dt.timedelta(days=1))
    key = pki.generate_key()
    forged = stranger.issue_server_certificate(
        server, key.public_key(), now=now, lifetime=dt.timedelta(hours=1)
    )
    identity = pki.TlsIdentity.build(key, [forged], [stranger.certificate])
    before = running_ca.serials()
    status, code = await refused_call(
        running_ca, "Renew", renew_request(server.uri), renewal=True, identity=identity
    )
    assert (status, code) == (grpc.StatusCode.UNAVAILABLE, None)
    assert running_ca.serials() == before


async def test_renewal_with_a_revoked_certificate_is_refused(
    running_ca: RunningCa, enrolled: Enrolled, server: SecurityServerId
) -> None:
    running_ca.revoke(enrolled.authentication.certificate.serial_number)
    before = running_ca.serials()
    client = pki.CaClient(running_ca.address, running_ca.anchors, running_ca.renewal_address)
    with pytest.raises(pki.CaRefused) as caught:
        await client.renew(enrolled.authentication.identity(running_ca.anchors), server.uri)
    assert caught.value.reason == "renewal_refused"
    assert running_ca.serials() == before


async def test_renewal_port_refuses_a_signing_certificate_as_client_certificate(
    running_ca: RunningCa, enrolled: Enrolled, server: SecurityServerId
) -> None:
    # The signing certificate has no clientAuth usage: the TLS handshake already fails.
    before = running_ca.serials()
    status, code = await refused_call(
        running_ca,
        "Renew",
        renew_request(server.uri),
        renewal=True,
        identity=enrolled.signing.identity(running_ca.anchors),
    )
    assert (status, code) == (grpc.StatusCode.UNAVAILABLE, None)
    assert running_ca.serials() == before


@pytest.mark.parametrize("method", ["Enroll", "Renew", "GetTrustBundle"])
async def test_garbage_to_each_method_is_invalid_argument_with_a_code(
    running_ca: RunningCa, method: str
) -> None:
    # 0xff starts a field tag whose varint never ends: no protobuf parser accepts it.
    status, code = await refused_call(running_ca, method, b"\xff\xff\xff\xff garbage")
    assert (status, code) == (grpc.StatusCode.INVALID_ARGUMENT, "csr_malformed")
    assert running_ca.serials() == []


async def test_enrollment_with_a_key_of_an_unknown_algorithm_is_refused_with_a_code(
    running_ca: RunningCa, server: SecurityServerId
) -> None:
    token = running_ca.token(server)
    valid = pki.certificate_request(pki.generate_key(), server.uri)
    # id-ecPublicKey (1.2.840.10045.2.1) becomes 1.2.840.10045.2.9, an algorithm nobody defined.
    unknown = valid.replace(
        bytes.fromhex("06072a8648ce3d0201"), bytes.fromhex("06072a8648ce3d0209")
    )
    assert unknown != valid
    request = ca_pb2.EnrollRequest(
        token=token,
        authentication_csr=unknown,
        signing_csr=pki.certificate_request(pki.generate_key(), server.owner.uri),
    )
    status, code = await refused_call(running_ca, "Enroll", request.SerializeToString())
    assert (status, code) == (grpc.StatusCode.INVALID_ARGUMENT, "key_rejected")
    assert running_ca.serials() == []


async def test_trust_bundle_lists_the_roots_and_issuing_cas(running_ca: RunningCa) -> None:
    trust = await running_ca.client().trust_bundle()
    generation = running_ca.folder.generation(1)
    public_url = running_ca.folder.settings.public_url
    assert trust.roots == (generation.root,)
    assert trust.issuing == ((1, generation.issuing),)
    assert trust.cross_certificates == ()
    assert (trust.crl_url, trust.ocsp_url) == (f"{public_url}/crl", f"{public_url}/ocsp")


async def test_trust_bundle_follows_a_rollover_made_by_another_process(
    running_ca: RunningCa, now: dt.datetime
) -> None:
    running_ca.folder.rollover_begin(now=now, actor="ca-admin")
    old, new = running_ca.folder.generation(1), running_ca.folder.generation(2)
    client = running_ca.client(pki.certificate_pem(old.root))
    bundles: list[pki.TrustUpdate] = []

    async def fetch() -> None:
        bundles.append(await client.trust_bundle())

    await fetch()
    deadline = asyncio.get_running_loop().time() + PICK_UP
    while bundles[-1].roots != (old.root, new.root):
        assert asyncio.get_running_loop().time() < deadline, "rollover not picked up"
        await asyncio.sleep(0.1)
        await fetch()
    assert bundles[-1].cross_certificates == (new.cross,)
    assert bundles[-1].issuing == ((1, old.issuing), (2, new.issuing))
    assert pki.accepted_roots([old.root], bundles[-1], now) == [old.root, new.root]


async def test_after_a_rollover_the_service_is_reachable_with_only_the_new_root(
    running_ca: RunningCa, now: dt.datetime
) -> None:
    # Gateways drop the old root once the bundle stops listing it (accepted_roots); from then
    # on they reach the CA service with the new root only.
    folder = running_ca.folder
    folder.rollover_begin(now=now, actor="ca-admin")
    folder.rollover_switch(now=now, actor="ca-admin")
    folder.rollover_retire(now=now, actor="ca-admin")
    new = folder.generation(2)
    await eventually(lambda: running_ca.service.authority.issuing.certificate == new.issuing)
    trust = await running_ca.client(pki.certificate_pem(new.root)).trust_bundle()
    assert trust.roots == (new.root,)


async def test_after_a_rollover_a_certificate_of_the_new_generation_renews(
    running_ca: RunningCa, server: SecurityServerId, now: dt.datetime
) -> None:
    # The service started trusting G1 only; G2 certificates must be accepted on the renewal
    # port once the service has picked up the rollover.
    folder = running_ca.folder
    folder.rollover_begin(now=now, actor="ca-admin")
    folder.rollover_switch(now=now, actor="ca-admin")
    new = folder.generation(2)
    await eventually(lambda: running_ca.service.authority.issuing.certificate == new.issuing)
    authentication, _, trust = await running_ca.client().enroll(running_ca.token(server), server)
    assert authentication.chain == (new.issuing,)
    anchors = pki.certificate_pem(*trust.roots)
    client = pki.CaClient(running_ca.address, anchors, trust.renewal_address)
    renewed, _ = await client.renew(authentication.identity(anchors), server.uri)
    assert renewed.chain == (new.issuing,)


# --- OCSP over HTTP, asked by OpenSSL -----------------------------------------------------------


async def test_openssl_ocsp_reports_good(running_ca: RunningCa, enrolled: Enrolled) -> None:
    shown = await openssl_ocsp(running_ca, enrolled.authentication.certificate)
    assert f"{running_ca.files / 'leaf.pem'}: good" in shown
    assert "OCSP Response Status: successful (0x0)" in shown
    assert "Responder Id:" in shown


async def test_openssl_ocsp_with_sha256_certificate_ids_reports_good(
    running_ca: RunningCa, enrolled: Enrolled
) -> None:
    shown = await openssl_ocsp(running_ca, enrolled.signing.certificate, "-sha256")
    assert f"{running_ca.files / 'leaf.pem'}: good" in shown
    assert "Hash Algorithm: sha256" in shown


async def test_openssl_ocsp_reports_revoked_after_revocation(
    running_ca: RunningCa, enrolled: Enrolled
) -> None:
    certificate = enrolled.authentication.certificate
    assert "leaf.pem: good" in await openssl_ocsp(running_ca, certificate)
    running_ca.revoke(certificate.serial_number)
    shown = await openssl_ocsp(running_ca, certificate)
    assert f"{running_ca.files / 'leaf.pem'}: revoked" in shown
    assert "Reason: keyCompromise" in shown


async def test_cached_ocsp_answer_follows_a_revocation_by_another_process(
    running_ca: RunningCa, enrolled: Enrolled
) -> None:
    # Without a nonce the service answers from its cache: the revocation must still show.
    certificate = enrolled.authentication.certificate
    asked = ocsp_request(certificate, running_ca.folder.generation(1).issuing)
    first = await post_ocsp(running_ca, asked)
    assert first.certificate_status is ocsp.OCSPCertStatus.GOOD
    running_ca.revoke(certificate.serial_number)
    statuses: list[ocsp.OCSPCertStatus] = []
    deadline = asyncio.get_running_loop().time() + PICK_UP
    while ocsp.OCSPCertStatus.REVOKED not in statuses:
        assert asyncio.get_running_loop().time() < deadline, "revocation not picked up"
        await asyncio.sleep(0.1)
        statuses.append((await post_ocsp(running_ca, asked)).certificate_status)


async def test_ocsp_get_with_an_escaped_request_reports_good(
    running_ca: RunningCa, enrolled: Enrolled
) -> None:
    certificate = enrolled.authentication.certificate
    issuing = running_ca.folder.generation(1).issuing
    asked = ocsp_request(certificate, issuing, nonce=b"\x07" * 16)
    response = await get_ocsp(
        running_ca, urllib.parse.quote(base64.b64encode(asked).decode(), safe="")
    )
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == certificate.serial_number
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"\x07" * 16
    verifier = pki.StatusVerifier([issuing], pki.DEFAULT_MAX_AGE)
    answer = response.public_bytes(serialization.Encoding.DER)
    verifier.check(answer, now=dt.datetime.now(dt.UTC), serial=certificate.serial_number)


async def test_ocsp_get_with_an_unescaped_request_reports_good(
    running_ca: RunningCa, enrolled: Enrolled
) -> None:
    # Clients often send base64 as is: '/' and '+' in the path must survive.
    certificate = enrolled.authentication.certificate
    issuing = running_ca.folder.generation(1).issuing
    for counter in range(10_000):
        encoded = base64.b64encode(
            ocsp_request(certificate, issuing, nonce=counter.to_bytes(16, "big"))
        ).decode()
        if "/" in encoded and "+" in encoded:
            break
    else:
        pytest.fail("no request whose base64 holds both '/' and '+'")
    response = await get_ocsp(running_ca, encoded)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD


@pytest.mark.parametrize("path", ["not*base64!", "QUJD", "%3D%3D%3D"], ids=str)
async def test_ocsp_get_with_a_bad_request_is_malformed_request(
    running_ca: RunningCa, path: str
) -> None:
    response = await get_ocsp(running_ca, path)
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


@pytest.mark.parametrize(
    "body",
    [b"garbage, not an OCSP request", b"", b"\x30" * (64 * 1024 + 1)],
    ids=["garbage", "empty", "oversized"],
)
async def test_ocsp_post_with_a_bad_request_is_malformed_request(
    running_ca: RunningCa, body: bytes
) -> None:
    response = await post_ocsp(running_ca, body)
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


async def test_ocsp_post_about_another_ca_is_unauthorized(
    running_ca: RunningCa, server: SecurityServerId, now: dt.datetime
) -> None:
    stranger = pki.CertificateAuthority.create("FOREIGN", now=now, lifetime=dt.timedelta(days=1))
    leaf = stranger.issue_server_certificate(
        server, pki.generate_key().public_key(), now=now, lifetime=dt.timedelta(hours=1)
    )
    response = await post_ocsp(running_ca, ocsp_request(leaf, stranger.certificate))
    assert response.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


async def test_service_keeps_its_ocsp_responder_certificate_valid_while_running(
    tmp_path: Path, now: dt.datetime
) -> None:
    # The responder certificate lives 30 days and is re-issued at half-life: a service that
    # runs for a month must not sign with an expired one.
    moment = [now]
    folder = create_folder(tmp_path / "ca", now)
    async with serving(folder, tmp_path, clock=lambda: moment[0]) as running:
        moment[0] = now + dt.timedelta(days=31)
        issuing = folder.generation(1).issuing
        name_hash, key_hash = pki.issuer_hashes(issuing, SHA1)
        asked = der(
            ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(name_hash, key_hash, 1234, SHA1)
            .build()
        )
        # Give a periodic refresh (the service looks once a second) a chance to act.
        deadline = asyncio.get_running_loop().time() + 2.5
        while True:
            response = await post_ocsp(running, asked)
            responder = response.certificates[0]
            assert response.this_update_utc == moment[0]
            if responder.not_valid_after_utc > moment[0]:
                break
            assert asyncio.get_running_loop().time() < deadline, (
                f"the service signs with a responder certificate that expired at"
                f" {responder.not_valid_after_utc}"
            )
            await asyncio.sleep(0.2)
        responder.verify_directly_issued_by(issuing)


# --- CRLs over HTTP -----------------------------------------------------------------------------


async def test_openssl_reads_the_crl_served_over_http(
    running_ca: RunningCa, enrolled: Enrolled
) -> None:
    serial = enrolled.authentication.certificate.serial_number
    running_ca.revoke(serial)
    answer = await asyncio.to_thread(http_get, f"{running_ca.http}/crl/G1.crl")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pkix-crl"
    path = running_ca.files / "G1.crl"
    path.write_bytes(answer.content)
    shown = await asyncio.to_thread(
        openssl, "crl", "-inform", "DER", "-in", path, "-noout", "-text"
    )
    assert shown.returncode == 0, shown.stderr
    assert f"{serial:X}" in shown.stdout
    assert "Key Compromise" in shown.stdout
    issuing = running_ca.pem("issuing.pem", running_ca.folder.generation(1).issuing)
    verified = await asyncio.to_thread(
        openssl, "crl", "-inform", "DER", "-in", path, "-noout", "-verify", "-CAfile", issuing
    )
    assert verified.returncode == 0, verified.stderr
    assert "verify OK" in verified.stdout + verified.stderr


async def test_crl_follows_a_revocation_by_another_process(
    running_ca: RunningCa, enrolled: Enrolled
) -> None:
    url = f"{running_ca.http}/crl/G1.crl"
    first = x509.load_der_x509_crl((await asyncio.to_thread(http_get, url)).content)
    assert len(first) == 0
    serial = enrolled.authentication.certificate.serial_number
    running_ca.revoke(serial)
    deadline = asyncio.get_running_loop().time() + PICK_UP
    while True:
        crl = x509.load_der_x509_crl((await asyncio.to_thread(http_get, url)).content)
        if crl.get_revoked_certificate_by_serial_number(serial) is not None:
            break
        assert asyncio.get_running_loop().time() < deadline, "revocation not picked up"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("name", ["G2.crl", "G1", "G1.pem", "root.crl", "G.crl", "G-1.crl"])
async def test_unknown_crl_name_is_not_found(running_ca: RunningCa, name: str) -> None:
    answer = await asyncio.to_thread(http_get, f"{running_ca.http}/crl/{name}")
    assert answer.status_code == 404


async def test_crl_name_with_a_non_ascii_digit_is_not_found(running_ca: RunningCa) -> None:
    # "²" is a digit to str.isdigit() but not to int().
    answer = await asyncio.to_thread(http_get, f"{running_ca.http}/crl/G%C2%B2.crl")
    assert answer.status_code == 404
