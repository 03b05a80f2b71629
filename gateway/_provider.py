"""The provider side: an exchange in from another member's security server, out to the backend.

Steps for every call on the peer listener (mTLS, the federation's CA):

1. the TLS peer must be a registered security server identified by its certificate, over TLS 1.3
   (``peer_not_authenticated``, ``peer_unknown``);
2. the exchange header must be present and well-formed, name the same method and the TLS peer as
   the consumer server (``exchange_header_invalid``);
3. the TLS peer must be a server of the member named as the client (``peer_member_mismatch``);
4. the provider must be served here (``provider_not_served``) and the service configured
   (``service_unknown``);
5. the provider's policy must allow the exchange (``access_denied``, ``policy_error``; see
   gateway._policy);
6. the call goes to the backend with the verified ``pintu-*`` values, the caller's deadline (capped
   by the service's timeout) and other metadata; responses and status come back unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.protobuf.message import DecodeError

from audit import Digest
from gateway._audit import ExchangeAudit
from gateway._channels import BackendChannels
from gateway._configuration import CurrentConfiguration
from gateway._errors import ErrorCode, GatewayError, Origin, refusal_trailers, status_refusal
from gateway._events import LOGGER, log_refusal
from gateway._metadata import (
    CLIENT_KEY,
    EXCHANGE_HEADER_KEY,
    ISSUE_KEY,
    MESSAGE_ID_KEY,
    OCSP_KEY,
    PURPOSE_KEY,
    SUBJECT_KEY,
    USER_KEY,
    Metadata,
    passthrough,
    response_passthrough,
)
from gateway._metaservices import LIST_ALLOWED_SERVICES, service_info
from gateway._policy import Authorizer
from gateway._relay import CallerGone, RequestPump, own_staple, relay
from gateway._seals import MARKER_BYTES, PROVIDER, ProviderSeals
from gateway._settings import GatewaySettings, LocalService
from pki import CertificateIdentityError, CertificateKeeper, StatusRefused, identity_from_uris
from proto import (
    IdentifierError,
    MethodPath,
    SecurityServerId,
    SubsystemId,
    parse_purpose,
    parse_reference,
    parse_subject,
)
from proto.pintu.v1 import exchange_pb2, metaservices_pb2
from registry import GlobalConfiguration, Service

_MESSAGE_ID_LENGTH = 32
_SERIAL_CACHE = 4096
# A refused request's messages read before the refusal is sent, at most.
_DRAIN_SECONDS = 0.5
_DRAIN_MESSAGES = 16


async def _drain(requests: AsyncIterator[bytes]) -> None:
    """Read what the consumer's security server still sends of a refused request (within
    bounds), so that its last writes do not race the refusal: gRPC reports a message written
    after the call ended as an internal error in place of the refusal."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_DRAIN_SECONDS):
            count = 0
            async for _ in requests:
                count += 1
                if count >= _DRAIN_MESSAGES:
                    break


class _Exchange:
    """What the provider side learnt about one exchange, for its refusal and its log."""

    __slots__ = (
        "client",
        "forwarding",
        "message_id",
        "peer",
        "provider",
        "purpose",
        "recorded",
        "subject",
    )

    def __init__(self) -> None:
        self.message_id = ""
        self.client = ""
        self.peer = ""
        self.provider = ""
        self.purpose = ""
        self.subject = ""
        # Whether the exchange's request was recorded (its outcome then says how it ended).
        self.recorded = False
        # Whether the request messages went on their way to the backend.
        self.forwarding = False


