"""``pintu.v1.Metaservices``, answered by the security server itself on its agency listeners."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import DecodeError, Message

from gateway._errors import ErrorCode, GatewayError, Origin, refusal_trailers
from gateway._events import log_refusal
from proto import IdentifierError, SubsystemId
from proto.pintu.v1 import metaservices_pb2
from registry import GlobalConfiguration

SERVICE_PREFIX = "/pintu.v1.Metaservices/"
# Every method under Pintu's own package is answered (or refused) by the security server itself.
LOCAL_PREFIX = "/pintu.v1."

Q = TypeVar("Q", bound=Message)
R = TypeVar("R", bound=Message)


class Metaservices:
    """Service discovery from the global configuration."""

    def __init__(self, configuration: GlobalConfiguration) -> None:
        self._configuration = configuration
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            SERVICE_PREFIX + "ListClients": _handler(
                SERVICE_PREFIX + "ListClients",
                metaservices_pb2.ListClientsRequest,
                self.list_clients,
            ),
            SERVICE_PREFIX + "ListServices": _handler(
                SERVICE_PREFIX + "ListServices",
                metaservices_pb2.ListServicesRequest,
                self.list_services,
            ),
        }

    def handler(self, method: str) -> grpc.RpcMethodHandler[Any, Any] | None:
        """The handler for ``method`` when the security server answers it itself: a metaservice,
        or a refusal (``method_unknown``) for any other method of the ``pintu.v1`` package;
        None for everything else."""
        local = self._handlers.get(method)
        if local is None and method.startswith(LOCAL_PREFIX):
            return grpc.unary_unary_rpc_method_handler(functools.partial(_unknown, method))
        return local

    async def list_clients(
        self,
        request: metaservices_pb2.ListClientsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> metaservices_pb2.ListClientsResponse:
        """Every registered subsystem with its member's name."""
        members = self._configuration.members
        return metaservices_pb2.ListClientsResponse(
            clients=[
                metaservices_pb2.ClientInfo(
                    id=subsystem.to_proto(), member_name=members[subsystem.member].name
                )
                for subsystem in self._configuration.subsystems()
            ]
        )

    async def list_services(
        self,
        request: metaservices_pb2.ListServicesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> metaservices_pb2.ListServicesResponse:
        """The services of one provider subsystem (``request_invalid``, ``provider_unknown``)."""
        try:
            provider = SubsystemId.parse(request.provider)
        except IdentifierError as error:
            raise GatewayError(
                ErrorCode.REQUEST_INVALID, f"provider: {error}", "provider"
            ) from None
        if not self._configuration.has_subsystem(provider):
            raise GatewayError(
                ErrorCode.PROVIDER_UNKNOWN, f"{provider} is not a registered subsystem", "provider"
            )
        return metaservices_pb2.ListServicesResponse(
            services=[
                metaservices_pb2.ServiceInfo(
                    id=service.id.to_proto(),
                    methods=list(service.methods),
                    description=service.description,
                )
                for service in self._configuration.services_of(provider)
            ]
        )


def _refuse(context: grpc.aio.ServicerContext[Any, Any], method: str, error: GatewayError) -> None:
    log_refusal(error, Origin.CONSUMER_GATEWAY, message_id="", method=method, peer=context.peer())
    context.set_code(error.code.status)
    context.set_details(error.message)
    context.set_trailing_metadata(refusal_trailers(error, Origin.CONSUMER_GATEWAY, ""))


async def _unknown(
    method: str, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
) -> None:
    error = GatewayError(ErrorCode.METHOD_UNKNOWN, f"{method[:200]}: no such method", "method")
    _refuse(context, method, error)


def _handler(
    method: str,
    request_type: type[Q],
    answer: Callable[[Q, grpc.aio.ServicerContext[Any, Any]], Awaitable[R]],
) -> grpc.RpcMethodHandler[Any, Any]:
    """A unary handler that parses the request itself and reports every refusal like every
    other refusal: status, code and origin (a malformed request is ``request_invalid``)."""

    async def answering(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes | None:
        try:
            request = request_type()
            try:
                request.ParseFromString(raw)
            except DecodeError:
                raise GatewayError(
                    ErrorCode.REQUEST_INVALID, "the request is not a valid message", "request"
                ) from None
            return (await answer(request, context)).SerializeToString()
        except GatewayError as error:
            _refuse(context, method, error)
            return None

    return grpc.unary_unary_rpc_method_handler(answering)
