"""A security server's audit trail: a record of every exchange attempt in its tamper-evident
log, and the seals that let either side prove what was asked and answered.

Both sides record, in their own log (``role``: ``consumer`` or ``provider``):

* ``request`` — an exchange about to go on (client, servers, method, purpose, the citizen's
  pseudonym; at the provider also the policy decision id, the consent id and the peer's
  certificate serial), **durably before** it is forwarded: if it cannot be written the exchange
  is refused with ``audit_unavailable``;
* ``outcome`` — how it ended: status, duration, sizes and both seals (see :mod:`audit._seal`).
  An answer is recorded **durably before** the caller sees its status; an exchange refused
  midway is recorded in the background;
* ``refusal`` — an exchange refused before it went on (code, reasons, decision id);
* ``certificate`` — a seal's certificate chain, once, before the first record whose seal uses it,
  so that evidence exported from the log verifies on its own.

A checkpoint is signed every ``checkpoint_seconds`` when records were added since the last one,
and when the security server stops.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence

from cryptography import x509

from audit import (
    BODY,
    BODY_KEY,
    CERTIFICATE,
    REFUSAL,
    REQUEST_BODY,
    RESPONSE_BODY,
    AuditError,
    AuditLog,
    BodyKey,
    ExchangeRecord,
    Sealer,
    SealVerifier,
    pseudonym,
)
from audit import OUTCOME as OUTCOME_KIND
from audit import REQUEST as REQUEST_KIND
from gateway._errors import ErrorCode, GatewayError
from gateway._settings import AuditSettings

LOGGER = logging.getLogger("pintu.gateway")


class ExchangeAudit:
    """Writes one security server's records and holds its sealer (see the module docstring)."""

    def __init__(
        self,
        settings: AuditSettings,
        name: str,
        clock: Callable[[], float],
        trust_anchors: Callable[[], Sequence[x509.Certificate]],
        revoked: Callable[[int], bool] = lambda serial: False,
    ) -> None:
        self._settings = settings
        self._clock = clock
        try:
            self.log = AuditLog(
                settings.path,
                name,
                settings.signing_key,
                settings.signing_chain,
                timestamper=settings.timestamper,
            )
        except AuditError as error:
            raise GatewayError(ErrorCode.AUDIT_UNAVAILABLE, str(error)) from None
        self.sealer = Sealer(settings.signing_key, settings.signing_chain)
        self._body_key = BodyKey(settings.body_key) if settings.body_key is not None else None
        self._body_key_recorded = False
        self.verifier = SealVerifier(trust_anchors, revoked)
        latest = self.log.latest_checkpoint()
        # Records written after the newest checkpoint (before a crash) get one soon.
        self._checkpointed = latest.size if latest else 0
        self._task: asyncio.Task[None] | None = None
        self._stamper: asyncio.Task[None] | None = None
        # Whether the TSA failed last time (its outage is logged once, and its recovery).
        self.tsa_failing = False
        self._background: set[asyncio.Future[int]] = set()
        # Thumbprints of the certificate chains already in the log (since this start).
        self._chains: set[str] = set()
        self.failures = 0

    @property
    def keeps_bodies(self) -> bool:
        """Whether bodies can be kept (a body key is configured)."""
        return self._body_key is not None

    def bodies(self, role: str, message_id: str) -> BodyLog:
        """The kept bodies of one exchange (requires :attr:`keeps_bodies`)."""
        return BodyLog(self, role, message_id, self._settings.body_limit_bytes)

    def keep_body(
        self, role: str, message_id: str, direction: str, index: int, body: bytes
    ) -> asyncio.Future[int]:
        """Record one message, encrypted, with the next durable write (the future says
        whether it was written)."""
        key = self._body_key
        if key is None:
            raise GatewayError(ErrorCode.POLICY_ERROR, "no body key to keep the body with")
        if not self._body_key_recorded:
            self._body_key_recorded = True
            written = self.log.append_soon(
                self._record(BODY_KEY, role, "", "", key_id=key.key_id, wrapped_key=key.wrapped)
            )

            def done(future: asyncio.Future[int]) -> None:
                if future.cancelled() or future.exception() is not None:
                    self._body_key_recorded = False  # recorded again with a later body

            written.add_done_callback(done)
        return self._later(
            self._record(
                BODY,
                role,
                message_id,
                "",
                key_id=key.key_id,
                direction=direction,
                index=index,
                ciphertext=key.encrypt(message_id, direction, index, body),
            ),
            f"a body of {message_id}",
        )

    def pseudonym(self, subject: str) -> str:
        """The citizen's keyed pseudonym ("" for none)."""
        return pseudonym(self._settings.pseudonym_key, subject)

    def now(self) -> dt.datetime:
        """The current time (the gateway's clock)."""
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC)

    def start(self) -> None:
        """Sign checkpoints in the background."""
        self._task = asyncio.create_task(self._checkpoints(), name="audit checkpoints")
        if self._settings.timestamper is not None:
            self._stamper = asyncio.create_task(self._stamps(), name="audit timestamps")

    async def stop(self) -> None:
        """Write what is pending, sign a last checkpoint, close the log."""
        for task in (self._task, self._stamper):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.log.aclose(self.now())

    async def _checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self._settings.checkpoint_seconds)
            await asyncio.to_thread(self._checkpoint)

    async def _stamps(self) -> None:
        """Timestamp checkpoints at the TSA, catching up after an outage (checkpoints never
        wait for it)."""
        while True:
            await asyncio.sleep(self._settings.checkpoint_seconds)
            try:
                stamped = await asyncio.to_thread(self.log.stamp_pending)
            except AuditError as error:  # TimestampError among them; the log may be busy
                if not self.tsa_failing:
                    LOGGER.warning(
                        "checkpoints cannot be timestamped now (they are signed as before and"
                        " stamped when the TSA answers again): %s",
                        error,
                        extra={
                            "pintu_event": {
                                "event": "audit_timestamp_failed",
                                "code": error.code,
                                "message": str(error),
                            }
                        },
                    )
                self.tsa_failing = True
                continue
            if self.tsa_failing:
                LOGGER.info("the TSA answers again; %d checkpoints timestamped", stamped)
            self.tsa_failing = False

    def _checkpoint(self) -> None:
        size = self.log.size
        if size == self._checkpointed:
            return
        try:
            self.log.checkpoint(self.now())
            self._checkpointed = size
        except AuditError as error:
            LOGGER.error(
                "could not sign an audit checkpoint: %s",
                error,
                extra={"pintu_event": {"event": "audit_checkpoint_failed", "message": str(error)}},
            )

    def _record(
        self, kind: str, role: str, message_id: str, method: str, **fields: object
    ) -> bytes:
        subject = str(fields.pop("subject_id", ""))
        return ExchangeRecord(
            kind=kind,
            message_id=message_id,
            role=role,
            at=self.now(),
            method=method,
            subject=self.pseudonym(subject),
            **fields,  # type: ignore[arg-type]
        ).encode()

    async def _durably(self, body: bytes, what: str) -> None:
        try:
            await self.log.append(body)
        except AuditError as error:
            self.failures += 1
            LOGGER.error("the audit log cannot be written: %s", error)
            raise GatewayError(
                ErrorCode.AUDIT_UNAVAILABLE,
                f"this security server's audit log cannot be written; {what}",
            ) from None

    async def request(
        self,
        *,
        role: str,
        message_id: str,
        method: str,
        client: str,
        client_server: str,
        provider: str,
        purpose: str,
        subject: str,
        decision_id: str = "",
        consent_id: str = "",
        peer_certificate: str = "",
    ) -> None:
        """Record an exchange, durably, before it is forwarded.

        Raises:
            GatewayError: ``audit_unavailable``.
        """
        body = self._record(
            REQUEST_KIND,
            role,
            message_id,
            method,
            client=client,
            client_server=client_server,
            provider=provider,
            purpose=purpose,
            subject_id=subject,
            decision_id=decision_id,
            consent_id=consent_id,
            peer_certificate=peer_certificate,
        )
        await self._durably(body, "the exchange is refused")

    async def answer(
        self,
        *,
        role: str,
        message_id: str,
        method: str,
        status: str,
        duration: float,
        request_seal: str,
        response_seal: str,
        request_bytes: int,
        response_bytes: int,
        chains: Iterable[tuple[bytes, ...]],
        reasons: tuple[str, ...] = (),
        peer_certificate: str = "",
    ) -> None:
        """Record an answer (its seals, with the certificate chains not yet in the log),
        durably, before the caller sees its status; ``peer_certificate``: the other server's
        certificate serial, when this side did not record it with the request.

        Raises:
            GatewayError: ``audit_unavailable``.
        """
        body = self._outcome(
            role,
            message_id,
            method,
            status,
            duration,
            chains,
            request_seal=request_seal,
            response_seal=response_seal,
            request_bytes=request_bytes,
            response_bytes=response_bytes,
            reasons=reasons,
            peer_certificate=peer_certificate,
        )
        await self._durably(body, "the answer is withheld")

    def _outcome(
        self,
        role: str,
        message_id: str,
        method: str,
        status: str,
        duration: float,
        chains: Iterable[tuple[bytes, ...]],
        **fields: object,
    ) -> bytes:
        """An outcome record, after the certificate chains its seals need."""
        for chain in chains:
            self._remember(role, chain)
        return self._record(
            OUTCOME_KIND,
            role,
            message_id,
            method,
            status=status,
            duration_ms=duration * 1000,
            **fields,
        )

    def _remember(self, role: str, chain: tuple[bytes, ...]) -> None:
        """Record a seal's certificate chain once (riding with the next durable write)."""
        if not chain:
            return
        thumbprint = base64.urlsafe_b64encode(hashlib.sha256(chain[0]).digest()).rstrip(b"=")
        key = thumbprint.decode()
        if key in self._chains:
            return
        self._chains.add(key)
        body = self._record(
            CERTIFICATE,
            role,
            "",
            "",
            thumbprint=key,
            chain=tuple(base64.b64encode(der).decode() for der in chain),
        )
        written = self.log.append_soon(body)

        def done(future: asyncio.Future[int]) -> None:
            if future.cancelled() or future.exception() is not None:
                self._chains.discard(key)  # recorded again with a later seal

        written.add_done_callback(done)

    def outcome(
        self,
        *,
        role: str,
        message_id: str,
        method: str,
        status: str,
        duration: float,
        request_seal: str = "",
        response_seal: str = "",
        chains: Iterable[tuple[bytes, ...]] = (),
    ) -> None:
        """Record how an exchange refused midway ended (in the background: the refusal is
        answered either way; a failure is logged)."""
        body = self._outcome(
            role,
            message_id,
            method,
            status,
            duration,
            chains,
            request_seal=request_seal,
            response_seal=response_seal,
        )
        self._later(body, f"the outcome of {message_id}")

    def refusal(
        self,
        *,
        role: str,
        message_id: str,
        method: str,
        client: str,
        provider: str,
        code: str,
        reasons: tuple[str, ...] = (),
        decision_id: str = "",
        purpose: str = "",
        subject: str = "",
        client_server: str = "",
    ) -> None:
        """Record a refusal (in the background: the refusal is answered either way);
        ``client_server`` is the authenticated peer, when there is one."""
        body = self._record(
            REFUSAL,
            role,
            message_id,
            method[:300],
            client=client,
            provider=provider,
            code=code,
            reasons=reasons,
            decision_id=decision_id,
            purpose=purpose,
            subject_id=subject,
            client_server=client_server,
        )
        self._later(body, "a refusal")

    def _later(self, body: bytes, what: str) -> asyncio.Future[int]:
        """Append ``body`` with the next durable write (a failure is logged)."""
        written = self.log.append_soon(body)
        self._background.add(written)

        def done(future: asyncio.Future[int]) -> None:
            self._background.discard(future)
            error = None if future.cancelled() else future.exception()
            if error is not None:
                self.failures += 1
                LOGGER.error("%s could not be recorded: %s", what, error)

        written.add_done_callback(done)
        return written


