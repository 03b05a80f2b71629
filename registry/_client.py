"""A security server's side of the registry: its anchor, its copy of the global configuration,
and its calls to the management service.

The **anchor** (``anchor.json``, obtained out of band) names the instance, where the signed
snapshot is distributed, the registry's management address, and the federation's root
certificates. :class:`ConfigurationClient` keeps the last good snapshot on disk, polls with
conditional requests, verifies every snapshot against the anchor's roots, refuses rollbacks,
swaps atomically and tells its subscribers; it retries with exponential back-off and jitter, and
logs before and at expiry. An expired copy is kept (the server can start with it), but
:meth:`GlobalConfiguration.expired` then tells the exchange path to refuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import grpc.aio
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki import REGISTRY_TLS_NAME, TlsIdentity, certificate_pem, write_public
from proto import ERROR_CODE_KEY
from proto.pintu.v1 import registry_pb2
from registry._errors import (
    ConfigurationExpired,
    ConfigurationMalformed,
    ConfigurationRollback,
    RegistryError,
    RegistryUnavailable,
)
from registry._global_configuration import GlobalConfiguration
from registry._snapshot import SnapshotVerifier, VerifiedSnapshot, accept
from registry._source import Subscriber

LOGGER = logging.getLogger("pintu.registry")
ANCHOR_FORMAT = 1
_TIMEOUT = 20.0
# Management messages carry whole federations (an import of 100,000 services with their
# descriptors is about 130 MiB; the registry's state about 25 MiB): far above gRPC's 4 MiB.
MESSAGE_LIMITS = [
    ("grpc.max_receive_message_length", 512 * 1024 * 1024),
    ("grpc.max_send_message_length", 512 * 1024 * 1024),
]

Clock = Callable[[], dt.datetime]


@dataclass(frozen=True)
class Anchor:
    """How a security server finds and trusts its federation's registry."""

    instance: str
    distribution: tuple[str, ...]
    registry: str
    roots: tuple[x509.Certificate, ...]

    def to_json(self) -> dict[str, Any]:
        """The anchor file's content."""
        return {
            "format": ANCHOR_FORMAT,
            "instance": self.instance,
            "distribution": list(self.distribution),
            "registry": self.registry,
            "roots": [
                r.public_bytes(serialization.Encoding.PEM).decode("ascii") for r in self.roots
            ],
        }

    def save(self, path: Path) -> None:
        """Write the anchor file."""
        write_public(path, (json.dumps(self.to_json(), indent=2) + "\n").encode())

    @staticmethod
    def load(path: Path) -> Anchor:
        """Read an anchor file.

        Raises:
            ConfigurationMalformed: unreadable or incomplete, naming what is wrong.
        """
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError) as error:
            raise ConfigurationMalformed(f"anchor {path}: {error}") from None
        if not isinstance(document, dict) or document.get("format") != ANCHOR_FORMAT:
            raise ConfigurationMalformed(f"anchor {path}: not an anchor of format {ANCHOR_FORMAT}")
        try:
            instance = document["instance"]
            distribution = tuple(document["distribution"])
            registry = document["registry"]
            roots = tuple(
                x509.load_pem_x509_certificate(pem.encode("ascii")) for pem in document["roots"]
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ConfigurationMalformed(f"anchor {path}: {error!r}") from None
        if not (isinstance(instance, str) and distribution and roots and isinstance(registry, str)):
            raise ConfigurationMalformed(
                f"anchor {path}: instance, distribution, registry and roots are all needed"
            )
        return Anchor(instance, distribution, registry, roots)


class ConfigurationClient:
    """A security server's copy of the global configuration (see the module docstring)."""

    def __init__(
        self,
        anchor: Anchor,
        cache: Path,
        *,
        poll: dt.timedelta = dt.timedelta(seconds=30),
        clock: Clock = lambda: dt.datetime.now(dt.UTC),
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.anchor = anchor
        self.cache = cache
        self.poll = poll
        self._clock = clock
        self._verifier = SnapshotVerifier(anchor.instance, anchor.roots)
        self._http = http or httpx.AsyncClient(timeout=_TIMEOUT)
        self._snapshot: VerifiedSnapshot | None = None
        self._subscribers: list[Subscriber] = []
        self._task: asyncio.Task[None] | None = None
        self._warned_expiry = 0
        self._taking = asyncio.Lock()
        self.failures = 0
        self.last_success: dt.datetime | None = None

    # -- what the gateway reads ----------------------------------------------------------------

    @property
    def configuration(self) -> GlobalConfiguration:
        """The configuration in use.

        Raises:
            RegistryUnavailable: none was ever obtained.
        """
        if self._snapshot is None:
            raise RegistryUnavailable("no global configuration has been obtained yet")
        return self._snapshot.configuration

    def replace_roots(self, roots: Iterable[x509.Certificate]) -> None:
        """Verify snapshots against ``roots`` from now on (the federation's roots as the
        security server's certificate keeper follows them through a root rollover)."""
        self._verifier = SnapshotVerifier(self.anchor.instance, tuple(roots))

    def seconds_to_expiry(self) -> float:
        """Seconds until the configuration in use expires (negative once it has)."""
        if self._snapshot is None or self._snapshot.configuration.expires_at is None:
            return float("-inf")
        return (self._snapshot.configuration.expires_at - self._clock()).total_seconds()

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` with every new configuration."""
        self._subscribers.append(subscriber)

    # -- obtaining -----------------------------------------------------------------------------

    def load_cache(self) -> bool:
        """Use the last good copy from disk, even expired (the exchange path then refuses).

        Returns False when there is none, or it fails verification (it is then ignored).
        """
        try:
            blob = self.cache.read_bytes()
        except OSError:
            return False
        now = self._clock()
        try:
            snapshot = self._verifier.verify(blob, now=now)
        except ConfigurationExpired:
            # Keep it to start with; verify everything but the time once more.
            snapshot = self._verifier.verify(blob, now=self._built_at(blob))
        except RegistryError as error:
            LOGGER.error("ignoring the cached global configuration %s: %s", self.cache, error)
            return False
        self._snapshot = snapshot
        return True

    def _built_at(self, blob: bytes) -> dt.datetime:
        envelope = registry_pb2.SignedGlobalConfiguration.FromString(blob)
        content = registry_pb2.GlobalConfigurationContent.FromString(envelope.content)
        return content.built_at.ToDatetime(dt.UTC)

    async def refresh(self) -> bool:
        """One conditional request to each distribution address until one answers.

        Returns whether the configuration changed.

        Raises:
            RegistryUnavailable: no address answered.
            RegistryError: the snapshot was refused (signature, rollback, expiry, content);
                the configuration in use stays.
        """
        headers = {"If-None-Match": f'"{self._snapshot.tag}"'} if self._snapshot else {}
        last: Exception | None = None
        for url in self.anchor.distribution:
            try:
                response = await self._http.get(url, headers=headers)
            except httpx.HTTPError as error:
                last = error
                continue
            if response.status_code == 304:
                return False
            if response.status_code != 200:
                last = RegistryUnavailable(f"{url}: HTTP {response.status_code}")
                continue
            return await self._take(response.content)
        raise RegistryUnavailable(f"no distribution address answered: {last}")

    def _accept(self, blob: bytes) -> VerifiedSnapshot | None:
        """Verify ``blob`` and make it the configuration in use (None: it is the one in use).

        Raises:
            RegistryError: refused; the configuration in use stays.
        """
        snapshot = self._verifier.verify(blob, now=self._clock())
        if not accept(self._snapshot, snapshot):
            return None
        write_public(self.cache, blob)
        self._snapshot = snapshot
        self._warned_expiry = 0
        configuration = snapshot.configuration
        LOGGER.info(
            "global configuration version %d in use, valid until %s",
            configuration.version,
            configuration.expires_at.isoformat() if configuration.expires_at else "-",
            extra={
                "pintu_event": {"event": "configuration_updated", "version": configuration.version}
            },
        )
        return snapshot

    async def _take(self, blob: bytes) -> bool:
        # Verifying a large configuration takes a while (seconds at 100,000 services): in a
        # thread, so that the event loop keeps serving exchanges with the configuration in use.
        # One at a time, so that each is judged against the configuration really in use.
        async with self._taking:
            snapshot = await asyncio.to_thread(self._accept, blob)
        if snapshot is None:
            return False
        for subscriber in self._subscribers:
            try:
                await subscriber(snapshot.configuration)
            except Exception:
                LOGGER.exception("a subscriber failed to take the new global configuration")
        return True

    def bootstrap(self) -> None:
        """Obtain a configuration before the server starts: the cached copy when it is still
        valid, else one download (blocking); an expired cached copy is used when the registry
        does not answer (the exchange path then refuses until it does).

        Raises:
            RegistryError: no configuration could be had (none cached, the registry refused
                or did not answer).
        """
        if self.load_cache() and self.seconds_to_expiry() > 0:
            return
        failure: RegistryError = RegistryUnavailable("no distribution address is configured")
        with httpx.Client(timeout=_TIMEOUT) as http:
            for url in self.anchor.distribution:
                try:
                    response = http.get(url)
                except httpx.HTTPError as error:
                    failure = RegistryUnavailable(f"{url}: {error}")
                    continue
                if response.status_code != 200:
                    failure = RegistryUnavailable(f"{url}: HTTP {response.status_code}")
                    continue
                try:
                    self._accept(response.content)
                    self.last_success = self._clock()
                    return
                except RegistryError as error:
                    failure = error
        if self._snapshot is not None:
            self._refused(failure)
            return
        raise failure

    async def catch_up(self, version: int) -> None:
        """Poll until the configuration in use has at least ``version`` (bound it with
        :func:`asyncio.timeout`)."""
        while self._snapshot is None or self._snapshot.configuration.version < version:
            with contextlib.suppress(RegistryError):
                await self.refresh()
            if self._snapshot is None or self._snapshot.configuration.version < version:
                await asyncio.sleep(0.1)

    async def start(self) -> None:
        """Poll in the background."""
        self._task = asyncio.create_task(self._run(), name="global configuration")

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._http.aclose()

    async def _run(self) -> None:
        chooser = random.SystemRandom()
        while True:
            try:
                await self.refresh()
                self.failures = 0
                self.last_success = self._clock()
                delay = self.poll.total_seconds()
            except ConfigurationRollback as error:
                self._refused(error)
                delay = self.poll.total_seconds()
            except RegistryError as error:
                self.failures += 1
                self._refused(error)
                # Exponential back-off from a second, never beyond the poll interval.
                delay = min(self.poll.total_seconds(), 2.0 ** (self.failures - 1))
            self._warn_about_expiry()
            await asyncio.sleep(delay * chooser.uniform(0.8, 1.2))

    def _refused(self, error: RegistryError) -> None:
        LOGGER.warning(
            "global configuration not updated: %s: %s",
            error.code,
            error,
            extra={"pintu_event": {"event": "configuration_refused", "code": error.code}},
        )

    def _warn_about_expiry(self) -> None:
        """Once at half the validity left, once at expiry (until a new snapshot arrives)."""
        snapshot = self._snapshot
        if snapshot is None or snapshot.configuration.expires_at is None:
            return
        configuration = snapshot.configuration
        assert configuration.built_at is not None
        assert configuration.expires_at is not None
        left = self.seconds_to_expiry()
        validity = (configuration.expires_at - configuration.built_at).total_seconds()
        level = 2 if left <= 0 else 1 if left <= validity / 2 else 0
        if level <= self._warned_expiry:
            return
        self._warned_expiry = level
        if level == 2:
            LOGGER.error(
                "the global configuration (version %d) has expired: exchanges are refused until"
                " the registry answers",
                configuration.version,
                extra={
                    "pintu_event": {
                        "event": "configuration_expired",
                        "version": configuration.version,
                    }
                },
            )
        else:
            LOGGER.warning(
                "the global configuration (version %d) expires in %.0f s and the registry has"
                " not answered",
                configuration.version,
                left,
                extra={
                    "pintu_event": {"event": "configuration_expiring", "seconds_left": round(left)}
                },
            )


class RegistryClient:
    """Calls the registry's management service over mutual TLS with ``identity``."""

    def __init__(self, address: str, identity: TlsIdentity) -> None:
        self.address = address
        self.identity = identity

    async def _call(self, method: str, request: bytes) -> bytes:
        credentials = grpc.ssl_channel_credentials(
            self.identity.trust_anchors, self.identity.private_key, self.identity.certificate_chain
        )
        channel = grpc.aio.secure_channel(
            self.address,
            credentials,
            options=[
                ("grpc.ssl_target_name_override", REGISTRY_TLS_NAME),
                ("grpc.use_local_subchannel_pool", 1),
                *MESSAGE_LIMITS,
            ],
        )
        try:
            answer: bytes = await channel.unary_unary(f"/pintu.v1.Registry/{method}", None, None)(
                request, timeout=_TIMEOUT
            )
            return answer
        except grpc.aio.AioRpcError as error:
            trailers = cast(Iterable[tuple[str, str | bytes]], error.trailing_metadata() or ())
            code = next((v for k, v in trailers if k == ERROR_CODE_KEY), None)
            raise RegistryRefusal(
                str(code) if code else "registry_unavailable",
                f"registry at {self.address}: {error.code().name}: {error.details()}",
            ) from None
        finally:
            await channel.close(None)

    async def change(self, changes: list[registry_pb2.RegistryChange], reason: str) -> int:
        """Apply changes; the new version."""
        request = registry_pb2.ChangeRequest(changes=changes, reason=reason)
        answer = await self._call("Change", request.SerializeToString())
        return registry_pb2.ChangeResponse.FromString(answer).version

    async def state(self) -> registry_pb2.GlobalConfigurationContent:
        """The registry's current content."""
        answer = await self._call("GetState", b"")
        return registry_pb2.GlobalConfigurationContent.FromString(answer)

    async def journal(self, after: int = 0) -> list[registry_pb2.JournalEntry]:
        """The journal after a version."""
        request = registry_pb2.GetJournalRequest(after_version=after)
        answer = await self._call("GetJournal", request.SerializeToString())
        return list(registry_pb2.GetJournalResponse.FromString(answer).entries)

    async def register_certificate(self, previous_sha256: bytes = b"") -> int:
        """Register the certificate this client presents (a security server's), keeping the one
        with SHA-256 ``previous_sha256`` and dropping the server's others; the new version."""
        request = registry_pb2.RegisterCertificateRequest(previous_sha256=previous_sha256)
        answer = await self._call("RegisterCertificate", request.SerializeToString())
        return registry_pb2.ChangeResponse.FromString(answer).version


class RegistryRefusal(RegistryError):
    """The registry refused a management call; ``reason`` is its stable code."""

    code = "registry_refused"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.detail = message


def anchor_roots_pem(anchor: Anchor) -> bytes:
    """The anchor's roots as PEM (trust anchors for TLS)."""
    return certificate_pem(*anchor.roots)
