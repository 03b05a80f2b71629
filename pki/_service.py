"""The CA service: ``pintu.v1.CertificateAuthority`` over TLS, and CRLs and OCSP over HTTP.

One process (``pintu ca serve``) runs both on one event loop:

* gRPC over TLS with the service's own certificate, on two ports: ``listen`` asks for no client
  certificate (Enroll with a token, GetTrustBundle); ``renewal_listen`` requires one, verified
  against the trusted roots (Renew, with the current authentication certificate).
* HTTP (``http_listen``): ``GET /crl/G<n>.crl`` (DER CRL of generation n's issuing CA),
  ``POST /ocsp`` and ``GET /ocsp/<base64 request>`` (RFC 6960), ``GET /healthz``.

Refusals are translated to gRPC statuses here, in one table, with the ``pintu-error-*``
trailers every Pintu service uses.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import logging
import urllib.parse
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pki._authority import AUTHENTICATION, SIGNING, Authority, IssuedCertificate, TrustBundle
from pki._errors import (
    CsrIdentityMismatch,
    CsrMalformed,
    CsrSignatureInvalid,
    KeyRejected,
    LedgerError,
    OcspIssuerUnknown,
    OcspRequestInvalid,
    PkiError,
    RenewalRefused,
    TokenExpired,
    TokenUnknown,
    TokenUsed,
)
from pki._folder import CaFolder
from pki._ledger import CaLedger
from proto import error_trailers
from proto.pintu.v1 import ca_pb2, errors_pb2

LOGGER = logging.getLogger("pintu.ca")


class CaInternalError(PkiError):
    """An unexpected error inside the CA service (details in its log)."""

    code = "internal_error"


_S = grpc.StatusCode
# The one place a CA refusal becomes a gRPC status.
STATUSES: dict[type[PkiError], grpc.StatusCode] = {
    TokenUnknown: _S.UNAUTHENTICATED,
    TokenExpired: _S.UNAUTHENTICATED,
    TokenUsed: _S.UNAUTHENTICATED,
    CsrMalformed: _S.INVALID_ARGUMENT,
    CsrSignatureInvalid: _S.INVALID_ARGUMENT,
    CsrIdentityMismatch: _S.PERMISSION_DENIED,
    KeyRejected: _S.INVALID_ARGUMENT,
    RenewalRefused: _S.PERMISSION_DENIED,
    LedgerError: _S.UNAVAILABLE,
    CaInternalError: _S.INTERNAL,
}
_KINDS = {
    ca_pb2.CERTIFICATE_KIND_AUTHENTICATION: AUTHENTICATION,
    ca_pb2.CERTIFICATE_KIND_SIGNING: SIGNING,
}
MAX_REQUEST_BYTES = 64 * 1024
RELOAD_INTERVAL = 1.0

Clock = Callable[[], dt.datetime]


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def _issued(issued: IssuedCertificate) -> ca_pb2.IssuedCertificate:
    not_after = Timestamp()
    not_after.FromDatetime(issued.certificate.not_valid_after_utc)
    return ca_pb2.IssuedCertificate(
        certificate=_der(issued.certificate),
        chain=[_der(c) for c in issued.chain],
        serial=str(issued.serial),
        not_after=not_after,
    )


def _bundle(trust: TrustBundle) -> ca_pb2.TrustBundle:
    return ca_pb2.TrustBundle(
        roots=[_der(c) for c in trust.roots],
        cross_certificates=[_der(c) for c in trust.cross_certificates],
        crl_url=trust.crl_url,
        ocsp_url=trust.ocsp_url,
        issuing_cas=[
            ca_pb2.IssuingCa(generation=number, certificate=_der(certificate))
            for number, certificate in trust.issuing
        ],
        renewal_address=trust.renewal_address,
    )


class CaService:
    """The CA service of one CA folder; ``start``, then ``stop``."""

    def __init__(self, folder: CaFolder, *, clock: Clock = lambda: dt.datetime.now(dt.UTC)):
        self._folder = folder
        self._clock = clock
        self._ledger: CaLedger | None = None
        self._authorities: dict[int, Authority] = {}
        self._active = 0
        self._state_stamp: float = 0.0
        self._refresh_due = dt.datetime.max.replace(tzinfo=dt.UTC)
        self._tls_loaded = 0
        self._grpc: grpc.aio.Server | None = None
        self._http: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._reloader: asyncio.Task[None] | None = None
        self.port = 0
        self.renewal_port = 0
        self.http_port = 0

    # -- state ---------------------------------------------------------------------------------

    def _load(self) -> None:
        assert self._ledger is not None
        folder = self._folder
        folder.refresh_online_certificates(self._clock())
        self._authorities = {n: folder.authority(n, self._ledger) for n in folder.trusted}
        self._active = folder.active
        self._state_stamp = (folder.path / "generations.json").stat().st_mtime
        self._refresh_due = folder.online_certificates_due()
        self._tls_loaded += 1
        LOGGER.info(
            "CA generations %s trusted, G%d issuing", sorted(self._authorities), self._active
        )

    async def _watch(self) -> None:
        """Pick up rollover steps and revocations made by ``pintu ca`` commands."""
        assert self._ledger is not None
        version = self._ledger.version()
        while True:
            await asyncio.sleep(RELOAD_INTERVAL)
            try:
                stamp = (self._folder.path / "generations.json").stat().st_mtime
                if stamp != self._state_stamp or self._clock() >= self._refresh_due:
                    self._load()  # re-issues the responder and TLS certificates when due
                current = self._ledger.version()
                if current != version:
                    version = current
                    for authority in self._authorities.values():
                        authority.forget_cached_status()
            except PkiError:
                LOGGER.exception("could not reload the CA's state; keeping the previous one")

    def _tls_configuration(self) -> Any:
        """The service's TLS certificate, and the roots client certificates (renewal) chain to."""
        folder = self._folder
        roots = b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in folder.trust_bundle().roots
        )
        return grpc.ssl_server_certificate_configuration(
            [
                (
                    (folder.path / "service/tls.key").read_bytes(),
                    (folder.path / "service/tls.pem").read_bytes(),
                )
            ],
            root_certificates=roots,
        )

    def _credentials(self, *, require_client_certificate: bool) -> grpc.ServerCredentials:
        """Credentials that take new TLS material after a rollover step (checked before every
        handshake: one integer comparison)."""
        served = self._tls_loaded

        def fetch() -> Any:
            nonlocal served
            if served == self._tls_loaded:
                return None
            served = self._tls_loaded
            return self._tls_configuration()

        return grpc.dynamic_ssl_server_credentials(
            self._tls_configuration(),
            fetch,
            require_client_authentication=require_client_certificate,
        )

    @property
    def authority(self) -> Authority:
        """The generation that issues now."""
        return self._authorities[self._active]

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the CA and start both listeners.

        Raises:
            PkiError: the CA's keys or state cannot be loaded, or an address cannot be bound.
        """
        folder = self._folder
        settings = folder.settings
        self._ledger = folder.ledger()
        self._load()
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers([self._handlers()])
        credentials = self._credentials(require_client_certificate=False)
        mutual = self._credentials(require_client_certificate=True)
        for setting, address, creds in (
            ("listen", settings.listen, credentials),
            ("renewal_listen", settings.renewal_listen, mutual),
        ):
            try:
                port = server.add_secure_port(address, creds)
            except RuntimeError as error:
                raise LedgerError(f"{setting}: cannot listen on {address}: {error}") from None
            if setting == "listen":
                self.port = port
            else:
                self.renewal_port = port
        await server.start()
        self._grpc = server
        http_host, _, http_port = settings.http_listen.rpartition(":")
        config = uvicorn.Config(
            self.http_app(),
            host=http_host.strip("[]"),
            port=int(http_port),
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._http = uvicorn.Server(config)
        self._http_task = asyncio.create_task(self._http.serve())
        while not self._http.started:
            if self._http_task.done():
                await self._grpc.stop(0)
                raise LedgerError(f"http_listen: cannot listen on {settings.http_listen}")
            await asyncio.sleep(0.01)
        self.http_port = self._http.servers[0].sockets[0].getsockname()[1]
        self._reloader = asyncio.create_task(self._watch())

    async def stop(self, grace: float = 5.0) -> None:
        """Stop both listeners (calls in flight may finish for ``grace`` seconds)."""
        if self._reloader is not None:
            self._reloader.cancel()
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            await self._http_task
        if self._ledger is not None:
            self._ledger.close()

    # -- gRPC ----------------------------------------------------------------------------------

    def _handlers(self) -> grpc.GenericRpcHandler[Any, Any]:
        prefix = "pintu.v1.CertificateAuthority"
        return grpc.method_handlers_generic_handler(
            prefix,
            {
                "Enroll": grpc.unary_unary_rpc_method_handler(
                    self._refusing(self._enroll, ca_pb2.EnrollRequest)
                ),
                "Renew": grpc.unary_unary_rpc_method_handler(
                    self._refusing(self._renew, ca_pb2.RenewRequest)
                ),
                "GetTrustBundle": grpc.unary_unary_rpc_method_handler(
                    self._refusing(self._trust, ca_pb2.GetTrustBundleRequest)
                ),
            },
        )

    def _refusing(
        self, answer: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any], request_type: Any
    ) -> Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Any]:
        async def handle(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes | None:
            try:
                request = request_type()
                try:
                    request.ParseFromString(raw)
                except Exception:  # protobuf's DecodeError
                    raise CsrMalformed("the request is not a valid message") from None
                response = answer(request, context)
                return bytes(response.SerializeToString())
            except Exception as error:
                if not isinstance(error, PkiError):
                    LOGGER.exception("unexpected error in the CA service")
                    error = CaInternalError("unexpected error; see the CA's log")
                status = STATUSES.get(type(error), _S.INVALID_ARGUMENT)
                LOGGER.warning(
                    "CA refused a request: %s: %s",
                    error.code,
                    error,
                    extra={
                        "pintu_event": {
                            "event": "ca_refused",
                            "code": error.code,
                            "peer": context.peer(),
                        }
                    },
                )
                context.set_code(status)
                context.set_details(str(error))
                context.set_trailing_metadata(
                    error_trailers(
                        error.code, errors_pb2.ERROR_ORIGIN_CERTIFICATE_AUTHORITY, str(error)
                    )
                )
                return None

        return handle

    def _enroll(
        self, request: ca_pb2.EnrollRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ca_pb2.EnrollResponse:
        authentication, signing = self.authority.enroll(
            request.token, request.authentication_csr, request.signing_csr, now=self._clock()
        )
        return ca_pb2.EnrollResponse(
            authentication=_issued(authentication),
            signing=_issued(signing),
            trust=_bundle(self.authority.trust),
        )

    def _renew(
        self, request: ca_pb2.RenewRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ca_pb2.RenewResponse:
        pem = list(context.auth_context().get("x509_pem_cert", ()))
        if not pem:
            raise RenewalRefused("renewal needs the current certificate (mutual TLS)")
        current = x509.load_pem_x509_certificate(pem[0])
        kind = _KINDS.get(request.kind)
        if kind is None:
            raise CsrMalformed("kind must be AUTHENTICATION or SIGNING")
        issued = self.authority.renew(current, kind, request.csr, now=self._clock())
        return ca_pb2.RenewResponse(
            certificate=_issued(issued), trust=_bundle(self.authority.trust)
        )

    def _trust(
        self, request: ca_pb2.GetTrustBundleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ca_pb2.TrustBundle:
        return _bundle(self.authority.trust)

    # -- HTTP ----------------------------------------------------------------------------------

    def http_app(self) -> Starlette:
        """The HTTP side: CRLs and the OCSP responder."""

        async def crl(request: Request) -> Response:
            name = request.path_params["name"]
            number = name.removeprefix("G").removesuffix(".crl")
            known = number.isascii() and number.isdigit()
            authority = self._authorities.get(int(number)) if known else None
            if authority is None or not name.endswith(".crl"):
                return Response("no such CRL\n", 404, media_type="text/plain")
            return Response(authority.crl(self._clock()), media_type="application/pkix-crl")

        async def ocsp_post(request: Request) -> Response:
            body = await request.body()
            if len(body) > MAX_REQUEST_BYTES:
                return self._ocsp_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
            return self._ocsp_answer(body)

        async def ocsp_get(request: Request) -> Response:
            encoded = urllib.parse.unquote(request.path_params["encoded"])
            try:
                body = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                return self._ocsp_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
            return self._ocsp_answer(body)

        async def healthz(request: Request) -> Response:
            return Response("ok\n", media_type="text/plain")

        return Starlette(
            routes=[
                Route("/crl/{name}", crl, methods=["GET"]),
                Route("/ocsp", ocsp_post, methods=["POST"]),
                Route("/ocsp/{encoded:path}", ocsp_get, methods=["GET"]),
                Route("/healthz", healthz, methods=["GET"]),
            ]
        )

    def _ocsp_answer(self, body: bytes) -> Response:
        now = self._clock()
        for authority in self._authorities.values():
            try:
                authority.check_ocsp_request(body)
            except OcspRequestInvalid:
                return self._ocsp_unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
            except OcspIssuerUnknown:
                continue
            return Response(authority.ocsp(body, now), media_type="application/ocsp-response")
        return self._ocsp_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)

    @staticmethod
    def _ocsp_unsuccessful(status: ocsp.OCSPResponseStatus) -> Response:
        return Response(
            ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
                serialization.Encoding.DER
            ),
            media_type="application/ocsp-response",
        )
