"""The provider side's audit trail: a record of every exchange attempt in the tamper-evident log.

* an allowed exchange is recorded (``request``: client, its server, method, purpose, the
  citizen's pseudonym, the policy decision id and the consent id) **before** anything goes to
  the backend — if the record cannot be written the exchange is refused with
  ``audit_unavailable`` — and its end (``outcome``: status, duration) after, in the
  background;
* a refused exchange is recorded (``refusal``: code, reasons, decision id) as it is refused.

A checkpoint is signed every ``checkpoint_seconds`` when records were added since the last one,
and when the security server stops.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from audit import OUTCOME as OUTCOME_KIND
from audit import REFUSAL, AuditError, AuditLog, ExchangeRecord, pseudonym
from audit import REQUEST as REQUEST_KIND
from gateway._errors import ErrorCode, GatewayError
from gateway._settings import AuditSettings

LOGGER = logging.getLogger("pintu.gateway")
ROLE = "provider"


class ExchangeAudit:
    """Writes the provider side's records (see the module docstring)."""

    def __init__(self, settings: AuditSettings, name: str, clock: Callable[[], float]) -> None:
        self._settings = settings
        self._clock = clock
        try:
            self.log = AuditLog(settings.path, name, settings.signing_key, settings.signing_chain)
        except AuditError as error:
            raise GatewayError(ErrorCode.AUDIT_UNAVAILABLE, str(error)) from None
        latest = self.log.latest_checkpoint()
        # Records written after the newest checkpoint (before a crash) get one soon.
        self._checkpointed = latest.size if latest else 0
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[int]] = set()
        self.failures = 0

    def start(self) -> None:
        """Sign checkpoints in the background."""
        self._task = asyncio.create_task(self._checkpoints(), name="audit checkpoints")

    async def stop(self) -> None:
        """Write what is pending, sign a last checkpoint, close the log."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.log.aclose(dt.datetime.fromtimestamp(self._clock(), dt.UTC))

    async def _checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self._settings.checkpoint_seconds)
            await asyncio.to_thread(self._checkpoint)

    def _checkpoint(self) -> None:
        size = self.log.size
        if size == self._checkpointed:
            return
        try:
            self.log.checkpoint(dt.datetime.fromtimestamp(self._clock(), dt.UTC))
            self._checkpointed = size
        except AuditError as error:
            LOGGER.error(
                "could not sign an audit checkpoint: %s",
                error,
                extra={"pintu_event": {"event": "audit_checkpoint_failed", "message": str(error)}},
            )

    def _record(self, kind: str, message_id: str, method: str, **fields: object) -> bytes:
        subject = str(fields.pop("subject_id", ""))
        return ExchangeRecord(
            kind=kind,
            message_id=message_id,
            role=ROLE,
            at=dt.datetime.fromtimestamp(self._clock(), dt.UTC),
            method=method,
            subject=pseudonym(self._settings.pseudonym_key, subject),
            **fields,  # type: ignore[arg-type]
        ).encode()

    async def request(
        self,
        *,
        message_id: str,
        method: str,
        client: str,
        client_server: str,
        provider: str,
        purpose: str,
        subject: str,
        decision_id: str,
        consent_id: str,
    ) -> None:
        """Record an allowed exchange, durably, before it is forwarded.

        Raises:
            GatewayError: ``audit_unavailable``.
        """
        body = self._record(
            REQUEST_KIND,
            message_id,
            method,
            client=client,
            client_server=client_server,
            provider=provider,
            purpose=purpose,
            subject_id=subject,
            decision_id=decision_id,
            consent_id=consent_id,
        )
        try:
            await self.log.append(body)
        except AuditError as error:
            self.failures += 1
            LOGGER.error("the audit log cannot be written: %s", error)
            raise GatewayError(
                ErrorCode.AUDIT_UNAVAILABLE,
                "the provider's audit log cannot be written; the exchange is refused",
            ) from None

    def outcome(self, message_id: str, method: str, status: str, duration: float) -> None:
        """Record how an allowed exchange ended (in the background: the answer is not held up;
        a failure is logged)."""
        body = self._record(
            OUTCOME_KIND, message_id, method, status=status, duration_ms=duration * 1000
        )
        self._later(body, f"the outcome of {message_id}")

    def refusal(
        self,
        *,
        message_id: str,
        method: str,
        client: str,
        provider: str,
        code: str,
        reasons: tuple[str, ...],
        decision_id: str,
    ) -> None:
        """Record a refusal (in the background: the refusal is answered either way)."""
        body = self._record(
            REFUSAL,
            message_id,
            method[:300],
            client=client,
            provider=provider,
            code=code,
            reasons=reasons,
            decision_id=decision_id,
        )

        self._later(body, "a refusal")

    def _later(self, body: bytes, what: str) -> None:
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
