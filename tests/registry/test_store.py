"""RegistryStore on SQLite and on PostgreSQL: schema, versions, journal, content, snapshots and
the changes it refuses."""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import threading

import pytest
import sqlalchemy
from cryptography.hazmat.primitives import serialization

from proto import MemberId, SecurityServerId, ServiceId
from proto.pintu.v1 import registry_pb2
from registry import (
    ChangeRefused,
    GlobalConfiguration,
    JournalRecord,
    RegistryStore,
    RegistryUnavailable,
    StoredSnapshot,
    describe,
)
from tests.registry.support import (
    ASSESSMENT,
    BANK,
    CERT_A,
    CERT_B,
    CERT_C,
    CIVIL,
    CIVIL_REGISTRY,
    INSTANCE,
    POPREG,
    POPREG_SS1,
    POPREG_SS2,
    STATISTICS,
    TAX,
    TAX_ASSESSMENT,
    TAX_SS1,
    Federation,
    add_certificate,
    add_subsystem,
    population_descriptors,
    put_group,
    put_member,
    put_server,
    put_service,
    remove_certificate,
    remove_group,
    remove_member,
    remove_server,
    remove_service,
    remove_subsystem,
    sample_registry,
)

NOW = dt.datetime(2030, 5, 1, 12, 0, tzinfo=dt.UTC)
UNKNOWN = MemberId(INSTANCE, "GOV", "NONE")
TABLES = {
    "alembic_version",
    "registry_state",
    "members",
    "subsystems",
    "security_servers",
    "server_addresses",
    "server_certificates",
    "services",
    "descriptor_files",
    "global_groups",
    "global_group_members",
    "journal",
    "snapshots",
}


def apply(
    store: RegistryStore,
    *changes: registry_pb2.RegistryChange,
    actor: str = "operator alice",
    reason: str = "test",
    now: dt.datetime = NOW,
) -> int:
    version, _ = store.apply(list(changes), actor=actor, reason=reason, now=now)
    return version


def refused(store: RegistryStore, *changes: registry_pb2.RegistryChange) -> str:
    """Apply a batch that must be refused; check that it changed nothing; the message."""
    version, before = store.load()
    journal = store.journal()
    with pytest.raises(ChangeRefused) as info:
        apply(store, *changes)
    assert info.value.code == "change_refused"
    after_version, after = store.load()
    assert after_version == version
    assert store.version() == version
    assert store.journal() == journal
    assert_same_content(after, before)
    return str(info.value)


def assert_same_content(actual: GlobalConfiguration, expected: GlobalConfiguration) -> None:
    assert actual.instance == expected.instance
    assert dict(actual.members) == dict(expected.members)
    assert dict(actual.security_servers) == dict(expected.security_servers)
    assert dict(actual.services) == dict(expected.services)
    assert dict(actual.groups) == dict(expected.groups)
    assert set(actual.descriptor_files) == set(expected.descriptor_files)


# --- schema and versions ------------------------------------------------------------------------