class BodyLog:
    """One exchange's kept bodies: each message of each direction, encrypted, up to the
    limit per direction (beyond it the rest is left out and the outcome says
    ``body_truncated``)."""

    __slots__ = (
        "_audit",
        "_counts",
        "_limit",
        "_message_id",
        "_role",
        "_sizes",
        "failed",
        "truncated",
    )

    def __init__(self, audit: ExchangeAudit, role: str, message_id: str, limit: int) -> None:
        self._audit = audit
        self._role = role
        self._message_id = message_id
        self._limit = limit
        self._counts = {REQUEST_BODY: 0, RESPONSE_BODY: 0}
        self._sizes = {REQUEST_BODY: 0, RESPONSE_BODY: 0}
        self.truncated = False
        # Whether a kept body could not be written (the answer is then withheld).
        self.failed = False

    def request(self, message: bytes) -> None:
        """Keep a request message."""
        self._keep(REQUEST_BODY, message)

    def response(self, message: bytes) -> None:
        """Keep a response message."""
        self._keep(RESPONSE_BODY, message)

    def _keep(self, direction: str, message: bytes) -> None:
        index = self._counts[direction]
        self._counts[direction] = index + 1
        if self._sizes[direction] + len(message) > self._limit:
            self.truncated = True
            return
        self._sizes[direction] += len(message)
        written = self._audit.keep_body(self._role, self._message_id, direction, index, message)
        written.add_done_callback(self._written)

    def _written(self, future: asyncio.Future[int]) -> None:
        if future.cancelled() or future.exception() is not None:
            self.failed = True
