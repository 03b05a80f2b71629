"""The consumer side: an agency system's call in, an exchange out to the provider's server.

Steps for every call on an agency listener:

1. the method path and the ``pintu-*`` metadata are checked (``method_invalid``,
   ``metadata_missing``, ``metadata_invalid``);
2. the caller must be allowed to act as ``pintu-client`` (``client_not_allowed``);
3. the provider must be registered (``provider_unknown``) and have a reachable server;
4. the call goes out over mTLS with the exchange header, keeping the method, the remaining
   deadline and the caller's other metadata, and its responses and status come back unchanged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from audit import Digest
from gateway._audit import ExchangeAudit
from gateway._channels import PeerChannels
from gateway._configuration import CurrentConfiguration
from gateway._errors import (
    ERROR_CODE_KEY,
    ERROR_DETAIL_KEY,
    ERROR_ORIGIN_KEY,
    ErrorCode,
    GatewayError,
    Origin,
    refusal_trailers,
    status_refusal,
)
from gateway._events import LOGGER, log_refusal
from gateway._metadata import (
    EXCHANGE_HEADER_KEY,
    MESSAGE_ID_KEY,
    OCSP_KEY,
    STATUS_DETAILS_KEY,
    AgencyRequest,
    Metadata,
    is_reserved,
    metadata_size,
    pairs,
    read_agency_metadata,
)
from gateway._relay import CallerGone, RequestPump, own_staple, relay
from gateway._seals import CONSUMER, ConsumerSeals, new_marker
from gateway._settings import GatewaySettings
from pki import CertificateIdentityError, CertificateKeeper, StatusRefused, identity_from_uris
from proto import IdentifierError, MethodPath
from proto.pintu.v1 import errors_pb2, exchange_pb2

_LOCAL_STATUSES = {
    grpc.StatusCode.UNAVAILABLE: ErrorCode.PROVIDER_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: ErrorCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ErrorCode.MESSAGE_TOO_LARGE,
}


def new_message_id() -> str:
    """A fresh exchange id: 128 random bits as 32 lowercase hex digits."""
    return os.urandom(16).hex()


def _from_provider(metadata: Iterable[tuple[str, str | bytes]]) -> Metadata:
    """The provider gateway's metadata as the caller may see it.

    Its refusal entries pass, but a refusal can only come from the provider's side: the origin is
    set to ``provider_gateway`` whatever the peer wrote. The message id is the consumer's own.
    """
    kept: list[tuple[str, str | bytes]] = []
    for key, value in metadata:
        if key == ERROR_ORIGIN_KEY:
            kept.append((key, Origin.PROVIDER_GATEWAY.label))
        elif key == ERROR_DETAIL_KEY:
            kept.append((key, _provider_detail(value)))
        elif key in (ERROR_CODE_KEY, STATUS_DETAILS_KEY) or not is_reserved(key):
            kept.append((key, value))
    return tuple(kept)


def _provider_detail(raw: str | bytes) -> bytes:
    detail = errors_pb2.ErrorDetail()
    try:
        detail.ParseFromString(raw if isinstance(raw, bytes) else b"")
    except DecodeError:
        return b""
    detail.origin = Origin.PROVIDER_GATEWAY.wire
    return detail.SerializeToString()


def _classify(failure: grpc.aio.AioRpcError) -> GatewayError | None:
    """Pass on what the provider gateway said; name what failed on the way to it."""
    trailers = pairs(failure.trailing_metadata())
    if any(key in (MESSAGE_ID_KEY, ERROR_CODE_KEY) for key, _ in trailers):
        return None  # the provider gateway answered: its status stands
    code = _LOCAL_STATUSES.get(failure.code())
    if code is None:
        return None
    return GatewayError(code, f"on the way to the provider's security server: {failure.details()}")


class ConsumerSide:
    """Handles calls on the agency listeners."""

    def __init__(
        self,
        settings: GatewaySettings,
        configuration: CurrentConfiguration,
        peers: PeerChannels,
        keeper: CertificateKeeper,
        clock: Callable[[], float] = time.time,
        audit: ExchangeAudit | None = None,
    ) -> None:
        self._audit = audit
        self._settings = settings
        self._configuration = configuration
        self._peers = peers
        self._keeper = keeper
        self._clock = clock
        self._limit = settings.limits.max_message_bytes
        self._metadata_limit = settings.limits.max_metadata_bytes

    def handler(
        self, method: str, metadata: Metadata, over_tls: bool
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """The handler for one incoming call."""
        return grpc.stream_stream_rpc_method_handler(
            functools.partial(self._exchange, method, metadata, over_tls)
        )

    async def _exchange(
        self,
        method: str,
        metadata: Metadata,
        over_tls: bool,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        message_id = new_message_id()
        request: AgencyRequest | None = None
        seals: ConsumerSeals | None = None
        try:
            try:
                MethodPath.parse(method)
            except IdentifierError as error:
                raise GatewayError(ErrorCode.METHOD_INVALID, str(error), "method") from None
            if metadata_size(metadata) > self._metadata_limit:
                raise GatewayError(
                    ErrorCode.METADATA_TOO_LARGE,
                    f"the call's metadata exceeds {self._metadata_limit} bytes",
                )
            request = read_agency_metadata(metadata)
            self._authorize(request, over_tls, context)
            conf = self._configuration.usable(self._clock())
            if not conf.has_subsystem(request.provider):
                raise GatewayError(
                    ErrorCode.PROVIDER_UNKNOWN,
                    f"{request.provider} is not a registered subsystem",
                    "pintu-provider",
                )
            staple = own_staple(self._keeper)
            channel = await self._peers.channel(request.provider, context.time_remaining())
            audit = self._audit
            header = self._header(message_id, method, request, staple, audit is not None)
            outgoing = (*request.passthrough, (EXCHANGE_HEADER_KEY, header.SerializeToString()))
            finish = None
            if audit is None:
                pump = RequestPump(requests, self._limit)
            else:
                await audit.request(
                    role=CONSUMER,
                    message_id=message_id,
                    method=method,
                    client=str(request.client),
                    client_server=str(self._settings.server),
                    provider=str(request.provider),
                    purpose=request.purpose,
                    subject=request.subject,
                )
                seals = ConsumerSeals(audit, header, request.provider.member, self._clock)
                pump = RequestPump(requests, self._limit, seal=seals.seal_request)
                finish = functools.partial(self._finish, seals, pump)
            call = channel.stream_stream(method, None, None)(
                None, metadata=outgoing, timeout=context.time_remaining()
            )
            try:
                await relay(
                    call,
                    pump,
                    context,
                    self._limit,
                    ((MESSAGE_ID_KEY, message_id),),
                    _classify,
                    _from_provider,
                    check_initial=functools.partial(self._check_provider_status, seals=seals),
                    finish=finish,
                )
            except GatewayError as error:
                if seals is not None:
                    seals.record_end(error.code.label)
                raise
            except (CallerGone, asyncio.CancelledError):
                if seals is not None:
                    seals.record_end("CALLER_GONE")
                raise
        except GatewayError as error:
            self._refuse(context, error, message_id, method, request, seals is not None)
        except CallerGone:
            LOGGER.debug("exchange ended: the caller is gone")
        except Exception:
            LOGGER.exception("unexpected error in exchange %s", message_id)
            internal = GatewayError(
                ErrorCode.INTERNAL_ERROR, "unexpected error; see the gateway log"
            )
            self._refuse(context, internal, message_id, method, request, seals is not None)

    def _authorize(
        self,
        request: AgencyRequest,
        over_tls: bool,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        client = self._settings.clients.get(request.client)
        if client is None:
            raise GatewayError(
                ErrorCode.CLIENT_NOT_ALLOWED,
                f"{request.client} is not a client of security server {self._settings.server}",
                "pintu-client",
            )
        if over_tls:
            uris = context.auth_context().get("peer_uri", [])
            try:
                identity = identity_from_uris([uri.decode("ascii", "replace") for uri in uris])
            except CertificateIdentityError as error:
                raise GatewayError(
                    ErrorCode.CLIENT_NOT_ALLOWED, f"client certificate: {error}", "pintu-client"
                ) from None
            if identity != request.client:
                raise GatewayError(
                    ErrorCode.CLIENT_NOT_ALLOWED,
                    f"the client certificate names {identity}, not {request.client}",
                    "pintu-client",
                )
        elif client.require_tls:
            raise GatewayError(
                ErrorCode.CLIENT_NOT_ALLOWED,
                f"{request.client} must call over the mTLS agency listener",
                "pintu-client",
            )

    def _check_provider_status(self, initial: Metadata, seals: ConsumerSeals | None = None) -> None:
        """The provider's security server must have stapled a good, fresh OCSP response; the
        exchange's record names the certificate it is about."""
        staple = next((value for key, value in initial if key == OCSP_KEY), b"")
        try:
            status = self._keeper.verifier.check(
                staple if isinstance(staple, bytes) else b"",
                now=dt.datetime.fromtimestamp(self._clock(), dt.UTC),
            )
        except StatusRefused as error:
            raise status_refusal(error) from None
        if seals is not None:
            seals.peer_certificate = f"{status.serial:x}"

    @staticmethod
    async def _finish(
        seals: ConsumerSeals, pump: RequestPump, status: str, trailers: Metadata, response: Digest
    ) -> Metadata:
        """The call ended: check the provider's answer and record it. A refusal by the provider's
        security server carries no seal; a failure on the way (a broken connection: a status
        without the provider server's message id) is no answer at all. Both are recorded as
        they are and passed on; anything else, success above all, must be sealed."""
        code = next((value for key, value in trailers if key == ERROR_CODE_KEY), None)
        if code is not None and status != "OK":
            seals.record_end(code if isinstance(code, str) else "refused")
            return ()
        if status != "OK" and not any(key == MESSAGE_ID_KEY for key, _ in trailers):
            seals.record_end(status)
            return ()
        await seals.finish(status, trailers, response, pump)
        return ()

    def _header(
        self, message_id: str, method: str, request: AgencyRequest, staple: bytes, sealed: bool
    ) -> exchange_pb2.ExchangeHeader:
        created = Timestamp()
        created.FromNanoseconds(int(self._clock() * 1e9))
        return exchange_pb2.ExchangeHeader(
            version=1,
            message_id=message_id,
            client=request.client.to_proto(),
            provider=request.provider.to_proto(),
            method=method,
            purpose=request.purpose,
            subject=request.subject,
            user=request.user,
            issue=request.issue,
            created_at=created,
            consumer_server=self._settings.server.to_proto(),
            ocsp_response=staple,
            seal_marker=new_marker() if sealed else b"",
        )

    def _refuse(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        error: GatewayError,
        message_id: str,
        method: str,
        request: AgencyRequest | None,
        recorded: bool,
    ) -> None:
        log_refusal(
            error,
            Origin.CONSUMER_GATEWAY,
            message_id=message_id,
            method=method,
            client=str(request.client) if request else "",
            provider=str(request.provider) if request else "",
            peer=context.peer(),
        )
        if self._audit is not None and not recorded:
            self._audit.refusal(
                role=CONSUMER,
                message_id=message_id,
                method=method,
                client=str(request.client) if request else "",
                provider=str(request.provider) if request else "",
                code=error.code.label,
            )
        context.set_code(error.code.status)
        context.set_details(error.message)
        context.set_trailing_metadata(refusal_trailers(error, Origin.CONSUMER_GATEWAY, message_id))
