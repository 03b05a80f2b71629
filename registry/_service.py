"""The registry service: management over mutual TLS, and the signed snapshot over HTTP.

``pintu registry serve`` runs one :class:`RegistryService` on one event loop:

* gRPC ``pintu.v1.Registry`` (``listen``, mutual TLS, the federation's roots): operators change
  and read the registry with their operator certificates; their role (``admin`` or ``viewer``)
  decides what they may do. Security servers register their own authentication certificates.
* HTTP (``http_listen``): ``GET /global-configuration`` answers the latest signed snapshot with
  an ``ETag``; a request with a matching ``If-None-Match`` gets ``304 Not Modified``.
  ``GET /healthz``.

A snapshot is signed after every change and again at half its validity, so security servers
always find one that is good for at least half the validity. Several registry processes may
share one PostgreSQL database; each notices the others' changes within a second.

Refusals are translated to gRPC statuses here, in one table.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.protobuf.timestamp_pb2 import Timestamp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pki import CertificateIdentityError, PrivateKey, TlsIdentity, identity_from_uris
from proto import OperatorId, SecurityServerId, error_trailers
from proto.pintu.v1 import errors_pb2, registry_pb2
from registry._changes import certificate_fingerprint
from registry._client import MESSAGE_LIMITS
from registry._errors import (
    ChangeRefused,
    OperatorNotAuthorized,
    RegistryError,
    RegistryUnavailable,
)
from registry._global_configuration import GlobalConfiguration
from registry._snapshot import sign_snapshot, snapshot_tag, to_content
from registry._store import RegistryStore

LOGGER = logging.getLogger("pintu.registry")
ADMIN, VIEWER = "admin", "viewer"
ROLES = (ADMIN, VIEWER)
_S = grpc.StatusCode
# The one place a registry refusal becomes a gRPC status.
STATUSES: dict[type[RegistryError], grpc.StatusCode] = {
    ChangeRefused: _S.FAILED_PRECONDITION,
    OperatorNotAuthorized: _S.PERMISSION_DENIED,
    RegistryUnavailable: _S.UNAVAILABLE,
}
WATCH_INTERVAL = 1.0
CONTENT_TYPE = "application/x-protobuf"

Clock = Callable[[], dt.datetime]


@dataclass(frozen=True)
class RegistrySettings:
    """What a registry process is built from."""

    instance: str
    database: str
    listen: str
    http_listen: str
    tls: TlsIdentity
    signing_key: PrivateKey
    signing_chain: tuple[x509.Certificate, ...]
    operators: Mapping[OperatorId, str]
    validity: dt.timedelta = dt.timedelta(hours=1)


@dataclass
class _Published:
    version: int
    blob: bytes
    tag: str
    built_at: dt.datetime
    expires_at: dt.datetime


class RegistryService:
    """One registry process (see the module docstring); ``start``, then ``stop``."""

    def __init__(
        self, settings: RegistrySettings, *, clock: Clock = lambda: dt.datetime.now(dt.UTC)
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._signer = (settings.signing_key, settings.signing_chain)
        self._tls = settings.tls
        self._operators = dict(settings.operators)
        self._store: RegistryStore | None = None
        self._configuration: GlobalConfiguration | None = None
        self._published: _Published | None = None
        self._committing = asyncio.Lock()
        self._grpc: grpc.aio.Server | None = None
        self._http: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.port = 0
        self.http_port = 0

    @property
    def store(self) -> RegistryStore:
        """The registry's database."""
        assert self._store is not None
        return self._store

    @property
    def configuration(self) -> GlobalConfiguration:
        """The registry's current content."""
        assert self._configuration is not None
        return self._configuration

    # -- publishing ----------------------------------------------------------------------------

    async def replace_signer(self, key: PrivateKey, chain: tuple[x509.Certificate, ...]) -> None:
        """Sign with ``key`` (a rotated configuration-signing key) from now on, starting with a
        snapshot of the current version right away (after any change being committed)."""
        async with self._committing:
            self._signer = (key, chain)
            if self._store is not None and self._configuration is not None:
                published = self._published
                assert published is not None
                await asyncio.to_thread(self._publish, published.version, self._configuration)

    def replace_operators(self, operators: Mapping[OperatorId, str]) -> None:
        """Authorise ``operators`` (name → role) from the next call on."""
        self._operators = dict(operators)

    def replace_tls(self, identity: TlsIdentity) -> None:
        """Present ``identity`` and trust its anchors (new roots during a root rollover) for
        every new connection."""
        self._tls = identity

    def _publish(self, version: int, configuration: GlobalConfiguration) -> None:
        now = self._clock()
        key, chain = self._signer
        # A snapshot is never valid longer than its signer's certificate: security servers would
        # refuse it then anyway. Rotate the signing key well before it expires.
        signer_end = chain[0].not_valid_after_utc
        expires_at = min(now + self.settings.validity, signer_end)
        if signer_end - now < self.settings.validity * 2:
            LOGGER.warning(
                "the configuration-signing certificate expires at %s: rotate the signing key"
                " (pintu registry rotate-signing-key)",
                signer_end.isoformat(),
                extra={"pintu_event": {"event": "signer_expiring", "at": signer_end.isoformat()}},
            )
        content = to_content(configuration, version=version, built_at=now, expires_at=expires_at)
        blob = sign_snapshot(content, key, chain)
        self.store.save_snapshot(version, blob, built_at=now, expires_at=expires_at)
        self._configuration = configuration
        self._published = _Published(version, blob, snapshot_tag(blob), now, expires_at)
        LOGGER.info(
            "published global configuration version %d, valid until %s",
            version,
            expires_at.isoformat(),
            extra={"pintu_event": {"event": "configuration_published", "version": version}},
        )

    def _refresh(self) -> None:
        """Follow the database (another registry process may have changed it) and re-sign
        when half the snapshot's validity has passed."""
        version = self.store.version()
        published = self._published
        if published is None or version != published.version:
            stored = self.store.latest_snapshot()
            if stored is not None and stored.version == version and published is not None:
                # Another process signed this version: serve its snapshot.
                _, self._configuration = self.store.load()
                self._published = _Published(
                    stored.version,
                    stored.blob,
                    snapshot_tag(stored.blob),
                    stored.built_at,
                    stored.expires_at,
                )
                return
            loaded_version, configuration = self.store.load()
            self._publish(loaded_version, configuration)
            return
        if self._clock() >= published.built_at + (published.expires_at - published.built_at) / 2:
            self._publish(published.version, self.configuration)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                async with self._committing:
                    await asyncio.to_thread(self._refresh)
            except RegistryError:
                LOGGER.exception("could not refresh the global configuration; trying again")

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the database, publish a snapshot, and start both listeners.

        Raises:
            RegistryUnavailable: the database or an address cannot be used.
        """
        settings = self.settings
        self._store = RegistryStore(settings.database, settings.instance)
        version, configuration = self._store.load()
        self._publish(version, configuration)
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0), *MESSAGE_LIMITS])
        server.add_generic_rpc_handlers([self._handlers()])

        def tls_configuration(identity: TlsIdentity) -> Any:
            return grpc.ssl_server_certificate_configuration(
                [(identity.private_key, identity.certificate_chain)],
                root_certificates=identity.trust_anchors,
            )

        served = self._tls

        def fetch() -> Any:
            nonlocal served
            if self._tls is served:
                return None
            served = self._tls
            return tls_configuration(served)

        credentials = grpc.dynamic_ssl_server_credentials(
            tls_configuration(served), fetch, require_client_authentication=True
        )
        try:
            self.port = server.add_secure_port(settings.listen, credentials)
        except RuntimeError as error:
            raise RegistryUnavailable(
                f"listen: cannot listen on {settings.listen}: {error}"
            ) from None
        await server.start()
        self._grpc = server
        host, _, port = settings.http_listen.rpartition(":")
        self._http = uvicorn.Server(
            uvicorn.Config(
                self.http_app(),
                host=host.strip("[]"),
                port=int(port),
                log_level="warning",
                access_log=False,
                lifespan="off",
            )
        )
        self._http_task = asyncio.create_task(self._http.serve())
        while not self._http.started:
            if self._http_task.done():
                await server.stop(0)
                raise RegistryUnavailable(f"http_listen: cannot listen on {settings.http_listen}")
            await asyncio.sleep(0.01)
        self.http_port = self._http.servers[0].sockets[0].getsockname()[1]
        self._watcher = asyncio.create_task(self._watch())

    async def stop(self, grace: float = 5.0) -> None:
        """Stop both listeners and close the database."""
        if self._watcher is not None:
            self._watcher.cancel()
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            await self._http_task
        if self._store is not None:
            self._store.close()

    # -- gRPC ----------------------------------------------------------------------------------

    def _handlers(self) -> grpc.GenericRpcHandler[Any, Any]:
        def unary(
            answer: Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any], request_type: Any
        ) -> grpc.RpcMethodHandler[Any, Any]:
            async def handle(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                try:
                    try:
                        request = request_type.FromString(raw)
                    except Exception:  # protobuf's DecodeError
                        raise ChangeRefused("the request is not a valid message") from None
                    answered = answer(request, context)
                    if inspect.isawaitable(answered):
                        answered = await answered
                    return bytes(answered.SerializeToString())
                except RegistryError as error:
                    LOGGER.warning(
                        "registry refused a request: %s: %s",
                        error.code,
                        error,
                        extra={
                            "pintu_event": {
                                "event": "registry_refused",
                                "code": error.code,
                                "peer": context.peer(),
                            }
                        },
                    )
                    context.set_code(STATUSES.get(type(error), _S.INVALID_ARGUMENT))
                    context.set_details(str(error))
                    context.set_trailing_metadata(
                        error_trailers(error.code, errors_pb2.ERROR_ORIGIN_REGISTRY, str(error))
                    )
                    return None

            return grpc.unary_unary_rpc_method_handler(handle)

        return grpc.method_handlers_generic_handler(
            "pintu.v1.Registry",
            {
                "Change": unary(self._change, registry_pb2.ChangeRequest),
                "GetState": unary(self._state, registry_pb2.GetStateRequest),
                "GetJournal": unary(self._journal, registry_pb2.GetJournalRequest),
                "RegisterCertificate": unary(
                    self._register_certificate, registry_pb2.RegisterCertificateRequest
                ),
            },
        )

    def _operator(self, context: grpc.aio.ServicerContext[Any, Any], role: str) -> OperatorId:
        uris = [u.decode("ascii", "replace") for u in context.auth_context().get("peer_uri", [])]
        try:
            identity = identity_from_uris(uris)
        except CertificateIdentityError:
            identity = None
        if not isinstance(identity, OperatorId):
            raise OperatorNotAuthorized("the caller's certificate names no operator")
        granted = self._operators.get(identity)
        if granted is None:
            raise OperatorNotAuthorized(f"operator {identity} is not known to this registry")
        if role == ADMIN and granted != ADMIN:
            raise OperatorNotAuthorized(
                f"operator {identity} (role {granted}) may not change the registry"
            )
        return identity

    async def _commit(
        self,
        changes: Callable[[], list[registry_pb2.RegistryChange]],
        *,
        actor: str,
        reason: str,
    ) -> int:
        """Apply ``changes()`` (computed under the lock, from the current content; none: nothing
        to do) and publish the new version; the version then current.

        One commit at a time, each in a thread: with a large registry, checking the whole
        content and signing it takes seconds, and the distribution side (on this event loop)
        must go on serving meanwhile.
        """
        async with self._committing:

            def commit() -> int:
                batch = changes()
                if not batch:
                    published = self._published
                    assert published is not None
                    return published.version
                version, configuration = self.store.apply(
                    batch, actor=actor, reason=reason, now=self._clock()
                )
                self._publish(version, configuration)
                return version

            return await asyncio.to_thread(commit)

    async def _change(
        self, request: registry_pb2.ChangeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> registry_pb2.ChangeResponse:
        operator = self._operator(context, ADMIN)
        version = await self._commit(
            lambda: list(request.changes), actor=f"operator {operator}", reason=request.reason
        )
        return registry_pb2.ChangeResponse(version=version)

    def _state(
        self, request: registry_pb2.GetStateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> registry_pb2.GlobalConfigurationContent:
        self._operator(context, VIEWER)
        published = self._published
        assert published is not None
        return to_content(
            self.configuration,
            version=published.version,
            built_at=published.built_at,
            expires_at=published.expires_at,
        )

    def _journal(
        self, request: registry_pb2.GetJournalRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> registry_pb2.GetJournalResponse:
        self._operator(context, VIEWER)
        entries = []
        for record in self.store.journal(request.after_version):
            at = Timestamp()
            at.FromDatetime(record.at)
            entries.append(
                registry_pb2.JournalEntry(
                    version=record.version,
                    at=at,
                    actor=record.actor,
                    reason=record.reason,
                    changes=list(record.changes),
                )
            )
        return registry_pb2.GetJournalResponse(entries=entries)

    async def _register_certificate(
        self,
        request: registry_pb2.RegisterCertificateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> registry_pb2.ChangeResponse:
        auth = context.auth_context()
        pem = next(iter(auth.get("x509_pem_cert", ())), b"")
        try:
            certificate = x509.load_pem_x509_certificate(pem)
            uris = [u.decode("ascii", "replace") for u in auth.get("peer_uri", [])]
            server = identity_from_uris(uris)
        except (ValueError, CertificateIdentityError):
            raise OperatorNotAuthorized(
                "the caller's certificate names no security server"
            ) from None
        if not isinstance(server, SecurityServerId):
            raise OperatorNotAuthorized("only a security server registers its certificate")
        der = certificate.public_bytes(serialization.Encoding.DER)

        def change() -> list[registry_pb2.RegistryChange]:
            known = self.configuration.security_servers.get(server)
            if known is None:
                raise ChangeRefused(f"{server} is not a registered security server")
            keep = {certificate_fingerprint(der)}
            if bytes(request.previous_sha256) in known.certificates:
                keep.add(bytes(request.previous_sha256))
            if keep == known.certificates:
                return []
            return [
                registry_pb2.RegistryChange(
                    put_security_server=registry_pb2.RegisteredServer(
                        id=server.to_proto(),
                        addresses=known.addresses,
                        certificate_sha256=sorted(keep),
                        subsystems=sorted(known.subsystems),
                    )
                )
            ]

        version = await self._commit(
            change, actor=f"security server {server}", reason="its authentication certificate"
        )
        return registry_pb2.ChangeResponse(version=version)

    # -- HTTP ----------------------------------------------------------------------------------

    def http_app(self) -> Starlette:
        """The distribution side: the latest signed snapshot."""

        async def snapshot(request: Request) -> Response:
            published = self._published
            if published is None:
                return Response("no snapshot yet\n", 503, media_type="text/plain")
            headers = {"ETag": f'"{published.tag}"', "Cache-Control": "no-cache"}
            asked = request.headers.get("if-none-match", "")
            if published.tag in {tag.strip().strip('"') for tag in asked.split(",")}:
                return Response(status_code=304, headers=headers)
            return Response(published.blob, media_type=CONTENT_TYPE, headers=headers)

        async def healthz(request: Request) -> Response:
            return Response("ok\n", media_type="text/plain")

        return Starlette(
            routes=[
                Route("/global-configuration", snapshot, methods=["GET"]),
                Route("/healthz", healthz, methods=["GET"]),
            ]
        )
