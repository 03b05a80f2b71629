"""``pintu.v1.Metaservices``, answered by the security server itself on its agency listeners."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from gateway._errors import ErrorCode, GatewayError, Origin, refusal_trailers
from gateway._events import log_refusal
from proto import IdentifierError, SubsystemId
from proto.pintu.v1 import metaservices_pb2
from registry import GlobalConfiguration

SERVICE_PREFIX = "/pintu.v1.Metaservices/"

Q = TypeVar("Q", bound=Message)
R = TypeVar("R", bound=Message)


class Metaservices:
    """Service discovery from the global configuration."""

    def __init__(self, configuration: GlobalConfiguration) -> None:
        self._configuration = configuration
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            SERVICE_PREFIX + "ListClients": grpc.unary_unary_rpc_method_handler(
                _answering(SERVICE_PREFIX + "ListClients", self.list_clients),
                request_deserializer=metaservices_pb2.ListClientsRequest.FromString,
                response_serializer=metaservices_pb2.ListClientsResponse.SerializeToString,
            ),
            SERVICE_PREFIX + "ListServices": grpc.unary_unary_rpc_method_handler(
                _answering(SERVICE_PREFIX + "ListServices", self.list_services),
                request_deserializer=metaservices_pb2.ListServicesRequest.FromString,
                response_serializer=metaservices_pb2.ListServicesResponse.SerializeToString,
            ),
        }

    def handler(self, method: str) -> grpc.RpcMethodHandler[Any, Any] | None:
        """The handler for ``method``, or None when it is not a metaservice method."""
        return self._handlers.get(method)

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


def _answering(
    method: str,
    answer: Callable[[Q, grpc.aio.ServicerContext[Any, Any]], Awaitable[R]],
) -> Callable[[Q, grpc.aio.ServicerContext[Any, Any]], Awaitable[R | None]]:
    """Report a metaservice's refusals like every other refusal: status, code and origin."""

    @functools.wraps(answer)
    async def answering(request: Q, context: grpc.aio.ServicerContext[Any, Any]) -> R | None:
        try:
            return await answer(request, context)
        except GatewayError as error:
            log_refusal(
                error, Origin.CONSUMER_GATEWAY, message_id="", method=method, peer=context.peer()
            )
            context.set_code(error.code.status)
            context.set_details(error.message)
            context.set_trailing_metadata(refusal_trailers(error, Origin.CONSUMER_GATEWAY, ""))
            return None

    return answering