def test_opening_creates_the_schema_with_alembic(store: RegistryStore, store_url: str) -> None:
    engine = sqlalchemy.create_engine(store_url)
    try:
        assert set(sqlalchemy.inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as connection:
            revision = connection.execute(
                sqlalchemy.text("SELECT version_num FROM alembic_version")
            ).scalar_one()
        assert revision == "0001"
    finally:
        engine.dispose()


def test_a_new_store_is_empty_at_version_0(store: RegistryStore) -> None:
    assert store.version() == 0
    version, configuration = store.load()
    assert version == 0
    assert configuration.instance == INSTANCE
    assert not configuration.members
    assert not configuration.security_servers
    assert store.journal() == []
    assert store.latest_snapshot() is None


def test_versions_increase_by_one_per_batch(store: RegistryStore) -> None:
    assert apply(store, put_member(POPREG, "Population Registry", "civilregistry")) == 1
    assert apply(store, put_member(TAX, "Tax Board"), add_subsystem(ASSESSMENT)) == 2
    assert apply(store, put_server(POPREG_SS1)) == 3
    assert store.version() == 3
    version, configuration = store.load()
    assert version == 3
    assert configuration.version == 3


def test_apply_answers_the_new_content(store: RegistryStore) -> None:
    version, configuration = store.apply(
        sample_registry(), actor="operator alice", reason="import", now=NOW
    )
    assert version == 1
    assert configuration.version == 1
    assert_same_content(configuration, store.load()[1])


def test_journal_records_actor_reason_and_changes(store: RegistryStore) -> None:
    first = [put_member(POPREG, "Population Registry", "civilregistry")]
    second = [put_member(TAX, "Tax Board", "assessment"), put_server(TAX_SS1, "[::1]:7201")]
    apply(store, *first, actor="operator alice", reason="POPREG joins", now=NOW)
    later = NOW + dt.timedelta(minutes=5)
    apply(store, *second, actor="security server X", reason="TAX joins", now=later)
    assert store.journal() == [
        JournalRecord(1, NOW, "operator alice", "POPREG joins", (describe(first[0]),)),
        JournalRecord(
            2,
            later,
            "security server X",
            "TAX joins",
            (describe(second[0]), describe(second[1])),
        ),
    ]
    assert store.journal()[1].changes == (
        "put_member DEMO/GOV/TAX 'Tax Board'",
        "put_security_server DEMO/GOV/TAX/ss1 [::1]:7201",
    )
    assert [r.version for r in store.journal(after=1)] == [2]
    assert store.journal(after=2) == []


def test_journal_time_is_the_instant_given_in_any_time_zone(store: RegistryStore) -> None:
    # 14:00 at UTC+2 is 12:00 UTC; the journal must keep the instant, not the wall-clock time.
    local = NOW.astimezone(dt.timezone(dt.timedelta(hours=2)))
    apply(store, put_member(POPREG, "Population Registry"), now=local)
    assert store.journal()[0].at == NOW


# --- content ------------------------------------------------------------------------------------


def test_load_round_trips_everything(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    version, configuration = store.load()
    assert version == 1
    assert configuration.members[POPREG].name == "Population Registry"
    assert configuration.members[POPREG].subsystems == {"civilregistry", "statistics"}
    assert configuration.members[BANK].subsystems == frozenset()
    ss1 = configuration.security_servers[POPREG_SS1]
    assert ss1.addresses == ("popreg-ss1.example.gov:7101", "127.0.0.1:7101")
    assert ss1.certificates == {CERT_A, CERT_B}
    assert ss1.subsystems == frozenset()
    assert configuration.security_servers[POPREG_SS2].subsystems == {"statistics"}
    assert configuration.security_servers[TAX_SS1].addresses == ("[::1]:7201",)
    assert configuration.server_with_certificate(CERT_C) == TAX_SS1
    assert [s.id for s in configuration.servers_for(STATISTICS)] == [POPREG_SS1, POPREG_SS2]
    assert [s.id for s in configuration.servers_for(CIVIL)] == [POPREG_SS1]
    civil = configuration.services[CIVIL_REGISTRY]
    assert civil.methods == ("GetPerson", "ListPeople")  # from the descriptor
    assert civil.description == "Who lives where"
    assert civil.personal_data is True
    assert civil.data_categories == ("identity", "address")
    assert civil.purposes == ("birth-support",)
    assert civil.consent_required is False
    assert civil.legal_basis == "Population Administration Act, art. 58"
    assert civil.descriptor_file == "popreg/v1/popreg.proto"
    tax = configuration.services[TAX_ASSESSMENT]
    assert (tax.methods, tax.consent_required, tax.purposes) == (
        ("Assess",),
        True,
        ("benefit-check", "audit"),
    )
    assert tax.descriptor_file == ""
    assert set(configuration.descriptor_files) == {
        f.SerializeToString(deterministic=True) for f in population_descriptors().file
    }
    group = configuration.groups["registries"]
    assert (group.description, group.members) == (
        "The base registries",
        frozenset({CIVIL, ASSESSMENT}),
    )
    assert configuration.groups_of(CIVIL) == {"registries"}


def test_changes_replace_and_remove_parts(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    apply(
        store,
        put_member(POPREG, "Population Register", "civilregistry", "statistics", "archive"),
        put_server(POPREG_SS2, "127.0.0.1:7202", "127.0.0.1:7102", subsystems=["archive"]),
        put_service(CIVIL_REGISTRY, "GetPerson", description="Fewer methods"),
        put_group("registries", "Only one", ASSESSMENT),
        remove_certificate(POPREG_SS1, CERT_A),
        remove_server(TAX_SS1),
        remove_service(TAX_ASSESSMENT),
    )
    _, configuration = store.load()
    assert configuration.members[POPREG].name == "Population Register"
    assert configuration.members[POPREG].subsystems == {"civilregistry", "statistics", "archive"}
    ss2 = configuration.security_servers[POPREG_SS2]
    assert (ss2.addresses, ss2.subsystems) == (
        ("127.0.0.1:7202", "127.0.0.1:7102"),
        frozenset({"archive"}),
    )
    assert configuration.security_servers[POPREG_SS1].certificates == {CERT_B}
    assert TAX_SS1 not in configuration.security_servers
    assert configuration.server_with_certificate(CERT_C) is None
    civil = configuration.services[CIVIL_REGISTRY]
    assert (civil.methods, civil.description, civil.descriptor_file) == (
        ("GetPerson",),
        "Fewer methods",
        "",
    )
    # No service needs the descriptor files any more.
    assert configuration.descriptor_files == ()
    assert TAX_ASSESSMENT not in configuration.services
    assert configuration.groups["registries"].members == {ASSESSMENT}
    apply(store, remove_group("registries"), remove_member(BANK), remove_subsystem(STATISTICS))
    _, configuration = store.load()
    assert "registries" not in configuration.groups
    assert BANK not in configuration.members
    assert configuration.members[POPREG].subsystems == {"civilregistry", "archive"}


def test_a_server_put_without_certificates_keeps_its_certificates(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    apply(store, put_server(POPREG_SS1, "127.0.0.1:7999"))
    server = store.load()[1].security_servers[POPREG_SS1]
    assert server.addresses == ("127.0.0.1:7999",)
    assert server.certificates == {CERT_A, CERT_B}


def test_add_certificate_registers_the_sha256_of_the_certificate(
    store: RegistryStore, federation: Federation
) -> None:
    # Any DER certificate will do.
    der = federation.signing_certificate.public_bytes(serialization.Encoding.DER)
    apply(store, *sample_registry())
    apply(store, add_certificate(POPREG_SS2, der))
    configuration = store.load()[1]
    assert configuration.server_with_certificate(hashlib.sha256(der).digest()) == POPREG_SS2
    assert configuration.security_servers[POPREG_SS2].certificates == {hashlib.sha256(der).digest()}


@pytest.mark.parametrize(
    ("source", "target", "fingerprint"),
    [(TAX_SS1, POPREG_SS2, CERT_C), (POPREG_SS1, TAX_SS1, CERT_B)],
    ids=["to_a_server_listed_before", "to_a_server_listed_after"],
)
def test_a_certificate_moves_from_one_server_to_another_in_one_batch(
    store: RegistryStore,
    source: SecurityServerId,
    target: SecurityServerId,
    fingerprint: bytes,
) -> None:
    # A fingerprint registered for the wrong server is corrected in one batch: consistent
    # before and after (one server per certificate), so it must be stored whatever the order
    # of the two servers.
    apply(store, *sample_registry())
    _, before = store.load()
    kept = before.security_servers[target].certificates
    version = apply(
        store,
        remove_certificate(source, fingerprint),
        put_server(
            target, *before.security_servers[target].addresses, certificates=[*kept, fingerprint]
        ),
    )
    assert version == 2
    configuration = store.load()[1]
    assert configuration.server_with_certificate(fingerprint) == target
    assert fingerprint not in configuration.security_servers[source].certificates


def test_descriptor_files_shared_by_two_services(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    twin = ServiceId(STATISTICS, "popreg.v1.CivilRegistry")
    apply(store, put_service(twin, descriptors=population_descriptors()))
    apply(store, remove_service(CIVIL_REGISTRY))
    configuration = store.load()[1]
    # The other service still needs the files.
    assert configuration.services[twin].descriptor_file == "popreg/v1/popreg.proto"
    assert len(configuration.descriptor_files) == 2
    apply(store, remove_service(twin))
    assert store.load()[1].descriptor_files == ()


# --- snapshots ----------------------------------------------------------------------------------


def test_latest_snapshot_is_the_last_saved(store: RegistryStore) -> None:
    store.save_snapshot(1, b"first", built_at=NOW, expires_at=NOW + dt.timedelta(hours=1))
    later = NOW + dt.timedelta(minutes=30)
    store.save_snapshot(
        2, b"\x00second\xff", built_at=later, expires_at=later + dt.timedelta(hours=1)
    )
    assert store.latest_snapshot() == StoredSnapshot(
        2, later, later + dt.timedelta(hours=1), b"\x00second\xff"
    )


def test_snapshot_times_are_the_instants_given_in_any_time_zone(store: RegistryStore) -> None:
    local = NOW.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    store.save_snapshot(1, b"signed", built_at=local, expires_at=local + dt.timedelta(hours=1))
    snapshot = store.latest_snapshot()
    assert snapshot is not None
    assert (snapshot.built_at, snapshot.expires_at) == (NOW, NOW + dt.timedelta(hours=1))


def test_reopening_the_store_keeps_the_state(store: RegistryStore, store_url: str) -> None:
    apply(store, *sample_registry(), reason="import")
    apply(store, remove_server(TAX_SS1), reason="decommissioned")
    store.save_snapshot(2, b"signed", built_at=NOW, expires_at=NOW + dt.timedelta(hours=1))
    version, configuration = store.load()
    journal = store.journal()
    store.close()
    again = RegistryStore(store_url, INSTANCE)
    try:
        assert again.version() == version == 2
        assert_same_content(again.load()[1], configuration)
        assert again.journal() == journal
        assert again.latest_snapshot() == StoredSnapshot(
            2, NOW, NOW + dt.timedelta(hours=1), b"signed"
        )
        assert apply(again, remove_member(BANK)) == 3
    finally:
        again.close()


def test_reopening_as_another_instance_is_refused(store: RegistryStore, store_url: str) -> None:
    with pytest.raises(RegistryUnavailable) as info:
        RegistryStore(store_url, "OTHER")
    assert info.value.code == "registry_unavailable"
    assert "DEMO" in str(info.value)
    del info
    # The refused store must not leave a database connection behind (a ResourceWarning when
    # it is collected, which this test's warnings-as-errors turn into a failure here).
    gc.collect()


def test_unreachable_database() -> None:
    with pytest.raises(RegistryUnavailable) as info:
        RegistryStore("sqlite:////nonexistent-directory/registry.db", INSTANCE)
    assert info.value.code == "registry_unavailable"


# --- refused changes: one test per failure mode -------------------------------------------------


def test_an_empty_batch_is_refused(store: RegistryStore) -> None:
    assert "no change" in refused(store)


def test_an_empty_change_is_refused(store: RegistryStore) -> None:
    assert "empty change" in refused(store, registry_pb2.RegistryChange())


def test_a_refused_batch_changes_nothing(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    message = refused(
        store,
        put_member(TAX, "Renamed"),
        put_server(POPREG_SS1, "127.0.0.1:1"),
        remove_member(UNKNOWN),
    )
    assert message.startswith("change 3: ")


def test_a_certificate_added_to_two_servers_in_one_batch(
    store: RegistryStore, federation: Federation
) -> None:
    apply(store, *sample_registry())
    der = federation.signing_certificate.public_bytes(serialization.Encoding.DER)
    message = refused(store, add_certificate(POPREG_SS2, der), add_certificate(TAX_SS1, der))
    assert "registered for" in message


def test_a_certificate_of_another_server_is_refused(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    message = refused(store, put_server(POPREG_SS2, certificates=[CERT_C]))
    assert f"{CERT_C.hex()[:16]}... is registered for" in message


def test_a_certificate_put_on_two_new_servers_in_one_batch(store: RegistryStore) -> None:
    apply(store, put_member(POPREG, "Population Registry", "civilregistry"))
    fingerprint = b"\x07" * 32
    refused(
        store,
        put_server(POPREG_SS1, certificates=[fingerprint]),
        put_server(POPREG_SS2, certificates=[fingerprint]),
    )


def test_a_fingerprint_that_is_not_sha256_is_refused(store: RegistryStore) -> None:
    apply(store, put_member(POPREG, "Population Registry"))
    assert "32 bytes" in refused(store, put_server(POPREG_SS1, certificates=[b"\x01" * 20]))


def test_the_same_server_removed_twice_in_one_batch(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    message = refused(store, remove_server(TAX_SS1), remove_server(TAX_SS1))
    assert message.startswith("change 2: ")


def test_the_same_member_removed_twice_in_one_batch(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    assert refused(store, remove_member(BANK), remove_member(BANK)).startswith("change 2: ")


def test_two_services_with_different_files_of_the_same_name(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    other = population_descriptors("GetPerson")  # same file names, other content
    message = refused(
        store, put_service(ServiceId(STATISTICS, "popreg.v1.CivilRegistry"), descriptors=other)
    )
    assert "differs" in message


def test_removing_a_member_that_still_has_servers(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    message = refused(store, remove_service(TAX_ASSESSMENT), remove_member(TAX))
    assert "security servers" in message


def test_removing_a_member_that_still_provides_services(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    message = refused(store, remove_server(TAX_SS1), remove_member(TAX))
    assert "services" in message


def test_removing_a_subsystem_that_still_provides_services(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    message = refused(store, remove_subsystem(ASSESSMENT))
    assert "inconsistent" in message


def test_a_server_of_a_member_that_is_not_registered(store: RegistryStore) -> None:
    message = refused(store, put_server(POPREG_SS1))
    assert "inconsistent" in message
    assert str(POPREG) in message


def test_a_server_serving_a_subsystem_its_owner_does_not_have(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    refused(store, put_server(TAX_SS1, subsystems=["civilregistry"]))


def test_a_server_serving_a_malformed_subsystem_code(store: RegistryStore) -> None:
    # Refused like any inconsistency, not an exception from inside the store.
    apply(store, *sample_registry())
    refused(store, put_server(TAX_SS1, subsystems=["not a code"]))


def test_a_server_without_addresses(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    change = put_server(TAX_SS1)
    del change.put_security_server.addresses[:]
    refused(store, change)


def test_a_service_of_an_unknown_subsystem(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    refused(store, put_service(ServiceId(BANK.subsystem("payments"), "bank.v1.Payments")))


def test_a_service_whose_descriptors_do_not_define_it(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    message = refused(
        store,
        put_service(
            ServiceId(STATISTICS, "popreg.v1.Statistics"), descriptors=population_descriptors()
        ),
    )
    assert "exactly once" in message


def test_consent_without_personal_data(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    refused(store, put_service(TAX_ASSESSMENT, "Assess", consent_required=True))


def test_a_group_of_an_unknown_subsystem(store: RegistryStore) -> None:
    apply(store, *sample_registry())
    refused(store, put_group("banks", "", BANK.subsystem("payments")))


def test_a_malformed_identifier(store: RegistryStore) -> None:
    change = put_member(POPREG, "Population Registry")
    change.put_member.id.member_code = "POP REG"
    assert refused(store, change).startswith("change 1: ")


@pytest.mark.parametrize(
    "change",
    [
        remove_member(UNKNOWN),
        add_subsystem(UNKNOWN.subsystem("x")),
        remove_subsystem(CIVIL.member.subsystem("unknown")),
        remove_server(POPREG.server("ss9")),
        add_certificate(POPREG.server("ss9"), b"certificate"),
        remove_certificate(POPREG_SS1, b"\x09" * 32),
        remove_certificate(POPREG.server("ss9"), CERT_A),
        remove_service(ServiceId(CIVIL, "popreg.v1.Unknown")),
        remove_group("unknown"),
    ],
    ids=[
        "member",
        "subsystem_of_unknown_member",
        "subsystem",
        "server",
        "certificate_of_unknown_server",
        "certificate",
        "certificate_removed_from_unknown_server",
        "service",
        "group",
    ],
)
def test_removing_something_unknown(
    store: RegistryStore, change: registry_pb2.RegistryChange
) -> None:
    apply(store, *sample_registry())
    assert refused(store, change).startswith("change 1: ")


def test_a_store_builds_on_what_another_store_changed(store_url: str) -> None:
    # Each store keeps the content it last read or wrote; a change by another store (another
    # registry process) moves the version, and the next change starts from the database again.
    first, second = RegistryStore(store_url, INSTANCE), RegistryStore(store_url, INSTANCE)
    try:
        apply(first, put_member(POPREG, "Population Registry"))
        apply(second, put_member(TAX, "Tax Board"))
        version, configuration = first.apply(
            [put_member(BANK, "Bank")], actor="operator alice", reason="test", now=NOW
        )
        assert version == 3
        assert set(configuration.members) == {POPREG, TAX, BANK}
        assert set(second.load()[1].members) == {POPREG, TAX, BANK}
        # A refused batch leaves what the store keeps as it was.
        refused(first, put_member(MemberId("OTHER", "GOV", "X"), "elsewhere"))
        _, after = second.apply(
            [remove_member(TAX)], actor="operator alice", reason="test", now=NOW
        )
        assert set(after.members) == {POPREG, BANK}
        _, last = first.apply(
            [put_member(TAX, "Tax Board again")], actor="operator alice", reason="test", now=NOW
        )
        assert {m: c.name for m, c in last.members.items()} == {
            POPREG: "Population Registry",
            BANK: "Bank",
            TAX: "Tax Board again",
        }
    finally:
        first.close()
        second.close()


# --- several registry processes on one PostgreSQL database --------------------------------------


def test_two_stores_applying_concurrently_get_distinct_consecutive_versions(
    postgres_url: str,
) -> None:
    stores = [RegistryStore(postgres_url, INSTANCE), RegistryStore(postgres_url, INSTANCE)]
    batches = 6
    start = threading.Barrier(len(stores))
    versions: dict[int, list[int]] = {0: [], 1: []}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait(timeout=10)
            for batch in range(batches):
                member = MemberId(INSTANCE, "GOV", f"M{index}X{batch}")
                version = apply(
                    stores[index], put_member(member, f"member {index}/{batch}"), actor=f"p{index}"
                )
                versions[index].append(version)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        every = sorted(versions[0] + versions[1])
        assert every == list(range(1, 2 * batches + 1))
        assert versions[0] == sorted(versions[0])
        assert versions[1] == sorted(versions[1])
        assert stores[0].version() == 2 * batches
        assert [r.version for r in stores[1].journal()] == every
        assert len(stores[1].load()[1].members) == 2 * batches
    finally:
        for store in stores:
            store.close()
