"""``pintu.v1.Metaservices``, answered by the security server itself on its agency listeners."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import DecodeError, Message
from grpc_reflection.v1alpha import _async as reflection_aio
from grpc_reflection.v1alpha import reflection_pb2

from gateway._configuration import CurrentConfiguration
from gateway._errors import ErrorCode, GatewayError, Origin, refusal_trailers
from gateway._events import log_refusal
from gateway._metadata import PROVIDER_KEY, Metadata
from proto import IdentifierError, ServiceId, SubsystemId
from proto.pintu.v1 import metaservices_pb2
from registry import GlobalConfiguration, Service

SERVICE_PREFIX = "/pintu.v1.Metaservices/"
# Every method under Pintu's own package is answered (or refused) by the security server itself,
# except this one: the provider's security server answers it, through an exchange.
LOCAL_PREFIX = "/pintu.v1."
LIST_ALLOWED_SERVICES = SERVICE_PREFIX + "ListAllowedServices"
REFLECTION_METHODS = frozenset(
    {
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    }
)
# Pintu's own files, offered by reflection next to the registered services' files.
_OWN_FILES = (metaservices_pb2.DESCRIPTOR,)
_REFLECTION_CACHE = 256

Q = TypeVar("Q", bound=Message)
R = TypeVar("R", bound=Message)


def service_info(service: Service) -> metaservices_pb2.ServiceInfo:
    """A registered service as the metaservices describe it."""
    return metaservices_pb2.ServiceInfo(
        id=service.id.to_proto(),
        methods=list(service.methods),
        description=service.description,
        personal_data=service.personal_data,
        data_categories=list(service.data_categories),
        purposes=list(service.purposes),
        consent_required=service.consent_required,
        legal_basis=service.legal_basis,
    )


class _Descriptors:
    """One configuration's descriptor files, parsed once, and a pool holding them."""

    def __init__(self, configuration: GlobalConfiguration) -> None:
        self.files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
        for raw in configuration.descriptor_files:
            parsed = descriptor_pb2.FileDescriptorProto.FromString(raw)
            self.files[parsed.name] = parsed
        for own in _OWN_FILES:
            for file in _with_dependencies(own):
                if file.name not in self.files:
                    proto = descriptor_pb2.FileDescriptorProto()
                    file.CopyToProto(proto)
                    self.files[file.name] = proto
        self.pool = descriptor_pool.DescriptorPool()
        for name in self.closure(list(self.files)):
            self.pool.Add(self.files[name])

    def closure(self, names: list[str]) -> list[str]:
        """``names`` and every file they import, each file after the files it imports."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            if name in seen or name not in self.files:
                return
            seen.add(name)
            for dependency in self.files[name].dependency:
                visit(dependency)
            order.append(name)

        for name in names:
            visit(name)
        return order


def _with_dependencies(file: Any) -> list[Any]:
    found = [file]
    for dependency in file.dependencies:
        found.extend(_with_dependencies(dependency))
    return found


class Metaservices:
    """Service discovery from the global configuration (see ``metaservices.proto``)."""

    def __init__(self, configuration: CurrentConfiguration) -> None:
        self._configuration = configuration
        self._descriptors: tuple[int, _Descriptors] | None = None
        self._reflection: dict[tuple[int, SubsystemId | None], Any] = {}
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
            SERVICE_PREFIX + "GetServiceDescription": _handler(
                SERVICE_PREFIX + "GetServiceDescription",
                metaservices_pb2.GetServiceDescriptionRequest,
                self.get_service_description,
            ),
        }

    def handler(self, method: str, metadata: Metadata) -> grpc.RpcMethodHandler[Any, Any] | None:
        """The handler for ``method`` when the security server answers it itself: a metaservice,
        reflection, or a refusal (``method_unknown``) for any other method of the ``pintu.v1``
        package; None for everything else (``ListAllowedServices`` included)."""
        local = self._handlers.get(method)
        if local is not None:
            return local
        if method in REFLECTION_METHODS:
            return self._reflection_handler(method, metadata)
        if method.startswith(LOCAL_PREFIX) and method != LIST_ALLOWED_SERVICES:
            return grpc.unary_unary_rpc_method_handler(functools.partial(_unknown, method))
        return None

    def _conf(self) -> GlobalConfiguration:
        return self._configuration.usable(time.time())

    def descriptors(self, configuration: GlobalConfiguration) -> _Descriptors:
        """The parsed descriptor files of ``configuration`` (kept for the latest version)."""
        cached = self._descriptors
        if cached is None or cached[0] != configuration.version:
            cached = self._descriptors = (configuration.version, _Descriptors(configuration))
            self._reflection.clear()
        return cached[1]

    async def list_clients(
        self,
        request: metaservices_pb2.ListClientsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> metaservices_pb2.ListClientsResponse:
        """Every registered subsystem with its member's name."""
        configuration = self._conf()
        members = configuration.members
        return metaservices_pb2.ListClientsResponse(
            clients=[
                metaservices_pb2.ClientInfo(
                    id=subsystem.to_proto(), member_name=members[subsystem.member].name
                )
                for subsystem in configuration.subsystems()
            ]
        )

    async def list_services(
        self,
        request: metaservices_pb2.ListServicesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> metaservices_pb2.ListServicesResponse:
        """The services of one provider subsystem (``request_invalid``, ``provider_unknown``)."""
        configuration = self._conf()
        try:
            provider = SubsystemId.parse(request.provider)
        except IdentifierError as error:
            raise GatewayError(
                ErrorCode.REQUEST_INVALID, f"provider: {error}", "provider"
            ) from None
        if not configuration.has_subsystem(provider):
            raise GatewayError(
                ErrorCode.PROVIDER_UNKNOWN, f"{provider} is not a registered subsystem", "provider"
            )
        return metaservices_pb2.ListServicesResponse(
            services=[service_info(service) for service in configuration.services_of(provider)]
        )

    async def get_service_description(
        self,
        request: metaservices_pb2.GetServiceDescriptionRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> metaservices_pb2.ServiceDescription:
        """A registered service's facts and descriptors (``request_invalid``,
        ``service_unknown``)."""
        configuration = self._conf()
        try:
            service_id = ServiceId.parse(request.service)
        except IdentifierError as error:
            raise GatewayError(ErrorCode.REQUEST_INVALID, f"service: {error}", "service") from None
        service = configuration.services.get(service_id)
        if service is None:
            raise GatewayError(
                ErrorCode.SERVICE_UNKNOWN, f"{service_id} is not a registered service", "service"
            )
        descriptors = self.descriptors(configuration)
        # The defining file first, then what it imports.
        names = (
            descriptors.closure([service.descriptor_file])[::-1] if service.descriptor_file else []
        )
        return metaservices_pb2.ServiceDescription(
            service=service_info(service),
            descriptors=descriptor_pb2.FileDescriptorSet(
                file=[descriptors.files[name] for name in names]
            ),
        )

    def _reflection_handler(
        self, method: str, metadata: Metadata
    ) -> grpc.RpcMethodHandler[Any, Any]:
        try:
            configuration = self._conf()
            raw = [value for key, value in metadata if key == PROVIDER_KEY]
            provider = None
            if raw:
                if len(raw) > 1 or not isinstance(raw[0], str):
                    raise GatewayError(
                        ErrorCode.METADATA_INVALID,
                        f"{PROVIDER_KEY} must be given once, as text",
                        PROVIDER_KEY,
                    )
                try:
                    provider = SubsystemId.parse(raw[0])
                except IdentifierError as error:
                    raise GatewayError(
                        ErrorCode.METADATA_INVALID, f"{PROVIDER_KEY}: {error}", PROVIDER_KEY
                    ) from None
                if not configuration.has_subsystem(provider):
                    raise GatewayError(
                        ErrorCode.PROVIDER_UNKNOWN,
                        f"{provider} is not a registered subsystem",
                        PROVIDER_KEY,
                    )
        except GatewayError as refusal:
            return grpc.stream_stream_rpc_method_handler(
                functools.partial(_refuse_stream, method, refusal)
            )
        servicer = self._reflection_servicer(configuration, provider)
        return grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )

    def _reflection_servicer(
        self, configuration: GlobalConfiguration, provider: SubsystemId | None
    ) -> Any:
        descriptors = self.descriptors(configuration)
        key = (configuration.version, provider)
        servicer = self._reflection.get(key)
        if servicer is None:
            services = (
                configuration.services_of(provider)
                if provider is not None
                else configuration.services.values()
            )
            names = sorted(
                {s.id.service_name for s in services if s.descriptor_file}
                | {"pintu.v1.Metaservices"}
            )
            if len(self._reflection) >= _REFLECTION_CACHE:
                self._reflection.clear()
            servicer = self._reflection[key] = reflection_aio.ReflectionServicer(
                names, pool=descriptors.pool
            )
        return servicer


def _refuse(context: grpc.aio.ServicerContext[Any, Any], method: str, error: GatewayError) -> None:
    log_refusal(error, Origin.CONSUMER_GATEWAY, message_id="", method=method, peer=context.peer())
    context.set_code(error.code.status)
    context.set_details(error.message)
    context.set_trailing_metadata(refusal_trailers(error, Origin.CONSUMER_GATEWAY, ""))


async def _refuse_stream(
    method: str,
    refusal: GatewayError,
    requests: AsyncIterator[Any],
    context: grpc.aio.ServicerContext[Any, Any],
) -> None:
    _refuse(context, method, refusal)


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
