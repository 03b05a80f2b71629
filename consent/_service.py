"""The consent service: ``pintu.v1.Consents`` over mutual TLS (``pintu consent serve``).

Who may call what is decided by the caller's certificate from the federation's CA:

* an **operator** named in ``operators`` (operator certificate; the citizen portal is one)
  grants, pauses, resumes, revokes, gets and lists consents; the history records
  ``operator NAME`` and the actor the request names (``citizen NIK:...`` for the portal);
* a **security server** registered in the global configuration watches the consents about its
  own member's data and checks one exchange about them, and reports the exchanges about citizens
  its audit log recorded (``ReportAccess``: only its own log's events, only about its own
  member's services). No other party may call.

The citizens' access history is kept by pseudonym only. An operator reads one citizen's
(``ListAccess``) by naming the citizen: the service computes the pseudonym with the federation's
pseudonym key (``pseudonym_key``; without it the history cannot be read,
``consent_pseudonym_key_missing``). An operator acting for a citizen reads only that citizen's.

A grant is checked against the global configuration: its services must exist and serve its
purpose. Every consent gets a receipt signed with the service's document-signing key.

``Watch`` sends the consents of the caller's member changed after the position it names, then
every change as it is committed, and a heartbeat at least every ``heartbeat_seconds``: a replica
that hears nothing for longer knows it may be stale. Each message carries the fingerprint of the
change at its position and whether the watcher is caught up. A position ahead of the service's,
or whose fingerprint differs from the service's history there (a restored database), makes the
service send everything again with ``reset``. Several processes
may share one PostgreSQL database: each polls it every ``poll_seconds``.

Refusals become gRPC statuses in one table, with the ``consent_*`` code in the trailers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from consent._convert import (
    access_event_from_proto,
    access_event_to_proto,
    consent_to_proto,
    detail_from_proto,
    timestamp,
)
from consent._errors import (
    AccessInvalid,
    AlreadyRevoked,
    CallerNotAllowed,
    ConsentError,
    ConsentExpired,
    ConsentInvalid,
    ConsentNotFound,
    ConsentUnavailable,
    PseudonymKeyMissing,
    PurposeNotServed,
    RequestConflict,
    ServiceUnknown,
    TransitionRefused,
    ValidityInvalid,
)
from consent._model import (
    MAX_ACCESS_EVENTS,
    AccessEvent,
    Change,
    ConsentDetail,
    check_actor,
    consent_state,
)
from consent._receipt import sign_receipt
from consent._store import ConsentStore
from pki import CertificateIdentityError, TlsIdentity, identity_from_uris
from proto import (
    IdentifierError,
    OperatorId,
    SecurityServerId,
    ServiceId,
    SubsystemId,
    error_trailers,
    parse_purpose,
    parse_subject,
    subject_pseudonym,
)
from proto.pintu.v1 import consent_pb2, errors_pb2
from registry import ConfigurationSource, GlobalConfiguration

LOGGER = logging.getLogger("pintu.consent")
_S = grpc.StatusCode
# The one place a consent refusal becomes a gRPC status.
STATUSES: dict[type[ConsentError], grpc.StatusCode] = {
    ConsentInvalid: _S.INVALID_ARGUMENT,
    ValidityInvalid: _S.INVALID_ARGUMENT,
    ServiceUnknown: _S.NOT_FOUND,
    PurposeNotServed: _S.FAILED_PRECONDITION,
    ConsentNotFound: _S.NOT_FOUND,
    TransitionRefused: _S.FAILED_PRECONDITION,
    AlreadyRevoked: _S.FAILED_PRECONDITION,
    ConsentExpired: _S.FAILED_PRECONDITION,
    RequestConflict: _S.ALREADY_EXISTS,
    CallerNotAllowed: _S.PERMISSION_DENIED,
    ConsentUnavailable: _S.UNAVAILABLE,
    AccessInvalid: _S.INVALID_ARGUMENT,
    PseudonymKeyMissing: _S.FAILED_PRECONDITION,
}
MESSAGE_LIMITS = [
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]
WATCH_BATCH = 500
EXPIRY_SWEEP_SECONDS = 30.0

Clock = Callable[[], dt.datetime]


@dataclass(frozen=True)
class ConsentSettings:
    """What a consent service process is built from."""

    database: str
    listen: str
    tls: TlsIdentity
    signing_key: ec.EllipticCurvePrivateKey
    signing_chain: tuple[x509.Certificate, ...]
    # The global configuration: which services exist, which security servers are registered.
    registry: ConfigurationSource
    # The operators (operator certificates of the federation) that may grant and change.
    operators: frozenset[OperatorId] = frozenset()
    heartbeat_seconds: float = 0.5
    poll_seconds: float = 0.2
    # The federation's key for citizens' pseudonyms (as security servers' audit logs use it,
    # at least 32 bytes): finds a citizen's access history. None: ListAccess is refused.
    pseudonym_key: bytes | None = None

    def __post_init__(self) -> None:
        if self.pseudonym_key is not None and len(self.pseudonym_key) < 32:
            raise ValueError("pseudonym_key: must hold at least 32 bytes")


class ConsentService:
    """One consent service process (see the module docstring); ``start``, then ``stop``."""

    def __init__(
        self, settings: ConsentSettings, *, clock: Clock = lambda: dt.datetime.now(dt.UTC)
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._store: ConsentStore | None = None
        self._grpc: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Condition()
        self._position = 0
        self.port = 0

    @property
    def store(self) -> ConsentStore:
        """The consent database."""
        assert self._store is not None, "start() first"
        return self._store

    @property
    def configuration(self) -> GlobalConfiguration:
        """The global configuration the service checks against."""
        return self.settings.registry.configuration

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the database and serve.

        Raises:
            ConsentUnavailable: the database or the address cannot be used.
        """
        settings = self.settings
        self._store = await asyncio.to_thread(ConsentStore, settings.database)
        self._position = await asyncio.to_thread(self._store.position)
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0), *MESSAGE_LIMITS])
        server.add_generic_rpc_handlers([self._handlers()])
        credentials = grpc.ssl_server_credentials(
            [(settings.tls.private_key, settings.tls.certificate_chain)],
            root_certificates=settings.tls.trust_anchors,
            require_client_auth=True,
        )
        try:
            self.port = server.add_secure_port(settings.listen, credentials)
        except RuntimeError as error:
            self._store.close()
            raise ConsentUnavailable(
                f"listen: cannot listen on {settings.listen}: {error}"
            ) from None
        await settings.registry.start()
        await server.start()
        self._grpc = server
        self._tasks = [
            asyncio.create_task(self._follow(), name="consent: follow the database"),
            asyncio.create_task(self._sweep(), name="consent: record expiries"),
        ]

    async def stop(self, grace: float = 2.0) -> None:
        """Stop serving and close the database."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._grpc is not None:
            await self._grpc.stop(grace)
            await self.settings.registry.stop()
        if self._store is not None:
            self._store.close()

    async def _follow(self) -> None:
        """Wake the watchers when the position moves (this process's writes or another's)."""
        while True:
            await asyncio.sleep(self.settings.poll_seconds)
            try:
                position = await asyncio.to_thread(self.store.position)
            except ConsentUnavailable:
                LOGGER.exception("the consent database cannot be read; trying again")
                continue
            if position != self._position:
                await self._moved(position)

    async def _moved(self, position: int) -> None:
        async with self._changed:
            self._position = max(self._position, position)
            self._changed.notify_all()

    async def _sweep(self) -> None:
        while True:
            try:
                expired = await asyncio.to_thread(self.store.expire_due, self._clock())
            except ConsentUnavailable:
                LOGGER.exception("could not record expired consents; trying again")
                expired = []
            if expired:
                LOGGER.info(
                    "%d consents expired",
                    len(expired),
                    extra={"pintu_event": {"event": "consents_expired", "count": len(expired)}},
                )
                await self._moved(await asyncio.to_thread(self.store.position))
            await asyncio.sleep(EXPIRY_SWEEP_SECONDS)

    # -- callers ------------------------------------------------------------------------------

    @staticmethod
    def _identity(context: grpc.aio.ServicerContext[Any, Any]) -> object:
        uris = [u.decode("ascii", "replace") for u in context.auth_context().get("peer_uri", [])]
        try:
            return identity_from_uris(uris)
        except CertificateIdentityError:
            return None

    def _operator(self, context: grpc.aio.ServicerContext[Any, Any]) -> OperatorId:
        identity = self._identity(context)
        if not isinstance(identity, OperatorId):
            raise CallerNotAllowed("only operators (and the citizen portal) may do this")
        if identity not in self.settings.operators:
            raise CallerNotAllowed(f"operator {identity} is not an operator of the consent service")
        return identity

    def _server(self, context: grpc.aio.ServicerContext[Any, Any]) -> SecurityServerId:
        identity = self._identity(context)
        if not isinstance(identity, SecurityServerId):
            raise CallerNotAllowed("only security servers may do this")
        if identity not in self.configuration.security_servers:
            raise CallerNotAllowed(f"security server {identity} is not registered")
        return identity

    @staticmethod
    def _actor(operator: OperatorId, named: str, subject: str) -> str:
        """The history's actor: the operator, and whom it acts for. An operator acting for a
        citizen acts for the consent's own citizen only."""
        # Checked first, so that a refusal never echoes control characters.
        actor = check_actor(f"operator {operator.name}" + (f" for {named}" if named else ""))
        if named.startswith("citizen ") and named != f"citizen {subject}":
            raise CallerNotAllowed(f"{named} may not act on another citizen's consent")
        return actor

    @staticmethod
    def _subject(given: str) -> str:
        """The citizen a change or read is confined to: always named."""
        if not given:
            raise ConsentInvalid("subject: required (the citizen whose consent this is)")
        try:
            return parse_subject(given)
        except IdentifierError as error:
            raise ConsentInvalid(str(error)) from None

    # -- gRPC ---------------------------------------------------------------------------------

    def _handlers(self) -> grpc.GenericRpcHandler[Any, Any]:
        def refuse(error: ConsentError, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            LOGGER.warning(
                "consent service refused a request: %s: %s",
                error.code,
                error,
                extra={
                    "pintu_event": {
                        "event": "consent_refused",
                        "code": error.code,
                        "peer": context.peer(),
                    }
                },
            )
            context.set_code(STATUSES.get(type(error), _S.INVALID_ARGUMENT))
            context.set_details(str(error))
            context.set_trailing_metadata(
                error_trailers(error.code, errors_pb2.ERROR_ORIGIN_CONSENT_SERVICE, str(error))
            )

        def parsed(raw: bytes, request_type: Any) -> Any:
            try:
                return request_type.FromString(raw)
            except Exception:  # protobuf's DecodeError
                raise ConsentInvalid("the request is not a valid message") from None

        def unary(
            answer: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any], request_type: Any
        ) -> grpc.RpcMethodHandler[Any, Any]:
            async def handle(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                try:
                    answered = answer(parsed(raw, request_type), context)
                    if inspect.isawaitable(answered):
                        answered = await answered
                    return bytes(answered.SerializeToString())
                except ConsentError as error:
                    refuse(error, context)
                    return None

            return grpc.unary_unary_rpc_method_handler(handle)

        async def watch(
            raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[bytes]:
            try:
                request = parsed(raw, consent_pb2.WatchConsentsRequest)
                server = self._server(context)
            except ConsentError as error:
                refuse(error, context)
                return
            async for message in self._watch(server, request.after, request.fingerprint):
                yield bytes(message.SerializeToString())

        return grpc.method_handlers_generic_handler(
            "pintu.v1.Consents",
            {
                "Grant": unary(self._grant, consent_pb2.GrantConsentRequest),
                "Pause": unary(self._change(Change.PAUSE), consent_pb2.ChangeConsentRequest),
                "Resume": unary(self._change(Change.RESUME), consent_pb2.ChangeConsentRequest),
                "Revoke": unary(self._change(Change.REVOKE), consent_pb2.ChangeConsentRequest),
                "Get": unary(self._get, consent_pb2.GetConsentRequest),
                "ListForSubject": unary(self._list, consent_pb2.ListConsentsRequest),
                "Check": unary(self._check, consent_pb2.CheckConsentRequest),
                "ReportAccess": unary(self._report_access, consent_pb2.ReportAccessRequest),
                "ListAccess": unary(self._list_access, consent_pb2.ListAccessRequest),
                "Watch": grpc.unary_stream_rpc_method_handler(watch),
            },
        )

    def _sign(self, consent_id: str, detail: ConsentDetail, now: dt.datetime) -> str:
        return sign_receipt(
            consent_id, detail, now, self.settings.signing_key, self.settings.signing_chain
        )

    async def _grant(
        self, request: consent_pb2.GrantConsentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> consent_pb2.Consent:
        operator = self._operator(context)
        detail = detail_from_proto(request.detail)
        detail.check_against(self.configuration)
        now = self._clock()
        if detail.valid_until <= now:
            raise ValidityInvalid("valid_until has passed already")
        granted = await asyncio.to_thread(
            self.store.grant,
            detail,
            actor=self._actor(operator, request.actor, detail.subject),
            now=now,
            sign=self._sign,
            request_id=request.request_id or None,
        )
        await self._moved(granted.position)
        receipt = await asyncio.to_thread(self.store.receipt, granted.id)
        LOGGER.info(
            "consent %s granted",
            granted.id,
            extra={"pintu_event": {"event": "consent_granted", "consent_id": granted.id}},
        )
        return consent_to_proto(granted, receipt)

    def _change(
        self, change: Change
    ) -> Callable[[consent_pb2.ChangeConsentRequest, grpc.aio.ServicerContext[Any, Any]], Any]:
        async def handle(
            request: consent_pb2.ChangeConsentRequest,
            context: grpc.aio.ServicerContext[Any, Any],
        ) -> consent_pb2.Consent:
            operator = self._operator(context)
            subject = self._subject(request.subject)
            changed = await asyncio.to_thread(
                self.store.change,
                request.consent_id,
                change,
                actor=self._actor(operator, request.actor, subject),
                now=self._clock(),
                reason=request.reason,
                request_id=request.request_id or None,
                subject=subject,
            )
            await self._moved(changed.position)
            LOGGER.info(
                "consent %s: %s",
                changed.id,
                change.value,
                extra={
                    "pintu_event": {
                        "event": f"consent_{change.value}d"
                        if change is not Change.REVOKE
                        else "consent_revoked",
                        "consent_id": changed.id,
                    }
                },
            )
            return consent_to_proto(changed)

        return handle

    async def _get(
        self, request: consent_pb2.GetConsentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> consent_pb2.Consent:
        self._operator(context)
        subject = self._subject(request.subject)
        found = await asyncio.to_thread(self.store.get, request.consent_id, subject)
        receipt = await asyncio.to_thread(self.store.receipt, request.consent_id, subject)
        return consent_to_proto(found, receipt)

    async def _list(
        self, request: consent_pb2.ListConsentsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> consent_pb2.ListConsentsResponse:
        self._operator(context)
        try:
            subject = parse_subject(request.subject)
        except IdentifierError as error:
            raise ConsentInvalid(str(error)) from None
        consents = await asyncio.to_thread(self.store.of_subject, subject)
        return consent_pb2.ListConsentsResponse(consents=[consent_to_proto(c) for c in consents])

    async def _check(
        self, request: consent_pb2.CheckConsentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> consent_pb2.CheckConsentResponse:
        server = self._server(context)
        try:
            subject = parse_subject(request.subject)
            consumer = SubsystemId.parse(request.consumer)
            service_id = ServiceId.parse(request.service)
            purpose = parse_purpose(request.purpose)
        except IdentifierError as error:
            raise ConsentInvalid(str(error)) from None
        if service_id.provider.member != server.owner:
            raise CallerNotAllowed(f"{server} may only check consents about its member's data")
        service = self.configuration.services.get(service_id)
        if service is None:
            raise ServiceUnknown(f"{service_id} is not a registered service")
        consents = await asyncio.to_thread(self.store.of_subject, subject)
        state, consent_id = consent_state(consents, consumer, service, purpose, self._clock())
        return consent_pb2.CheckConsentResponse(state=state, consent_id=consent_id)

    async def _report_access(
        self, request: consent_pb2.ReportAccessRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> consent_pb2.ReportAccessResponse:
        server = self._server(context)
        if len(request.events) > MAX_ACCESS_EVENTS:
            raise AccessInvalid(
                f"events: at most {MAX_ACCESS_EVENTS} in one report, not {len(request.events)}"
            )
        events = [
            self._reported(server, index, message) for index, message in enumerate(request.events)
        ]
        accepted, duplicates = await asyncio.to_thread(self.store.record_access, events)
        LOGGER.info(
            "%s reported %d access events (%d already recorded)",
            server,
            accepted,
            duplicates,
            extra={
                "pintu_event": {
                    "event": "access_reported",
                    "server": str(server),
                    "accepted": accepted,
                    "duplicates": duplicates,
                }
            },
        )
        return consent_pb2.ReportAccessResponse(accepted=accepted, duplicates=duplicates)

    @staticmethod
    def _reported(
        server: SecurityServerId, index: int, message: consent_pb2.AccessEvent
    ) -> AccessEvent:
        """An event ``server`` may report: well-formed, from its own log, about its member's
        services (AccessInvalid or CallerNotAllowed: the whole report is refused)."""
        try:
            event = access_event_from_proto(message)
        except AccessInvalid as error:
            raise AccessInvalid(f"events[{index}] (seq {message.seq}): {error}") from None
        if SecurityServerId.parse(event.log) != server:
            raise CallerNotAllowed(
                f"events[{index}] (seq {event.seq}): {server} reports its own log's events,"
                f" not {event.log}'s"
            )
        if event.provider and SubsystemId.parse(event.provider).member != server.owner:
            raise CallerNotAllowed(
                f"events[{index}] (seq {event.seq}): {server} reports exchanges with its"
                f" member's services, not with {event.provider}"
            )
        return event

    async def _list_access(
        self, request: consent_pb2.ListAccessRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> consent_pb2.ListAccessResponse:
        operator = self._operator(context)
        subject = self._subject(request.subject)
        self._actor(operator, request.actor, subject)
        key = self.settings.pseudonym_key
        if key is None:
            raise PseudonymKeyMissing(
                "the consent service holds no pseudonym key (pseudonym_key): it cannot find a"
                " citizen's access history"
            )
        before = None
        if request.HasField("before"):
            try:
                before = request.before.ToDatetime(tzinfo=dt.UTC)
            except (ValueError, OverflowError):
                raise ConsentInvalid("before: not a valid time") from None
        events = await asyncio.to_thread(
            self.store.access_of,
            subject_pseudonym(key, subject),
            min(request.limit or MAX_ACCESS_EVENTS, MAX_ACCESS_EVENTS),
            before,
        )
        return consent_pb2.ListAccessResponse(events=[access_event_to_proto(e) for e in events])

    async def _watch(
        self, server: SecurityServerId, after: int, fingerprint: str
    ) -> AsyncIterator[consent_pb2.ConsentChanges]:
        member = [str(server.owner)]
        store = self.store
        position, reset = after, False
        current = await asyncio.to_thread(store.position)
        if position < 0 or position > current:
            position, reset = 0, True  # the watcher is ahead of this history
        elif position > 0 and fingerprint != await asyncio.to_thread(store.fingerprint, position):
            position, reset = 0, True  # the watcher followed another history (a restore)
        sent = (-1, "")
        while True:
            seen = self._position
            try:
                changed, reached = await asyncio.to_thread(
                    store.changed_after, position, member, WATCH_BATCH
                )
                if reached != sent[0]:
                    sent = (reached, await asyncio.to_thread(store.fingerprint, reached))
            except ConsentUnavailable:
                LOGGER.exception("the consent database cannot be read for a watcher")
                return  # the watcher reconnects; its replica ages meanwhile
            position = reached
            caught_up = len(changed) < WATCH_BATCH
            yield consent_pb2.ConsentChanges(
                reset=reset,
                consents=[consent_to_proto(c) for c in changed],
                position=position,
                sent_at=timestamp(self._clock()),
                fingerprint=sent[1],
                caught_up=caught_up,
            )
            reset = False
            if not caught_up:
                continue
            async with self._changed:
                if self._position == seen:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self._changed.wait(), self.settings.heartbeat_seconds
                        )
