"""The consent service's storage: SQLite by default, PostgreSQL for a highly available service.

One database (an SQLAlchemy URL) holds every consent (its detail as JSON and its signed receipt),
the history of status changes, and the position of the latest change. Every write locks the
position row, so positions are committed in order: a replica that asks for the changes after
position N never misses one. Writes carry an optional request id: a retried grant or change
with the same id returns what the first one did and records nothing new (a different request
under the same id is refused, ``consent_request_conflict``). The schema is created and upgraded
by Alembic (own version table) when the store opens.

The citizens' access history (:meth:`ConsentStore.record_access`, :meth:`ConsentStore.access_of`)
lives beside the consents: one row per event, keyed by the reporting log and the record's number
in it. Recording inserts what is new and skips what is known (``INSERT ... ON CONFLICT DO
NOTHING``), so a batch delivered twice, overlapping batches and concurrent reporters record each
event once and count exactly what each call added.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from consent import _schema as t
from consent._errors import ConsentInvalid, ConsentNotFound, ConsentUnavailable, RequestConflict
from consent._model import (
    MAX_ACCESS_EVENTS,
    AccessEvent,
    Change,
    Consent,
    ConsentDetail,
    ConsentStatus,
    StatusChange,
    check_actor,
    check_reason,
    next_status,
)

# Signs a new consent's receipt: (consent id, detail, time) → receipt.
Signer = Callable[[str, ConsentDetail, dt.datetime], str]
MAX_REQUEST_ID = 128
_STATUS_OF = {
    Change.PAUSE: ConsentStatus.PAUSED,
    Change.RESUME: ConsentStatus.ACTIVE,
    Change.REVOKE: ConsentStatus.REVOKED,
}


def _aware(moment: dt.datetime) -> dt.datetime:
    # SQLite keeps no time zone: everything stored is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _request_id(request_id: str | None) -> str | None:
    if request_id is None or request_id == "":
        return None
    if len(request_id) > MAX_REQUEST_ID or not request_id.isprintable() or " " in request_id:
        raise ConsentInvalid("request_id: at most 128 printable characters without spaces")
    return request_id


def _access_row(event: AccessEvent) -> dict[str, Any]:
    return {
        "log": event.log,
        "seq": event.seq,
        "subject": event.subject,
        "consumer": event.consumer,
        "consumer_server": event.consumer_server,
        "provider": event.provider,
        "method": event.method,
        "purpose": event.purpose,
        "at": event.at.astimezone(dt.UTC),
        "allowed": event.allowed,
        "code": event.code,
        "message_id": event.message_id,
        "checkpoint_size": event.checkpoint_size,
        "checkpoint_root": event.checkpoint_root,
    }


def _access_event(row: Any) -> AccessEvent:
    return AccessEvent(
        log=row.log,
        seq=int(row.seq),
        subject=row.subject,
        consumer=row.consumer,
        consumer_server=row.consumer_server,
        provider=row.provider,
        method=row.method,
        purpose=row.purpose,
        at=_aware(row.at),
        allowed=bool(row.allowed),
        code=row.code,
        message_id=row.message_id,
        checkpoint_size=int(row.checkpoint_size),
        checkpoint_root=row.checkpoint_root,
    )


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_immediate(connection: Any, record: Any) -> None:
    _sqlite_pragmas(connection, record)
    connection.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN itself


def _begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("consent") / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class ConsentStore:
    """The consent database (see the module docstring)."""

    def __init__(self, url: str) -> None:
        try:
            self._engine = create_engine(url)
            # Writes go through their own engine: on SQLite its transactions begin IMMEDIATE,
            # taking the write lock first (a deferred one that read before writing could not
            # upgrade while another thread writes); PostgreSQL locks the position row instead.
            self._writer = self._engine
            if self._engine.dialect.name == "sqlite":
                event.listen(self._engine, "connect", _sqlite_pragmas)
                self._writer = create_engine(url)
                event.listen(self._writer, "connect", _sqlite_immediate)
                event.listen(self._writer, "begin", _begin_immediate)
            migrate(self._engine)
            with self._engine.begin() as connection:
                if connection.execute(select(t.state)).first() is None:
                    connection.execute(insert(t.state).values(id=1, position=0))
        except SQLAlchemyError as error:
            if hasattr(self, "_engine"):
                self._engine.dispose()
            raise ConsentUnavailable(f"consent database: {error}") from error

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()
        self._writer.dispose()

    # -- writing -----------------------------------------------------------------------------

    def grant(
        self,
        detail: ConsentDetail,
        *,
        actor: str,
        now: dt.datetime,
        sign: Signer,
        request_id: str | None = None,
    ) -> Consent:
        """Record a new, active consent with its receipt; or, for a request id seen before,
        the consent that request created.

        Raises:
            RequestConflict: the request id was used for another detail.
            ConsentInvalid: a malformed actor or request id.
            ConsentUnavailable: the database failed.
        """
        actor = check_actor(actor)
        request_id = _request_id(request_id)
        now = now.astimezone(dt.UTC)  # SQLite keeps no offset: everything stored is UTC
        document = json.dumps(detail.to_json(), sort_keys=True)
        for _attempt in range(2):
            try:
                with self._writer.begin() as connection:
                    if request_id is not None:
                        known = self._granted(connection, request_id, document)
                        if known is not None:
                            return known
                    position = self._next_position(connection)
                    consent_id = str(uuid.uuid4())
                    connection.execute(
                        insert(t.consents).values(
                            id=consent_id,
                            subject=detail.subject,
                            provider_member=str(detail.provider_member),
                            detail=document,
                            receipt=sign(consent_id, detail, now),
                            request_id=request_id,
                            created_at=now,
                            valid_until=detail.valid_until.astimezone(dt.UTC),
                            position=position,
                            status=ConsentStatus.ACTIVE.value,
                        )
                    )
                    connection.execute(
                        insert(t.events).values(
                            position=position,
                            consent_id=consent_id,
                            status=ConsentStatus.ACTIVE.value,
                            at=now,
                            actor=actor,
                            reason="granted",
                        )
                    )
                    return self._load(connection, consent_id)
            except IntegrityError:
                if request_id is None:
                    raise ConsentUnavailable("consent database: a write was refused") from None
                continue  # the same request, committed meanwhile by another caller
            except SQLAlchemyError as error:
                raise ConsentUnavailable(f"consent database: {error}") from error
        raise ConsentUnavailable("consent database: the grant could not be recorded")

    def _granted(self, connection: Connection, request_id: str, document: str) -> Consent | None:
        row = connection.execute(
            select(t.consents.c.id, t.consents.c.detail).where(
                t.consents.c.request_id == request_id
            )
        ).first()
        if row is None:
            return None
        if row.detail != document:
            raise RequestConflict(f"request id {request_id} was used for another consent")
        return self._load(connection, row.id)

    def change(
        self,
        consent_id: str,
        change: Change,
        *,
        actor: str,
        now: dt.datetime,
        reason: str = "",
        request_id: str | None = None,
        subject: str | None = None,
    ) -> Consent:
        """Pause, resume or revoke a consent (of ``subject``, when given); for a request id
        seen before, nothing new is recorded and the consent is returned as it is now.

        Raises:
            ConsentNotFound: no such consent (of that subject).
            TransitionRefused: the change is not allowed now (AlreadyRevoked, ConsentExpired).
            RequestConflict: the request id was used for another change.
            ConsentUnavailable: the database failed.
        """
        actor = check_actor(actor)
        request_id = _request_id(request_id)
        if reason:
            reason = check_reason(reason)
        now = now.astimezone(dt.UTC)
        status = _STATUS_OF[change]
        for _attempt in range(2):
            try:
                with self._writer.begin() as connection:
                    if request_id is not None:
                        seen = connection.execute(
                            select(t.events.c.consent_id, t.events.c.status).where(
                                t.events.c.request_id == request_id
                            )
                        ).first()
                        if seen is not None:
                            if (seen.consent_id, seen.status) != (consent_id, status.value):
                                raise RequestConflict(
                                    f"request id {request_id} was used for another change"
                                )
                            return self._load(connection, consent_id, subject)
                    position = self._next_position(connection)
                    consent = self._load(connection, consent_id, subject)
                    next_status(consent, change, now)
                    connection.execute(
                        insert(t.events).values(
                            position=position,
                            consent_id=consent_id,
                            status=status.value,
                            at=now,
                            actor=actor,
                            reason=reason,
                            request_id=request_id,
                        )
                    )
                    connection.execute(
                        update(t.consents)
                        .where(t.consents.c.id == consent_id)
                        .values(position=position, status=status.value)
                    )
                    return self._load(connection, consent_id)
            except IntegrityError:
                if request_id is None:
                    raise ConsentUnavailable("consent database: a write was refused") from None
                continue
            except SQLAlchemyError as error:
                raise ConsentUnavailable(f"consent database: {error}") from error
        raise ConsentUnavailable("consent database: the change could not be recorded")

    def expire_due(self, now: dt.datetime, actor: str = "consent service") -> list[str]:
        """Record EXPIRED for every active or paused consent whose validity has ended; their
        ids."""
        now = now.astimezone(dt.UTC)
        try:
            with self._writer.begin() as connection:
                due = connection.execute(
                    select(t.consents.c.id)
                    .where(
                        t.consents.c.status.in_(
                            [ConsentStatus.ACTIVE.value, ConsentStatus.PAUSED.value]
                        ),
                        t.consents.c.valid_until <= now,
                    )
                    .order_by(t.consents.c.id)
                ).all()
                if not due:
                    return []
                for row in due:
                    position = self._next_position(connection)
                    connection.execute(
                        insert(t.events).values(
                            position=position,
                            consent_id=row.id,
                            status=ConsentStatus.EXPIRED.value,
                            at=now,
                            actor=actor,
                            reason="validity ended",
                        )
                    )
                    connection.execute(
                        update(t.consents)
                        .where(t.consents.c.id == row.id)
                        .values(position=position, status=ConsentStatus.EXPIRED.value)
                    )
                return [row.id for row in due]
        except SQLAlchemyError as error:
            raise ConsentUnavailable(f"consent database: {error}") from error

    def record_access(self, events: Sequence[AccessEvent]) -> tuple[int, int]:
        """Record the access events not recorded yet; (how many were recorded now, how many
        were known already). An event whose log and sequence number are known, in the database
        or earlier in ``events``, is a duplicate and changes nothing (the first one recorded
        stays).

        Raises:
            ConsentUnavailable: the database failed (nothing was recorded).
        """
        unique: dict[tuple[str, int], dict[str, Any]] = {}
        for access_event in events:
            unique.setdefault((access_event.log, access_event.seq), _access_row(access_event))
        if not unique:
            return 0, len(events)
        # Every writer inserts in the same order, so two overlapping reports on PostgreSQL
        # wait for each other instead of deadlocking.
        rows = [unique[key] for key in sorted(unique)]
        dialect = self._writer.dialect.name
        statement = (
            postgresql.insert(t.access) if dialect == "postgresql" else sqlite.insert(t.access)
        )
        new_only = statement.on_conflict_do_nothing(index_elements=["log", "seq"]).returning(
            t.access.c.seq
        )
        for attempt in range(3):
            try:
                with self._writer.begin() as connection:
                    accepted = len(connection.execute(new_only, rows).all())
                return accepted, len(events) - accepted
            except OperationalError as error:
                if attempt == 2:
                    raise ConsentUnavailable(f"consent database: {error}") from error
            except SQLAlchemyError as error:
                raise ConsentUnavailable(f"consent database: {error}") from error
        raise AssertionError("unreachable")

    @staticmethod
    def _next_position(connection: Connection) -> int:
        current = connection.execute(
            select(t.state.c.position).where(t.state.c.id == 1).with_for_update()
        ).scalar_one()
        position = int(current) + 1
        connection.execute(update(t.state).where(t.state.c.id == 1).values(position=position))
        return position

    # -- reading -----------------------------------------------------------------------------

    def position(self) -> int:
        """The position of the latest change (0 before the first)."""
        try:
            with self._engine.connect() as connection:
                return int(connection.execute(select(t.state.c.position)).scalar_one())
        except SQLAlchemyError as error:
            raise ConsentUnavailable(f"consent database: {error}") from error

    def get(self, consent_id: str, subject: str | None = None) -> Consent:
        """The consent ``consent_id`` (of ``subject``, when given).

        Raises:
            ConsentNotFound: none (for that subject).
        """
        try:
            with self._engine.connect() as connection:
                return self._load(connection, consent_id, subject)
        except SQLAlchemyError as error:
            raise ConsentUnavailable(f"consent database: {error}") from error

    def receipt(self, consent_id: str, subject: str | None = None) -> str:
        """The signed receipt of ``consent_id`` (ConsentNotFound: none for that subject)."""
        try:
            with self._engine.connect() as connection:
                row = connection.execute(
                    select(t.consents.c.receipt, t.consents.c.subject).where(
                        t.consents.c.id == consent_id
                    )
                ).first()
        except SQLAlchemyError as error:
            raise ConsentUnavailable(f"consent database: {error}") from error
        if row is None or (subject is not None and row.subject != subject):
            raise ConsentNotFound(f"no consent {consent_id}")
        return str(row.receipt)

    def of_subject(self, subject: str) -> list[Consent]:
        """Every consent of ``subject``, oldest first."""
        try:
            with self._engine.connect() as connection:
                ids = connection.execute(
                    select(t.consents.c.id)
                    .where(t.consents.c.subject == subject)
                    .order_by(t.consents.c.created_at, t.consents.c.id)
                ).scalars()
                return self._load_many(connection, list(ids))
        except SQLAlchemyError as error:
            raise ConsentUnavailable(f"consent database: {error}") from error

    def access_of(
        self,
        pseudonym: str,
        limit: int = MAX_ACCESS_EVENTS,
        before: dt.datetime | None = None,
    ) -> list[AccessEvent]:
        """The access events about the citizen whose pseudonym is ``pseudonym``, newest first:
        at most ``limit`` (1 to 1,000), only those before ``before`` when given.

        A page never ends inside a group of events at the same instant (it ends before the
        group instead), so the next page, before the last event's time, misses none; a group
        larger than ``limit`` comes whole.

        Raises:
            ConsentInvalid: a limit out of range, a time without a time zone.
        """
        if not 1 <= limit <= MAX_ACCESS_EVENTS:
            raise ConsentInvalid(f"limit: from 1 to {MAX_ACCESS_EVENTS}")
        if before is not None and before.tzinfo is None:
            raise ConsentInvalid("before: a time zone is required")
        c = t.access.c
        newest_first = (c.at.desc(), c.log.desc(), c.seq.desc())
        query = select(t.access).where(c.subject == pseudonym)
        if before is not None:
            query = query.where(c.at < before.astimezone(dt.UTC))
        try:
            with self._engine.connect() as connection:
                rows = connection.execute(query.order_by(*newest_first).limit(limit + 1)).all()
                if len(rows) > limit:
                    last = rows[limit - 1].at
                    if rows[limit].at != last:
                        rows = rows[:limit]
                    else:  # the page would end inside the events at ``last``
                        rows = [row for row in rows[:limit] if row.at != last]
                        if not rows:  # they fill the page: they come whole
                            rows = connection.execute(
                                select(t.access)
                                .where(c.subject == pseudonym, c.at == last)
                                .order_by(*newest_first)
                            ).all()
        except SQLAlchemyError as error:
            raise ConsentUnavailable(f"consent database: {error}") from error
        return [_access_event(row) for row in rows]

    def changed_after(
        self, position: int, providers: Iterable[str] | None = None, limit: int = 1000
    ) -> tuple[list[Consent], int]:
        """The consents whose latest change comes after ``position``, in position order (each
        once, as it is now), of the provider members ``providers`` (None: all); and the position
        a watcher has reached once it holds them.

        That position comes from the same query as the ids: a consent changed again while it
        is loaded arrives in its newer state, and the changes committed meanwhile at positions
        in between are still after the position returned, so the next call finds them.
        """
        query = select(t.consents.c.id, t.consents.c.position).where(
            t.consents.c.position > position
        )
        if providers is not None:
            query = query.where(t.consents.c.provider_member.in_(list(providers)))
        try:
            with self._engine.connect() as connection:
                rows = connection.execute(query.order_by(t.consents.c.position).limit(limit)).all()
                reached = int(rows[-1].position) if rows else position
                return self._load_many(connection, [row.id for row in rows]), reached
        except SQLAlchemyError as error:
            raise ConsentUnavailable(f"consent database: {error}") from error

    def fingerprint(self, position: int) -> str:
        """What identifies the change at ``position`` in this store's history ("" for 0 or a
        position it does not have): its consent, status and time, hashed."""
        if position <= 0:
            return ""
        try:
            with self._engine.connect() as connection:
                row = connection.execute(
                    select(t.events.c.consent_id, t.events.c.status, t.events.c.at).where(
                        t.events.c.position == position
                    )
                ).first()
        except SQLAlchemyError as error:
            raise ConsentUnavailable(f"consent database: {error}") from error
        if row is None:
            return ""
        at = _aware(row.at).astimezone(dt.UTC).isoformat()
        return hashlib.sha256(
            f"{position}|{row.consent_id}|{row.status}|{at}".encode()
        ).hexdigest()[:32]

    def _load(self, connection: Connection, consent_id: str, subject: str | None = None) -> Consent:
        found = self._load_many(connection, [consent_id])
        if not found or (subject is not None and found[0].detail.subject != subject):
            raise ConsentNotFound(f"no consent {consent_id}")
        return found[0]

    @staticmethod
    def _load_many(connection: Connection, ids: list[str]) -> list[Consent]:
        if not ids:
            return []
        rows = {
            row.id: row
            for row in connection.execute(select(t.consents).where(t.consents.c.id.in_(ids)))
        }
        history: dict[str, list[StatusChange]] = {}
        for row in connection.execute(
            select(t.events).where(t.events.c.consent_id.in_(ids)).order_by(t.events.c.position)
        ):
            history.setdefault(row.consent_id, []).append(
                StatusChange(ConsentStatus(row.status), _aware(row.at), row.actor, row.reason)
            )
        return [
            Consent(
                consent_id,
                ConsentDetail.from_json(json.loads(rows[consent_id].detail)),
                tuple(history[consent_id]),
                int(rows[consent_id].position),
            )
            for consent_id in ids
            if consent_id in rows
        ]