class ProviderSide:
    """Handles calls on the peer listener."""

    def __init__(
        self,
        settings: GatewaySettings,
        configuration: CurrentConfiguration,
        backends: BackendChannels,
        keeper: CertificateKeeper,
        authorizer: Authorizer,
        clock: Callable[[], float],
        audit: ExchangeAudit | None = None,
    ) -> None:
        self._keeper = keeper
        self._authorizer = authorizer
        self._audit = audit
        self._clock = clock
        # The peer certificates seen, by their PEM: their serial numbers and SHA-256.
        self._seen: dict[bytes, tuple[int, bytes]] = {}
        self._settings = settings
        self._configuration = configuration
        self._backends = backends
        self._limit = settings.limits.max_message_bytes
        self._services: dict[tuple[SubsystemId, str], LocalService] = {
            (service.provider, service.service_name): local
            for service, local in settings.services.items()
        }
        self._served = {service.provider for service in settings.services}

    def handler(self, method: str, metadata: Metadata) -> grpc.RpcMethodHandler[Any, Any]:
        """The handler for one incoming call."""
        return grpc.stream_stream_rpc_method_handler(
            functools.partial(self._exchange, method, metadata)
        )

    async def _exchange(
        self,
        method: str,
        metadata: Metadata,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        seen = _Exchange()
        try:
            now = self._clock()
            conf = self._configuration.usable(now)
            peer, serial = self._authenticate(context, conf)
            seen.peer = str(peer)
            header = self._read_header(metadata, method, peer)
            seen.message_id = header.message_id
            seen.purpose = header.purpose
            seen.subject = header.subject
            client = SubsystemId.from_proto(header.client)
            seen.client = str(client)
            if client.member != peer.owner:
                raise GatewayError(
                    ErrorCode.PEER_MEMBER_MISMATCH,
                    f"security server {peer} is not a server of {client.member}",
                    "pintu-client",
                )
            if not conf.has_subsystem(client):
                raise GatewayError(
                    ErrorCode.CLIENT_UNKNOWN,
                    f"{client} is not a registered subsystem",
                    "pintu-client",
                )
            try:
                self._keeper.verifier.check(
                    header.ocsp_response,
                    now=dt.datetime.fromtimestamp(now, dt.UTC),
                    serial=serial,
                )
            except StatusRefused as error:
                raise status_refusal(error) from None
            if method == LIST_ALLOWED_SERVICES:
                await self._list_allowed(conf, header, requests, context)
                return
            seen.provider = str(SubsystemId.from_proto(header.provider))
            service, registered = self._service(conf, header, method)
            authorization = await self._authorizer.authorize(
                conf,
                client=client,
                client_server=peer,
                service=registered,
                method=method.rsplit("/", 1)[-1],
                purpose=header.purpose,
                subject=header.subject,
                now=now,
            )
            audit = self._audit
            if audit is None:
                seen.forwarding = True
                await self._forward(service, header, metadata, requests, context)
                return
            keep_body = "log_body" in authorization.decision.obligations
            if keep_body and not audit.keeps_bodies:
                raise GatewayError(
                    ErrorCode.POLICY_ERROR,
                    "the policy asks to keep this exchange's body, and this security server has"
                    " no [audit] body_key to encrypt it with",
                )
            if not header.seal_marker:
                raise GatewayError(
                    ErrorCode.SIGNATURE_MISSING,
                    "the request is not sealed: the consumer's security server must seal it",
                    EXCHANGE_HEADER_KEY,
                )
            await audit.request(
                role=PROVIDER,
                message_id=header.message_id,
                method=method,
                client=seen.client,
                client_server=seen.peer,
                provider=seen.provider,
                purpose=header.purpose,
                subject=header.subject,
                decision_id=authorization.decision.decision_id,
                consent_id=authorization.consent_id,
                peer_certificate=f"{serial:x}",
            )
            seen.recorded = True
            seals = ProviderSeals(audit, header, client.member, self._clock)
            if keep_body:
                seals.bodies = audit.bodies(PROVIDER, header.message_id)
            status = "UNKNOWN"
            try:
                seen.forwarding = True
                await self._forward(service, header, metadata, requests, context, seals)
                status = "ANSWERED"
            except GatewayError as error:
                status = error.code.label
                raise
            except CallerGone:
                status = "CALLER_GONE"
                raise
            finally:
                seals.record_end(status)
        except GatewayError as error:
            if not seen.forwarding:
                await _drain(requests)
            self._refuse(context, error, method, seen)
        except CallerGone:
            LOGGER.debug("exchange ended: the caller is gone")
        except Exception:
            LOGGER.exception("unexpected error in exchange %s", seen.message_id)
            internal = GatewayError(
                ErrorCode.INTERNAL_ERROR, "unexpected error; see the gateway log"
            )
            self._refuse(context, internal, method, seen)

    def _authenticate(
        self, context: grpc.aio.ServicerContext[Any, Any], conf: GlobalConfiguration
    ) -> tuple[SecurityServerId, int]:
        auth = context.auth_context()
        if auth.get("ssl_tls_version") != [b"TLSv1.3"]:
            raise GatewayError(ErrorCode.PEER_NOT_AUTHENTICATED, "TLS 1.3 is required")
        uris = [uri.decode("ascii", "replace") for uri in auth.get("peer_uri", [])]
        try:
            identity = identity_from_uris(uris)
        except CertificateIdentityError as error:
            raise GatewayError(ErrorCode.PEER_NOT_AUTHENTICATED, str(error)) from None
        if not isinstance(identity, SecurityServerId):
            raise GatewayError(
                ErrorCode.PEER_NOT_AUTHENTICATED,
                f"the peer certificate names {identity}, not a security server",
            )
        registered = conf.security_servers.get(identity)
        if registered is None:
            raise GatewayError(
                ErrorCode.PEER_UNKNOWN, f"security server {identity} is not registered"
            )
        serial, fingerprint = self._certificate(next(iter(auth.get("x509_pem_cert", ())), b""))
        if fingerprint not in registered.certificates:
            raise GatewayError(
                ErrorCode.PEER_CERTIFICATE_UNREGISTERED,
                f"certificate {serial} (SHA-256 {fingerprint.hex()[:16]}...) is not registered"
                f" for {identity}",
            )
        if serial in self._keeper.revoked:
            raise GatewayError(
                ErrorCode.PEER_CERTIFICATE_REVOKED,
                f"the certificate {serial} of {identity} is on the CRL",
            )
        return identity, serial

    def _certificate(self, pem: bytes) -> tuple[int, bytes]:
        """The serial number and SHA-256 (of the DER) of a peer certificate."""
        known = self._seen.get(pem)
        if known is None:
            try:
                certificate = x509.load_pem_x509_certificate(pem)
            except ValueError:
                raise GatewayError(
                    ErrorCode.PEER_NOT_AUTHENTICATED, "the peer certificate is unreadable"
                ) from None
            known = (
                certificate.serial_number,
                hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest(),
            )
            if len(self._seen) >= _SERIAL_CACHE:
                self._seen.clear()
            self._seen[pem] = known
        return known

    def _read_header(
        self, metadata: Metadata, method: str, peer: SecurityServerId
    ) -> exchange_pb2.ExchangeHeader:
        raw = [value for key, value in metadata if key == EXCHANGE_HEADER_KEY]
        if len(raw) != 1 or not isinstance(raw[0], bytes):
            raise GatewayError(
                ErrorCode.EXCHANGE_HEADER_INVALID,
                f"expected exactly one {EXCHANGE_HEADER_KEY} entry, got {len(raw)}",
                EXCHANGE_HEADER_KEY,
            )
        header = exchange_pb2.ExchangeHeader()
        try:
            header.ParseFromString(raw[0])
            self._check_header(header, method, peer)
        except (DecodeError, IdentifierError) as error:
            raise GatewayError(
                ErrorCode.EXCHANGE_HEADER_INVALID, f"exchange header: {error}", EXCHANGE_HEADER_KEY
            ) from None
        return header

    @staticmethod
    def _check_header(
        header: exchange_pb2.ExchangeHeader, method: str, peer: SecurityServerId
    ) -> None:
        def invalid(why: str) -> GatewayError:
            return GatewayError(
                ErrorCode.EXCHANGE_HEADER_INVALID, f"exchange header: {why}", EXCHANGE_HEADER_KEY
            )

        if header.version != 1:
            raise invalid(f"unsupported version {header.version}")
        message_id = header.message_id
        if len(message_id) != _MESSAGE_ID_LENGTH or message_id.strip("0123456789abcdef"):
            raise invalid("message_id must be 32 lowercase hex digits")
        if header.method != method:
            raise invalid("method differs from the call's method")
        if header.seal_marker and len(header.seal_marker) != MARKER_BYTES:
            raise invalid(f"seal_marker must be {MARKER_BYTES} bytes")
        if SecurityServerId.from_proto(header.consumer_server) != peer:
            raise invalid("consumer_server differs from the TLS peer")
        SubsystemId.from_proto(header.client)
        SubsystemId.from_proto(header.provider)
        parse_purpose(header.purpose)
        if header.subject:
            parse_subject(header.subject)
        if header.user:
            parse_reference("user", header.user)
        if header.issue:
            parse_reference("issue", header.issue)

    def _served_provider(self, header: exchange_pb2.ExchangeHeader) -> SubsystemId:
        """The exchange's provider, which this security server must serve."""
        provider = SubsystemId.from_proto(header.provider)
        if provider not in self._served:
            raise GatewayError(
                ErrorCode.PROVIDER_NOT_SERVED,
                f"security server {self._settings.server} does not serve {provider}",
                "pintu-provider",
            )
        return provider

    def _service(
        self, conf: GlobalConfiguration, header: exchange_pb2.ExchangeHeader, method: str
    ) -> tuple[LocalService, Service]:
        provider = self._served_provider(header)
        try:
            service_name = MethodPath.parse(method).service_name
        except IdentifierError as error:
            raise GatewayError(ErrorCode.METHOD_INVALID, str(error), "method") from None
        service = self._services.get((provider, service_name))
        if service is None:
            raise GatewayError(
                ErrorCode.SERVICE_UNKNOWN,
                f"{provider} offers no service {service_name} here",
                "method",
            )
        registered = conf.services.get(service.id)
        if registered is None:
            raise GatewayError(
                ErrorCode.SERVICE_UNKNOWN, f"{service.id} is no longer registered", "method"
            )
        name = method.rsplit("/", 1)[-1]
        if name not in registered.methods:
            raise GatewayError(
                ErrorCode.METHOD_UNKNOWN, f"{service.id} has no registered method {name}", "method"
            )
        return service, registered

    def allowed_services(self, conf: GlobalConfiguration, client: SubsystemId) -> list[Service]:
        """The services offered here that ``client`` (a registered subsystem) may call: those
        registered, configured here, and on which it holds an access right (the policy may
        still deny a call for its purpose, the citizen's consent or a closed window)."""
        return [
            service
            for service in (conf.services.get(local) for local in self._settings.services)
            if service is not None and self._authorizer.holds_any_right(conf, client, service.id)
        ]

    async def _list_allowed(
        self,
        conf: GlobalConfiguration,
        header: exchange_pb2.ExchangeHeader,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        """``ListAllowedServices``, answered here: the provider's security server knows what it
        lets the client call."""
        provider = self._served_provider(header)
        staple = own_staple(self._keeper)
        async for raw in requests:
            try:
                metaservices_pb2.ListAllowedServicesRequest.FromString(raw)
            except DecodeError:
                raise GatewayError(
                    ErrorCode.REQUEST_INVALID, "the request is not a valid message", "request"
                ) from None
        client = SubsystemId.from_proto(header.client)
        answer = metaservices_pb2.ListServicesResponse(
            services=[
                service_info(service)
                for service in self.allowed_services(conf, client)
                if service.id.provider == provider
            ]
        )
        await context.send_initial_metadata(((OCSP_KEY, staple),))
        await context.write(answer.SerializeToString())
        context.set_trailing_metadata(((MESSAGE_ID_KEY, header.message_id),))

    async def _forward(
        self,
        service: LocalService,
        header: exchange_pb2.ExchangeHeader,
        metadata: Metadata,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext[Any, Any],
        seals: ProviderSeals | None = None,
    ) -> None:
        verified: list[tuple[str, str | bytes]] = [
            (CLIENT_KEY, str(SubsystemId.from_proto(header.client))),
            (PURPOSE_KEY, header.purpose),
            (MESSAGE_ID_KEY, header.message_id),
        ]
        for key, value in (
            (SUBJECT_KEY, header.subject),
            (USER_KEY, header.user),
            (ISSUE_KEY, header.issue),
        ):
            if value:
                verified.append((key, value))
        remaining = context.time_remaining()
        capped = service.timeout_seconds is not None and (
            remaining is None or service.timeout_seconds < remaining
        )
        timeout = service.timeout_seconds if capped else remaining
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        channel = self._backends.channel(service.backend)

        def classify(failure: grpc.aio.AioRpcError) -> GatewayError | None:
            code = failure.code()
            if code is grpc.StatusCode.UNAVAILABLE and (
                channel.get_state() is not grpc.ChannelConnectivity.READY
            ):
                return GatewayError(
                    ErrorCode.BACKEND_UNAVAILABLE, f"backend {service.backend}: {failure.details()}"
                )
            if (
                code is grpc.StatusCode.DEADLINE_EXCEEDED
                and deadline is not None
                and loop.time() >= deadline
            ):
                if capped:
                    return GatewayError(
                        ErrorCode.BACKEND_TIMEOUT,
                        f"no answer within the service's timeout of {service.timeout_seconds} s",
                    )
                return GatewayError(ErrorCode.DEADLINE_EXCEEDED, "the caller's deadline passed")
            return None

        staple = own_staple(self._keeper)
        pump = RequestPump(
            requests,
            self._limit,
            marker=header.seal_marker,
            # Without an audit log the seal is not checked, but it never reaches the backend.
            read_seal=seals.read_request_seal if seals is not None else None,
            observe=seals.bodies.request if seals is not None and seals.bodies else None,
        )
        finish = None
        if seals is not None:
            sealing = seals

            async def finish(status: str, _: Metadata, response: Digest) -> Metadata:
                return await sealing.finish(status, response, pump, context.time_remaining())

        call = channel.stream_stream(header.method, None, None)(
            None, metadata=(*passthrough(metadata), *verified), timeout=timeout
        )
        await relay(
            call,
            pump,
            context,
            self._limit,
            ((MESSAGE_ID_KEY, header.message_id),),
            classify,
            response_passthrough,
            extra_initial=((OCSP_KEY, staple),),
            finish=finish,
            observe=seals.bodies.response if seals is not None and seals.bodies else None,
        )

    def _refuse(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        error: GatewayError,
        method: str,
        seen: _Exchange,
    ) -> None:
        log_refusal(
            error,
            Origin.PROVIDER_GATEWAY,
            message_id=seen.message_id,
            method=method,
            client=seen.client,
            provider=seen.provider,
            peer=seen.peer or context.peer(),
        )
        if self._audit is not None and not seen.recorded:
            self._audit.refusal(
                role=PROVIDER,
                message_id=seen.message_id,
                method=method,
                client=seen.client,
                client_server=seen.peer,
                provider=seen.provider,
                code=error.code.label,
                reasons=error.reasons,
                decision_id=error.decision_id,
                purpose=seen.purpose,
                subject=seen.subject,
            )
        context.set_code(error.code.status)
        context.set_details(error.message)
        context.set_trailing_metadata(
            refusal_trailers(error, Origin.PROVIDER_GATEWAY, seen.message_id)
        )
