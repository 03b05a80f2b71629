"""The consent store, on SQLite and on PostgreSQL: grants and changes get consecutive positions
and are idempotent under a request id, a subject sees only its own consents, replicas read the
changes after a position in order, due consents are recorded as expired, and concurrent writers
never share or skip a position."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from consent import (
    AlreadyRevoked,
    Change,
    Consent,
    ConsentDetail,
    ConsentExpired,
    ConsentInvalid,
    ConsentNotFound,
    ConsentStatus,
    ConsentStore,
    ConsentUnavailable,
    RequestConflict,
    TransitionRefused,
    verify_receipt,
)
from consent._schema import metadata
from tests.consent.support import (
    DAY,
    HEALTH,
    INCOME,
    KOMINFO,
    NOW,
    OTHER_SUBJECT,
    PERSONS,
    POPREG,
    RECORDS,
    SUBJECT,
    TAX,
    WIB,
    Federation,
    Signer,
    detail,
    run_in_threads,
)

HOUR = dt.timedelta(hours=1)
ACTIVE = ConsentStatus.ACTIVE
PAUSED = ConsentStatus.PAUSED
REVOKED = ConsentStatus.REVOKED
EXPIRED = ConsentStatus.EXPIRED
THREADS = 20


@pytest.fixture
def grant(store: ConsentStore, signer: Signer) -> Callable[..., Consent]:
    """Grant ``detail(**changes)`` (or ``made``) as the citizen, at NOW unless told."""

    def granting(
        made: ConsentDetail | None = None,
        *,
        request_id: str | None = None,
        now: dt.datetime = NOW,
        **changes: object,
    ) -> Consent:
        return store.grant(
            made or detail(**changes),
            actor=f"citizen {SUBJECT}",
            now=now,
            sign=signer.sign,
            request_id=request_id,
        )

    return granting


def statuses(consent: Consent) -> list[ConsentStatus]:
    return [change.status for change in consent.history]


def ids(consents: list[Consent]) -> list[str]:
    return [consent.id for consent in consents]


# --- grant ---------------------------------------------------------------------------------------


def test_a_grant_records_an_active_consent_at_position_one(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    assert store.position() == 0
    granted = grant()
    assert uuid.UUID(granted.id)
    assert granted.detail == detail()
    assert granted.recorded is ACTIVE
    assert statuses(granted) == [ACTIVE]
    (first,) = granted.history
    assert (first.at, first.actor, first.reason) == (NOW, f"citizen {SUBJECT}", "granted")
    assert granted.position == 1
    assert store.position() == 1
    assert store.get(granted.id) == granted
    assert store.get(granted.id, subject=SUBJECT) == granted


def test_the_receipt_is_stored_and_verifies(
    store: ConsentStore, grant: Callable[..., Consent], federation: Federation
) -> None:
    granted = grant(services=(), data_categories=("identity",))
    token = store.receipt(granted.id)
    assert store.receipt(granted.id, subject=SUBJECT) == token
    verified = verify_receipt(token, federation.roots, signer=KOMINFO)
    assert verified.consent_id == granted.id
    assert verified.detail == granted.detail
    assert verified.issued_at == NOW


def test_each_grant_is_a_new_consent_at_the_next_position(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    first, second = grant(), grant()  # the same detail twice, without a request id
    assert first.id != second.id
    assert (first.position, second.position) == (1, 2)
    assert store.position() == 2


def test_a_grant_retried_with_its_request_id_returns_the_same_consent(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    first = grant(request_id="grant-1")
    receipt = store.receipt(first.id)
    again = grant(request_id="grant-1", now=NOW + HOUR)
    assert again.id == first.id
    assert again == first
    assert store.position() == 1
    assert store.receipt(first.id) == receipt
    assert ids(store.of_subject(SUBJECT)) == [first.id]
    # Another request id is another grant.
    assert grant(request_id="grant-2").position == 2


def test_a_request_id_reused_for_another_detail_is_a_conflict(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    first = grant(request_id="grant-1")
    for other in (
        detail(purpose_text="Another text"),
        detail(valid_until=NOW + 31 * DAY),
        detail(subject=OTHER_SUBJECT),
    ):
        with pytest.raises(RequestConflict) as error:
            grant(other, request_id="grant-1")
        assert error.value.code == "consent_request_conflict"
    assert store.position() == 1
    assert ids(store.of_subject(SUBJECT)) == [first.id]
    assert store.of_subject(OTHER_SUBJECT) == []


@pytest.mark.parametrize(
    ("actor", "request_id"),
    [("", None), ("a\nb", None), ("x" * 201, None), ("citizen", "two words"),
     ("citizen", "r" * 129), ("citizen", "tab\t")],
    ids=["empty-actor", "control-actor", "long-actor", "space-id", "long-id", "tab-id"],
)  # fmt: skip
def test_a_malformed_actor_or_request_id_is_refused_before_anything_is_written(
    store: ConsentStore, signer: Signer, actor: str, request_id: str | None
) -> None:
    with pytest.raises(ConsentInvalid):
        store.grant(detail(), actor=actor, now=NOW, sign=signer.sign, request_id=request_id)
    assert store.position() == 0
    assert store.of_subject(SUBJECT) == []


# --- changes -------------------------------------------------------------------------------------


def test_pause_resume_and_revoke_each_take_the_next_position(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    granted = grant()
    paused = store.change(
        granted.id, Change.PAUSE, actor="citizen", now=NOW + HOUR, reason="travelling"
    )
    assert (paused.id, paused.recorded, paused.position) == (granted.id, PAUSED, 2)
    assert statuses(paused) == [ACTIVE, PAUSED]
    assert (paused.history[1].at, paused.history[1].actor) == (NOW + HOUR, "citizen")
    assert paused.history[1].reason == "travelling"
    resumed = store.change(granted.id, Change.RESUME, actor="citizen", now=NOW + 2 * HOUR)
    assert (resumed.recorded, resumed.position) == (ACTIVE, 3)
    revoked = store.change(
        granted.id, Change.REVOKE, actor="helpdesk", now=NOW + 3 * HOUR, reason="asked by phone"
    )
    assert (revoked.recorded, revoked.position) == (REVOKED, 4)
    assert statuses(revoked) == [ACTIVE, PAUSED, ACTIVE, REVOKED]
    assert [c.at for c in revoked.history] == [NOW + n * HOUR for n in range(4)]
    assert store.get(granted.id) == revoked
    assert store.position() == 4


def test_a_paused_consent_can_be_revoked(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    granted = grant()
    store.change(granted.id, Change.PAUSE, actor="citizen", now=NOW)
    revoked = store.change(granted.id, Change.REVOKE, actor="citizen", now=NOW)
    assert statuses(revoked) == [ACTIVE, PAUSED, REVOKED]


@pytest.mark.parametrize(
    ("first", "second"),
    [(None, Change.RESUME), (Change.PAUSE, Change.PAUSE)],
    ids=["resume-active", "pause-paused"],
)
def test_a_change_the_status_does_not_allow_is_refused_and_takes_no_position(
    store: ConsentStore,
    grant: Callable[..., Consent],
    first: Change | None,
    second: Change,
) -> None:
    granted = grant()
    if first is not None:
        store.change(granted.id, first, actor="citizen", now=NOW)
    before = store.get(granted.id)
    with pytest.raises(TransitionRefused) as error:
        store.change(granted.id, second, actor="citizen", now=NOW)
    assert type(error.value) is TransitionRefused
    assert error.value.code == "consent_transition_invalid"
    assert store.get(granted.id) == before
    assert store.position() == before.position
    # The next change still takes the very next position: the refusal left no gap.
    assert store.change(granted.id, Change.REVOKE, actor="citizen", now=NOW).position == (
        before.position + 1
    )


@pytest.mark.parametrize("change", list(Change), ids=lambda c: c.value)
def test_a_revoked_consent_never_changes_again(
    store: ConsentStore, grant: Callable[..., Consent], change: Change
) -> None:
    granted = grant()
    store.change(granted.id, Change.REVOKE, actor="citizen", now=NOW)
    with pytest.raises(AlreadyRevoked) as error:
        store.change(granted.id, change, actor="citizen", now=NOW + HOUR)
    assert error.value.code == "consent_already_revoked"
    assert store.position() == 2
    assert statuses(store.get(granted.id)) == [ACTIVE, REVOKED]


def test_a_consent_past_its_validity_cannot_change_even_before_expiry_is_recorded(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    granted = grant(valid_until=NOW + DAY)
    with pytest.raises(ConsentExpired) as error:
        store.change(granted.id, Change.REVOKE, actor="citizen", now=NOW + DAY)
    assert error.value.code == "consent_expired"
    assert store.position() == 1
    assert statuses(store.get(granted.id)) == [ACTIVE]


def test_a_change_retried_with_its_request_id_is_recorded_once(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    granted = grant()
    paused = store.change(granted.id, Change.PAUSE, actor="citizen", now=NOW, request_id="p-1")
    assert paused.position == 2
    again = store.change(
        granted.id, Change.PAUSE, actor="citizen", now=NOW + HOUR, request_id="p-1"
    )
    assert again.id == granted.id
    assert again == paused
    assert again.position == 2
    assert store.position() == 2
    assert statuses(store.get(granted.id)) == [ACTIVE, PAUSED]


def test_a_change_request_id_reused_for_another_change_is_a_conflict(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    granted, other = grant(), grant()
    store.change(granted.id, Change.PAUSE, actor="citizen", now=NOW, request_id="p-1")
    attempts = [
        (granted.id, Change.REVOKE),  # another change of the same consent
        (granted.id, Change.RESUME),
        (other.id, Change.PAUSE),  # the same change of another consent
    ]
    for consent_id, change in attempts:
        with pytest.raises(RequestConflict) as error:
            store.change(consent_id, change, actor="citizen", now=NOW, request_id="p-1")
        assert error.value.code == "consent_request_conflict"
    assert store.position() == 3
    assert statuses(store.get(granted.id)) == [ACTIVE, PAUSED]
    assert statuses(store.get(other.id)) == [ACTIVE]


# --- one subject's consents ----------------------------------------------------------------------


def test_another_subject_can_neither_see_nor_change_a_consent(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    granted = grant()
    for change in Change:
        with pytest.raises(ConsentNotFound) as error:
            store.change(granted.id, change, actor="citizen", now=NOW, subject=OTHER_SUBJECT)
        assert error.value.code == "consent_not_found"
    with pytest.raises(ConsentNotFound):
        store.get(granted.id, subject=OTHER_SUBJECT)
    with pytest.raises(ConsentNotFound):
        store.receipt(granted.id, subject=OTHER_SUBJECT)
    assert store.get(granted.id) == granted
    assert store.position() == 1
    # Its own subject can.
    paused = store.change(granted.id, Change.PAUSE, actor="citizen", now=NOW, subject=SUBJECT)
    assert paused.position == 2


def test_another_subject_retrying_a_request_id_does_not_get_the_consent(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    granted = grant()
    store.change(
        granted.id, Change.PAUSE, actor="citizen", now=NOW, request_id="p-1", subject=SUBJECT
    )
    with pytest.raises(ConsentNotFound):
        store.change(
            granted.id,
            Change.PAUSE,
            actor="someone else",
            now=NOW,
            request_id="p-1",
            subject=OTHER_SUBJECT,
        )


def test_an_unknown_consent_is_not_found(store: ConsentStore) -> None:
    unknown = str(uuid.uuid4())
    with pytest.raises(ConsentNotFound) as error:
        store.get(unknown)
    assert error.value.code == "consent_not_found"
    with pytest.raises(ConsentNotFound):
        store.receipt(unknown)
    with pytest.raises(ConsentNotFound):
        store.change(unknown, Change.REVOKE, actor="citizen", now=NOW)
    assert store.position() == 0


def test_of_subject_lists_that_subjects_consents_oldest_first(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    first = grant(now=NOW)
    theirs = grant(subject=OTHER_SUBJECT, now=NOW + HOUR)
    second = grant(now=NOW + 2 * HOUR, services=(), data_categories=("address",))
    store.change(first.id, Change.REVOKE, actor="citizen", now=NOW + 3 * HOUR)
    mine = store.of_subject(SUBJECT)
    assert ids(mine) == [first.id, second.id]
    assert statuses(mine[0]) == [ACTIVE, REVOKED]
    assert ids(store.of_subject(OTHER_SUBJECT)) == [theirs.id]
    assert store.of_subject("NIK:0000000000000000") == []


# --- the change stream ---------------------------------------------------------------------------


def changed(store: ConsentStore, *arguments: Any, **options: Any) -> list[Consent]:
    """The consents of ``ConsentStore.changed_after`` (without the position reached)."""
    return store.changed_after(*arguments, **options)[0]


def test_changed_after_returns_each_consent_once_in_position_order_by_provider(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    persons = grant(provider=POPREG, services=(PERSONS,))  # 1
    income = grant(provider=TAX, services=(INCOME,), purpose="taxation")  # 2
    records = grant(provider=HEALTH, services=(RECORDS,))  # 3, provider member POPREG
    store.change(persons.id, Change.PAUSE, actor="citizen", now=NOW)  # 4
    store.change(persons.id, Change.RESUME, actor="citizen", now=NOW)  # 5
    popreg, tax = str(POPREG), str(TAX)

    everything = changed(store, 0)
    assert ids(everything) == [income.id, records.id, persons.id]
    assert [c.position for c in everything] == [2, 3, 5]
    assert statuses(everything[2]) == [ACTIVE, PAUSED, ACTIVE]  # as it is now

    assert ids(changed(store, 0, providers=[popreg])) == [records.id, persons.id]
    assert ids(changed(store, 0, providers=[tax])) == [income.id]
    assert ids(changed(store, 2, providers=[popreg])) == [records.id, persons.id]
    assert ids(changed(store, 3, providers=[popreg])) == [persons.id]
    assert changed(store, 5, providers=[popreg]) == []
    assert changed(store, 5) == []
    assert changed(store, 0, providers=[]) == []
    assert changed(store, 0, providers=["DEMO/GOV/NOBODY"]) == []

    assert ids(changed(store, 0, providers=[popreg], limit=1)) == [records.id]
    assert ids(changed(store, 0, providers=[popreg, tax], limit=2)) == [
        income.id,
        records.id,
    ]
    assert ids(changed(store, 0, limit=3)) == ids(everything)


def test_a_replica_following_the_stream_sees_every_change(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    seen: dict[str, Consent] = {}
    position = 0

    def follow() -> None:
        nonlocal position
        while True:
            batch, reached = store.changed_after(position, providers=[str(POPREG)], limit=2)
            if not batch:
                assert reached == position
                return
            for consent in batch:
                assert consent.position > position
                seen[consent.id] = consent
            assert reached == batch[-1].position
            position = reached

    first = grant()
    follow()
    second = grant()
    grant(provider=TAX, services=(INCOME,), purpose="taxation")
    store.change(first.id, Change.PAUSE, actor="citizen", now=NOW)
    third = grant()
    follow()
    store.change(second.id, Change.REVOKE, actor="citizen", now=NOW)
    follow()
    assert set(seen) == {first.id, second.id, third.id}
    assert seen[first.id].recorded is PAUSED
    assert seen[second.id].recorded is REVOKED
    assert position == store.position()


# --- expiry --------------------------------------------------------------------------------------


def test_expire_due_records_expired_only_for_consents_past_their_validity(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    active_due = grant(valid_until=NOW + DAY)  # 1
    paused_due = grant(valid_until=NOW + DAY)  # 2
    revoked_due = grant(valid_until=NOW + DAY)  # 3
    due_exactly = grant(valid_until=NOW + 2 * DAY)  # 4
    later = grant(valid_until=NOW + 10 * DAY)  # 5
    store.change(paused_due.id, Change.PAUSE, actor="citizen", now=NOW)  # 6
    store.change(revoked_due.id, Change.REVOKE, actor="citizen", now=NOW)  # 7

    assert store.expire_due(NOW + HOUR) == []
    assert store.position() == 7

    expired = store.expire_due(NOW + 2 * DAY, actor="expiry job")
    assert sorted(expired) == sorted([active_due.id, paused_due.id, due_exactly.id])
    assert len(expired) == 3
    assert store.position() == 10
    positions = []
    for consent_id in expired:
        consent = store.get(consent_id)
        assert consent.recorded is EXPIRED
        last = consent.history[-1]
        assert (last.at, last.actor) == (NOW + 2 * DAY, "expiry job")
        positions.append(consent.position)
    assert sorted(positions) == [8, 9, 10]
    assert statuses(store.get(paused_due.id)) == [ACTIVE, PAUSED, EXPIRED]
    assert statuses(store.get(revoked_due.id)) == [ACTIVE, REVOKED]
    assert statuses(store.get(later.id)) == [ACTIVE]

    # Nothing is recorded twice; a recorded expiry is final.
    assert store.expire_due(NOW + 3 * DAY) == []
    assert store.position() == 10
    with pytest.raises(ConsentExpired):
        store.change(active_due.id, Change.REVOKE, actor="citizen", now=NOW + 3 * DAY)
    assert ids(changed(store, 7)) == sorted(expired, key=lambda i: store.get(i).position)


# --- time zones ----------------------------------------------------------------------------------


def test_history_times_are_the_instants_given_whatever_their_time_zone(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    granted = grant(now=NOW.astimezone(WIB))
    paused = store.change(
        granted.id, Change.PAUSE, actor="citizen", now=(NOW + HOUR).astimezone(WIB)
    )
    assert granted.history[0].at == NOW
    assert [c.at for c in store.get(granted.id).history] == [NOW, NOW + HOUR]
    assert paused.history[1].at == NOW + HOUR


def test_expiry_compares_instants_whatever_their_time_zone(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    # Valid until a day from now, written in Jakarta time.
    jakarta = grant(valid_until=(NOW + DAY).astimezone(WIB))
    # Valid until a day from now, written in UTC.
    utc = grant(valid_until=NOW + DAY)
    # An hour before the end, told in Jakarta time: nothing is due yet.
    assert store.expire_due((NOW + DAY - HOUR).astimezone(WIB)) == []
    # An hour after the end, told in UTC: both are due.
    assert sorted(store.expire_due(NOW + DAY + HOUR)) == sorted([jakarta.id, utc.id])


# --- concurrency ---------------------------------------------------------------------------------


def test_concurrent_grants_take_distinct_consecutive_positions(
    store: ConsentStore, signer: Signer
) -> None:
    def granting(index: int) -> Consent:
        return store.grant(
            detail(subject=f"NIK:{index:016d}"), actor="citizen", now=NOW, sign=signer.sign
        )

    granted = run_in_threads(THREADS, granting)
    positions = [c.position for c in granted if isinstance(c, Consent)]
    assert sorted(positions) == list(range(1, THREADS + 1))
    assert store.position() == THREADS
    stream = changed(store, 0)
    assert [c.position for c in stream] == list(range(1, THREADS + 1))
    assert {c.id for c in stream} == {c.id for c in granted if isinstance(c, Consent)}


def test_concurrent_retries_of_one_grant_record_one_consent(
    store: ConsentStore, signer: Signer
) -> None:
    def granting(_index: int) -> Consent:
        return store.grant(
            detail(), actor="citizen", now=NOW, sign=signer.sign, request_id="grant-1"
        )

    granted = run_in_threads(10, granting)
    assert {c.id for c in granted if isinstance(c, Consent)} != set()
    assert len({c.id for c in granted if isinstance(c, Consent)}) == 1
    assert store.position() == 1
    assert len(store.of_subject(SUBJECT)) == 1


# --- the database ------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/consent.db"


@pytest.fixture
def reopened(sqlite_url: str) -> Iterator[Callable[[], ConsentStore]]:
    opened: list[ConsentStore] = []

    def opening() -> ConsentStore:
        opened.append(ConsentStore(sqlite_url))
        return opened[-1]

    yield opening
    for store in opened:
        store.close()


def test_a_reopened_sqlite_store_keeps_everything(
    reopened: Callable[[], ConsentStore], sqlite_url: str, signer: Signer
) -> None:
    first = reopened()
    granted = first.grant(detail(), actor="citizen", now=NOW, sign=signer.sign, request_id="g-1")
    paused = first.change(granted.id, Change.PAUSE, actor="citizen", now=NOW, request_id="p-1")
    receipt = first.receipt(granted.id)
    first.close()

    second = reopened()
    assert second.position() == 2
    assert second.get(granted.id) == paused
    assert second.receipt(granted.id) == receipt
    assert ids(second.of_subject(SUBJECT)) == [granted.id]
    # Request ids survive too, and positions go on.
    assert second.grant(detail(), actor="citizen", now=NOW, sign=signer.sign, request_id="g-1") == (
        paused
    )
    assert (
        second.change(granted.id, Change.PAUSE, actor="citizen", now=NOW, request_id="p-1")
        == paused
    )
    assert second.change(granted.id, Change.RESUME, actor="citizen", now=NOW).position == 3
    second.close()

    third = reopened()  # migrating once more changes nothing
    assert third.position() == 3
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as connection:
        versions = connection.execute("SELECT version_num FROM consent_alembic_version").fetchall()
        state = connection.execute("SELECT id, position FROM consent_state").fetchall()
    assert versions == [("0002",)]
    assert state == [(1, 3)]


def test_the_migrations_create_the_schema_the_store_uses(
    store: ConsentStore, store_url: str
) -> None:
    engine = create_engine(store_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"version_table": "consent_alembic_version"}
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


def test_an_unusable_database_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ConsentUnavailable) as error:
        ConsentStore(f"sqlite:///{tmp_path}/missing/directory/consent.db")
    assert error.value.code == "consent_unavailable"


def test_a_change_committed_while_the_stream_loads_is_not_skipped(
    store: ConsentStore, grant: Callable[..., Consent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """C is revoked and D changed again between the query of a batch's ids and their loading:
    the position reached stays that of the ids, so the next batch still brings C's revocation
    (a replica resuming from a reloaded, later position would never hear of it)."""
    first = grant()
    second = grant(subject=OTHER_SUBJECT)
    members = [str(POPREG)]
    _, position = store.changed_after(0, members)
    store.change(second.id, Change.PAUSE, actor="citizen", now=NOW)  # position 3
    load = ConsentStore._load_many

    def meanwhile(connection: Any, ids: list[str]) -> list[Consent]:
        monkeypatch.setattr(ConsentStore, "_load_many", staticmethod(load))
        store.change(first.id, Change.REVOKE, actor="citizen", now=NOW)  # position 4
        store.change(second.id, Change.RESUME, actor="citizen", now=NOW)  # position 5
        return load(connection, ids)

    monkeypatch.setattr(ConsentStore, "_load_many", staticmethod(meanwhile))
    batch, reached = store.changed_after(position, members)
    assert [c.id for c in batch] == [second.id]
    assert reached == 3
    after, last = store.changed_after(reached, members)
    assert {c.id: c.recorded for c in after} == {
        first.id: ConsentStatus.REVOKED,
        second.id: ConsentStatus.ACTIVE,
    }
    assert last == store.position() == 5


def test_the_fingerprint_names_the_change_at_a_position(
    store: ConsentStore, grant: Callable[..., Consent]
) -> None:
    first = grant()
    assert store.fingerprint(0) == ""
    assert store.fingerprint(2) == ""
    print_one = store.fingerprint(1)
    assert len(print_one) == 32
    assert store.fingerprint(1) == print_one
    store.change(first.id, Change.PAUSE, actor="citizen", now=NOW)
    assert store.fingerprint(2) not in ("", print_one)
