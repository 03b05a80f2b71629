"""A provider security server's replica of the consents about its member's data.

:class:`ConsentReplica` answers one exchange's consent state with two dictionary look-ups and a
scan of that citizen's few consents with that consumer. :class:`ReplicaFollower` keeps it up to
date from the consent service's ``Watch`` stream: it resumes from the position it has applied
after a reconnection, starts over when the service says so (``reset``), and notes when it last
heard from the service — a replica that has heard nothing for longer than the configured bound is
stale, and consent-requiring exchanges then fail closed (``consent_state_stale``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable

import grpc
import grpc.aio

from consent._convert import consent_from_proto
from consent._errors import ConsentInvalid
from consent._model import Consent, consent_state
from pki import CONSENT_TLS_NAME, TlsIdentity
from proto import SubsystemId
from proto.pintu.v1 import consent_pb2
from registry import Service

LOGGER = logging.getLogger("pintu.consent")
_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0)


class ConsentReplica:
    """Consents by (subject, consumer), the position applied, and when the service last spoke."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._by_pair: dict[tuple[str, SubsystemId], dict[str, Consent]] = {}
        self._pair_of: dict[str, tuple[str, SubsystemId]] = {}
        self.position = 0
        self.fingerprint = ""
        self.heard_at = float("-inf")
        self.applied = 0

    def __len__(self) -> int:
        return len(self._pair_of)

    def age(self) -> float:
        """Seconds since the consent service was last heard from (inf: never)."""
        return self._clock() - self.heard_at

    def apply(self, changes: consent_pb2.ConsentChanges) -> None:
        """Apply one message of the watch stream. Only a message sent when nothing more was
        pending (``caught_up``: a heartbeat, or the last batch of a catch-up) makes the
        replica fresh.

        Raises:
            ConsentInvalid: a malformed consent (nothing of the message is applied).
        """
        try:
            consents = [consent_from_proto(message) for message in changes.consents]
        except (ValueError, OverflowError) as error:  # e.g. a timestamp out of range
            raise ConsentInvalid(f"a consent the replica cannot read: {error}") from None
        if changes.reset:
            self._by_pair.clear()
            self._pair_of.clear()
        for consent in consents:
            self._put(consent)
        self.position = changes.position
        self.fingerprint = changes.fingerprint
        if changes.caught_up:
            self.heard_at = self._clock()
        self.applied += len(consents)

    def load(self, consents: Iterable[Consent]) -> None:
        """Hold ``consents`` (each replacing any it held with the same id)."""
        for consent in consents:
            self._put(consent)

    def _put(self, consent: Consent) -> None:
        pair = (consent.detail.subject, consent.detail.consumer)
        self._pair_of[consent.id] = pair
        self._by_pair.setdefault(pair, {})[consent.id] = consent

    def state(
        self,
        subject: str,
        consumer: SubsystemId,
        service: Service,
        purpose: str,
        now: dt.datetime,
    ) -> tuple[str, str]:
        """The consent state of one exchange and the deciding consent's id ("" for none)."""
        found = self._by_pair.get((subject, consumer))
        if not found:
            return "none", ""
        return consent_state(found.values(), consumer, service, purpose, now)


class ReplicaFollower:
    """Feeds a :class:`ConsentReplica` from the consent service at ``address`` (mTLS with the
    security server's ``identity()``, its authentication certificate)."""

    def __init__(
        self,
        replica: ConsentReplica,
        address: str,
        identity: Callable[[], TlsIdentity],
    ) -> None:
        self.replica = replica
        self._address = address
        self._identity = identity
        self._task: asyncio.Task[None] | None = None
        self.connections = 0

    def start(self) -> None:
        """Start following (in the background)."""
        self._task = asyncio.create_task(self._follow(), name="consent replica")

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _follow(self) -> None:
        failures = 0
        while True:
            try:
                await self._watch_once()
                LOGGER.warning("the consent service ended the watch; reconnecting")
            except grpc.aio.AioRpcError as error:
                LOGGER.warning(
                    "consent watch failed: %s: %s; reconnecting",
                    error.code().name,
                    error.details(),
                    extra={
                        "pintu_event": {
                            "event": "consent_watch_failed",
                            "status": error.code().name,
                            "replica_age_seconds": round(self.replica.age(), 3),
                        }
                    },
                )
            except ConsentInvalid as error:
                LOGGER.error("the consent service sent a malformed consent: %s", error)
            except Exception:  # the follower must outlive anything; the replica ages meanwhile
                LOGGER.exception("following the consent service failed; reconnecting")
            if self.replica.age() < 1.0:
                failures = 0  # it was serving a moment ago: reconnect at once
            await asyncio.sleep(_BACKOFF[min(failures, len(_BACKOFF) - 1)])
            failures += 1

    async def _watch_once(self) -> None:
        """One watch, until the service ends it or fails."""
        identity = self._identity()
        credentials = grpc.ssl_channel_credentials(
            root_certificates=identity.trust_anchors,
            private_key=identity.private_key,
            certificate_chain=identity.certificate_chain,
        )
        async with grpc.aio.secure_channel(
            self._address,
            credentials,
            options=[("grpc.ssl_target_name_override", CONSENT_TLS_NAME)],
        ) as channel:
            watch = channel.unary_stream(
                "/pintu.v1.Consents/Watch",
                request_serializer=consent_pb2.WatchConsentsRequest.SerializeToString,
                response_deserializer=consent_pb2.ConsentChanges.FromString,
            )
            call = watch(
                consent_pb2.WatchConsentsRequest(
                    after=self.replica.position, fingerprint=self.replica.fingerprint
                )
            )
            self.connections += 1
            async for changes in call:
                self.replica.apply(changes)
