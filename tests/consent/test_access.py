"""The citizens' access history in the consent store, on SQLite and on PostgreSQL: events are
validated, recorded once whatever is redelivered (the same batch, overlapping batches, duplicates
within a batch, concurrent reporters) with exact counts, listed newest first by pseudonym with
paging that misses nothing, and a database of the first schema is upgraded in place."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from importlib import resources
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, insert, inspect

from consent import AccessEvent, AccessInvalid, ConsentInvalid, ConsentStatus, ConsentStore
from consent import _schema as t
from tests.consent.support import (
    NOW,
    OTHER_PSEUDONYM,
    PSEUDONYM,
    SUBJECT,
    WIB,
    Signer,
    access_event,
    detail,
    run_in_threads,
)


def seqs(events: list[AccessEvent]) -> list[int]:
    return [event.seq for event in events]


# --- the event -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"log": "DEMO/GOV/POPREG"}, "log"),
        ({"seq": -1}, "seq"),
        ({"seq": 2**63}, "seq"),
        ({"subject": ""}, "subject"),
        ({"subject": "NIK:3174051234560001"}, "subject"),  # never the identifier itself
        ({"subject": PSEUDONYM.upper()}, "subject"),
        ({"subject": "a" * 65}, "subject"),
        ({"message_id": "abc"}, "message_id"),
        ({"message_id": "g" * 32}, "message_id"),
        ({"at": NOW.replace(tzinfo=None)}, "at"),
        ({"consumer": "DEMO/GOV/HOSPITAL"}, "consumer"),
        ({"consumer": ""}, "consumer"),  # an allowed exchange knows its consumer
        ({"consumer_server": "nowhere"}, "consumer_server"),
        ({"provider": "../etc"}, "provider"),
        ({"method": "GetPerson"}, "method"),
        ({"purpose": "no spaces"}, "purpose"),
        ({"code": "access_denied"}, "code"),  # allowed, yet a refusal code
        ({"allowed": False}, "code"),  # refused without a code
        ({"allowed": False, "code": "Access Denied"}, "code"),
        ({"checkpoint_size": 5}, "checkpoint_size"),  # record 5 is not in a tree of 5
        ({"checkpoint_root": "ab" * 31}, "checkpoint_root"),
        ({"checkpoint_size": 0}, "checkpoint_root"),  # a root without a size
    ],
)
def test_a_malformed_event_is_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(AccessInvalid, match=f"^{field}: ") as refused:
        dataclasses.replace(access_event(5), **changes)
    assert refused.value.code == "consent_access_invalid"


def test_a_refused_exchange_may_leave_out_what_was_not_known_yet() -> None:
    event = access_event(
        3,
        allowed=False,
        code="client_unknown",
        consumer="",
        consumer_server="",
        provider="",
        method="",
        purpose="",
        checkpoint_size=0,
        checkpoint_root="",
    )
    assert (event.allowed, event.code, event.provider) == (False, "client_unknown", "")
    with pytest.raises(AccessInvalid, match=r"^provider: "):
        access_event(3, allowed=False, code="client_unknown", provider="DEMO/GOV")


# --- recording -----------------------------------------------------------------------------------


def test_a_batch_delivered_twice_is_recorded_once(store: ConsentStore) -> None:
    batch = [access_event(seq) for seq in range(5)]
    assert store.record_access(batch) == (5, 0)
    assert store.record_access(batch) == (0, 5)
    assert seqs(store.access_of(PSEUDONYM)) == [4, 3, 2, 1, 0]
    assert store.access_of(PSEUDONYM) == list(reversed(batch))


def test_overlapping_batches_count_only_what_is_new(store: ConsentStore) -> None:
    assert store.record_access([access_event(seq) for seq in range(0, 10)]) == (10, 0)
    assert store.record_access([access_event(seq) for seq in range(5, 20)]) == (10, 5)
    assert store.record_access([access_event(seq) for seq in range(15, 25)]) == (5, 5)
    assert seqs(store.access_of(PSEUDONYM)) == list(range(24, -1, -1))


def test_a_duplicate_within_one_batch_is_counted_as_one(store: ConsentStore) -> None:
    first = access_event(1)
    assert store.record_access([first, access_event(2), first, first]) == (2, 2)
    assert seqs(store.access_of(PSEUDONYM)) == [2, 1]


def test_a_redelivered_event_changes_nothing_even_if_it_differs(store: ConsentStore) -> None:
    original = access_event(7)
    assert store.record_access([original]) == (1, 0)
    altered = dataclasses.replace(original, allowed=False, code="access_denied")
    assert store.record_access([altered]) == (0, 1)
    assert store.access_of(PSEUDONYM) == [original]


def test_events_are_keyed_by_log_and_sequence_number(store: ConsentStore) -> None:
    other_log = access_event(1, log="DEMO/GOV/POPREG/ss2")
    assert store.record_access([access_event(1), other_log]) == (2, 0)
    assert store.record_access([other_log]) == (0, 1)
    assert {(e.log, e.seq) for e in store.access_of(PSEUDONYM)} == {
        ("DEMO/GOV/POPREG/ss1", 1),
        ("DEMO/GOV/POPREG/ss2", 1),
    }


def test_an_empty_report_records_nothing(store: ConsentStore) -> None:
    assert store.record_access([]) == (0, 0)
    assert store.access_of(PSEUDONYM) == []


def test_concurrent_reporters_record_each_event_once_and_count_exactly(
    store: ConsentStore,
) -> None:
    """Eight reporters deliver overlapping batches at once (as a server that redelivers after a
    crash would, beside another process): every event is recorded once, and the counts add up."""
    reporters, stride, size = 8, 50, 200

    def reporting(index: int) -> tuple[int, int]:
        return store.record_access(
            [access_event(seq) for seq in range(index * stride, index * stride + size)]
        )

    counts = run_in_threads(reporters, reporting)
    unique = (reporters - 1) * stride + size
    accepted = sum(c[0] for c in counts if isinstance(c, tuple))
    duplicates = sum(c[1] for c in counts if isinstance(c, tuple))
    assert (accepted, duplicates) == (unique, reporters * size - unique)
    assert seqs(store.access_of(PSEUDONYM, 1000)) == list(range(unique - 1, -1, -1))


def test_concurrent_deliveries_of_one_batch_record_it_once(store: ConsentStore) -> None:
    batch = [access_event(seq) for seq in range(100)]
    counts = run_in_threads(10, lambda _index: store.record_access(batch))
    assert sorted(counts) == [(0, 100)] * 9 + [(100, 0)]  # type: ignore[type-var]
    assert len(store.access_of(PSEUDONYM)) == 100


# --- reading -------------------------------------------------------------------------------------


def test_a_citizens_events_newest_first_with_paging(store: ConsentStore) -> None:
    mine = [access_event(seq) for seq in range(10)]
    theirs = [access_event(seq, subject=OTHER_PSEUDONYM) for seq in range(10, 15)]
    store.record_access([*theirs, *mine])
    first = store.access_of(PSEUDONYM, 4)
    assert seqs(first) == [9, 8, 7, 6]
    second = store.access_of(PSEUDONYM, 4, before=first[-1].at)
    assert seqs(second) == [5, 4, 3, 2]
    third = store.access_of(PSEUDONYM, 4, before=second[-1].at)
    assert seqs(third) == [1, 0]
    assert store.access_of(PSEUDONYM, 4, before=third[-1].at) == []
    assert seqs(store.access_of(OTHER_PSEUDONYM)) == [14, 13, 12, 11, 10]
    assert store.access_of("00" * 16) == []


def test_before_is_an_instant_whatever_its_time_zone(store: ConsentStore) -> None:
    store.record_access([access_event(seq) for seq in range(4)])
    cut = (NOW + dt.timedelta(seconds=2)).astimezone(WIB)
    assert seqs(store.access_of(PSEUDONYM, before=cut)) == [1, 0]
    assert store.access_of(PSEUDONYM)[0].at == NOW + dt.timedelta(seconds=3)


def test_a_page_never_ends_inside_the_events_of_one_instant(store: ConsentStore) -> None:
    """Paging goes by time: a page that ended between two events at the same instant would
    make the next page (before that instant) skip the rest of them."""
    late, early = NOW + dt.timedelta(seconds=10), NOW
    store.record_access(
        [access_event(seq, at=late) for seq in (1, 2, 3)]
        + [access_event(seq, at=early) for seq in (4, 5)]
    )
    page = store.access_of(PSEUDONYM, 4)  # would end after one of the early events
    assert seqs(page) == [3, 2, 1]
    assert seqs(store.access_of(PSEUDONYM, 4, before=page[-1].at)) == [5, 4]
    # One instant's events fill the page: they come whole rather than not at all.
    assert seqs(store.access_of(PSEUDONYM, 2)) == [3, 2, 1]
    assert seqs(store.access_of(PSEUDONYM, 3)) == [3, 2, 1]


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_a_limit_out_of_range_is_refused(store: ConsentStore, limit: int) -> None:
    with pytest.raises(ConsentInvalid, match="limit"):
        store.access_of(PSEUDONYM, limit)


def test_a_time_without_a_time_zone_is_refused(store: ConsentStore) -> None:
    with pytest.raises(ConsentInvalid, match="before"):
        store.access_of(PSEUDONYM, before=NOW.replace(tzinfo=None))


# --- the schema ----------------------------------------------------------------------------------


def test_a_database_of_the_first_schema_is_upgraded_and_keeps_its_consents(
    store_url: str, signer: Signer
) -> None:
    """A consent service of the first release left a database at migration 0001: the store
    upgrades it when it opens, keeping every consent, and records access events."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("consent") / "migrations"))
    engine = create_engine(store_url)
    made = detail()
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
        with engine.begin() as connection:
            assert not inspect(connection).has_table("access_events")
            connection.execute(insert(t.state).values(id=1, position=1))
            connection.execute(
                insert(t.consents).values(
                    id="c-1",
                    subject=SUBJECT,
                    provider_member=str(made.provider_member),
                    detail=json.dumps(made.to_json(), sort_keys=True),
                    receipt=signer.sign("c-1", made, NOW),
                    created_at=NOW,
                    valid_until=made.valid_until,
                    position=1,
                    status="active",
                )
            )
            connection.execute(
                insert(t.events).values(
                    position=1,
                    consent_id="c-1",
                    status="active",
                    at=NOW,
                    actor="operator portal",
                    reason="granted",
                )
            )
    finally:
        engine.dispose()

    store = ConsentStore(store_url)
    try:
        assert store.position() == 1
        kept = store.get("c-1", SUBJECT)
        assert (kept.detail, kept.recorded) == (made, ConsentStatus.ACTIVE)
        assert store.record_access([access_event(0), access_event(1)]) == (2, 0)
        assert seqs(store.access_of(PSEUDONYM)) == [1, 0]
    finally:
        store.close()
    engine = create_engine(store_url)
    try:
        with engine.connect() as connection:
            revision = connection.exec_driver_sql(
                "SELECT version_num FROM consent_alembic_version"
            ).scalar_one()
            indexes = {index["name"] for index in inspect(connection).get_indexes("access_events")}
    finally:
        engine.dispose()
    assert revision == "0002"
    assert "access_events_by_subject" in indexes
