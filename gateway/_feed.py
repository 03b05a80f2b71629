"""The citizens' access feed: a provider's security server reports every exchange about a citizen
from its audit log to the consent service's access history (which the citizen portal shows).

The audit log is the outbox. Records are durable before the exchange goes on, so nothing is
lost; the feed reads them in order from its cursor (a row in the log's file, outside the Merkle
tree), only up to the newest signed checkpoint — each event names a checkpoint that covers its
record, so a citizen can ask for the record's inclusion proof — and moves its cursor only after
the consent service acknowledged the batch. An outage of the consent service delays events; a
crash between delivery and cursor update makes the feed deliver a batch again, which the service
counts as duplicates (events are keyed by log and sequence number): nothing is lost and nothing
is recorded twice.

Reported: the provider side's ``request`` records (allowed) and ``refusal`` records (refused,
with the code) that name a citizen — by pseudonym only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import consent
from audit import REFUSAL, REQUEST, AuditError, AuditLog, Checkpoint, ExchangeRecord
from consent import ConsentClient
from pki import TlsIdentity
from proto import IdentifierError, SecurityServerId, SubsystemId

LOGGER = logging.getLogger("pintu.gateway")
CURSOR = "access_feed"
BATCH = 500


def access_event(
    seq: int, body: bytes, server: SecurityServerId, checkpoint: Checkpoint
) -> consent.AccessEvent | None:
    """The access event of record ``seq``, if it is one to report.

    A refusal may name what the caller claimed, not what was checked: a provider this server
    does not serve, a malformed method. Those fields are left out of its event (the consent
    service takes only events about this server's own member); an event that still cannot be
    made is skipped, with an error log, rather than holding up the feed.
    """
    try:
        record = ExchangeRecord.decode(body)
    except (ValueError, TypeError, KeyError):
        return None
    if record.role != "provider" or record.kind not in (REQUEST, REFUSAL) or not record.subject:
        return None
    allowed = record.kind == REQUEST
    fields = {
        "consumer": record.client,
        "consumer_server": record.client_server,
        "provider": record.provider if _owned(record.provider, server) else "",
        "method": record.method,
        "purpose": record.purpose,
    }
    for attempt in (fields, dict.fromkeys(fields, "")):
        if allowed and attempt is not fields:
            break
        try:
            return consent.AccessEvent(
                log=str(server),
                seq=seq,
                subject=record.subject,
                at=record.at,
                allowed=allowed,
                code=record.code,
                message_id=record.message_id,
                checkpoint_size=checkpoint.size,
                checkpoint_root=checkpoint.root.hex(),
                **attempt,
            )
        except consent.AccessInvalid as error:
            reason = str(error)
    LOGGER.error(
        "record %d of the audit log cannot be reported to the access history: %s",
        seq,
        reason,
        extra={"pintu_event": {"event": "access_event_skipped", "seq": seq, "message": reason}},
    )
    return None


def _owned(provider: str, server: SecurityServerId) -> bool:
    """Whether ``provider`` is a subsystem of ``server``'s own member."""
    try:
        return SubsystemId.parse(provider).member == server.owner
    except IdentifierError:
        return False


class AccessFeed:
    """Delivers a provider's access events to the consent service at ``address``."""

    def __init__(
        self,
        log: AuditLog,
        server: SecurityServerId,
        address: str,
        identity: Callable[[], TlsIdentity],
        *,
        interval: float = 1.0,
        batch: int = BATCH,
    ) -> None:
        self._log = log
        self._server = server
        self._address = address
        self._identity = identity
        self._interval = interval
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failing = False

    @property
    def backlog(self) -> int:
        """Records written and not yet passed by the feed (reported or skipped)."""
        try:
            return self._log.size - self._log.cursor(CURSOR)
        except AuditError:
            return self._log.size

    def start(self) -> None:
        """Deliver in the background until stopped."""
        self._task = asyncio.create_task(self._run(), name="access feed")

    async def stop(self) -> None:
        """Stop delivering (what is left goes with the next start)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                while await self.deliver_once():
                    pass  # a full batch: there may be more
            except Exception as error:  # the feed goes on whatever happened; the cursor stayed
                if not self.failing:
                    LOGGER.warning(
                        "the access feed cannot deliver now (it tries again): %s",
                        error,
                        extra={
                            "pintu_event": {
                                "event": "access_feed_failed",
                                "code": getattr(error, "code", type(error).__name__),
                                "message": str(error),
                            }
                        },
                    )
                self.failing = True
            else:
                if self.failing:
                    LOGGER.info("the access feed delivers again")
                self.failing = False
            await asyncio.sleep(self._interval)

    async def deliver_once(self) -> bool:
        """Deliver the next batch of checkpointed records' events; whether the batch was full.

        Raises:
            ConsentError: the consent service did not take them (the cursor stays).
            AuditError: the log cannot be read.
        """
        position = await asyncio.to_thread(self._log.cursor, CURSOR)
        checkpoint = await asyncio.to_thread(self._log.latest_checkpoint)
        if checkpoint is None or checkpoint.size <= position:
            return False
        count = min(self._batch, checkpoint.size - position)
        rows = await asyncio.to_thread(self._log.records_from, position, count)
        events = [
            event
            for seq, body in rows
            if (event := access_event(seq, body, self._server, checkpoint)) is not None
        ]
        if events:
            await self._report(events)
        await asyncio.to_thread(self._log.set_cursor, CURSOR, position + len(rows))
        self.delivered += len(events)
        return len(rows) == self._batch

    async def _report(self, events: Sequence[consent.AccessEvent]) -> None:
        async with ConsentClient(self._address, self._identity()) as client:
            await client.report_access(events)
