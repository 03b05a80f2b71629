"""The citizens' access history served over mutual TLS: a provider's security server reports
its own log's events about its own member's services (redelivery counted as duplicates, a batch
with anything wrong refused whole), and operators read one citizen's history newest first — by
the pseudonym the service computes with the federation's key, for that citizen only when acting
for one; ``pintu consent accesses`` prints it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from audit import pseudonym
from consent import (
    AccessEvent,
    AccessInvalid,
    CallerNotAllowed,
    ConsentInvalid,
    PseudonymKeyMissing,
    access_event_to_proto,
)
from pintu import cli
from pki import TlsIdentity, certificate_pem
from proto import MemberId, OperatorId
from proto.pintu.v1 import consent_pb2
from tests.consent.service_site import (
    CITIZEN,
    INCOME,
    OTHER_CITIZEN,
    POPREG,
    POPREG_SERVER,
    PSEUDONYM_KEY,
    TAX_SERVER,
    ConsentSite,
)
from tests.consent.support import access_event

pytestmark = pytest.mark.integration

MINE = pseudonym(PSEUDONYM_KEY, CITIZEN)
THEIRS = pseudonym(PSEUDONYM_KEY, OTHER_CITIZEN)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[ConsentSite]:
    site = ConsentSite(tmp_path)
    await site.start()
    try:
        yield site
    finally:
        await site.close()


def event(seq: int, subject: str = MINE, **changes: object) -> AccessEvent:
    """An exchange about ``subject`` recorded by POPREG's ss1 (the site's registered server)."""
    return access_event(seq, subject=subject, **changes)


async def report(site: ConsentSite, events: list[AccessEvent]) -> tuple[int, int]:
    async with site.client(site.server(POPREG_SERVER)) as server:
        return await server.report_access(events)


async def stored(site: ConsentSite, subject: str = MINE) -> list[AccessEvent]:
    assert site.service is not None
    return await asyncio.to_thread(site.service.store.access_of, subject)


async def report_raw(
    site: ConsentSite, request: consent_pb2.ReportAccessRequest
) -> grpc.aio.AioRpcError:
    """ReportAccess as POPREG's ss1 with a message the client would not build; the refusal."""
    identity = site.server(POPREG_SERVER)
    channel = grpc.aio.secure_channel(
        site.address,
        grpc.ssl_channel_credentials(
            identity.trust_anchors, identity.private_key, identity.certificate_chain
        ),
        options=[("grpc.ssl_target_name_override", "consent.pintu.invalid")],
    )
    try:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await channel.unary_unary("/pintu.v1.Consents/ReportAccess")(
                request.SerializeToString(), timeout=10
            )
        return failure.value
    finally:
        await channel.close()


def code(error: grpc.aio.AioRpcError) -> str:
    return str(dict(error.trailing_metadata() or ())["pintu-error-code"])


# -- reporting ------------------------------------------------------------------------------------


async def test_a_redelivered_batch_is_counted_as_duplicates(site: ConsentSite) -> None:
    batch = [event(seq) for seq in range(3)]
    assert await report(site, batch) == (3, 0)
    assert await report(site, batch) == (0, 3)
    assert await report(site, [event(seq) for seq in range(2, 6)]) == (3, 1)
    assert [e.seq for e in await stored(site)] == [5, 4, 3, 2, 1, 0]
    assert (await stored(site))[-1] == batch[0]


async def test_concurrent_reporters_record_each_event_once(site: ConsentSite) -> None:
    batches = [[event(seq) for seq in range(start, start + 60)] for start in range(0, 200, 20)]
    counts = await asyncio.gather(*(report(site, batch) for batch in batches))
    unique = len({e.seq for batch in batches for e in batch})
    assert unique == 240
    assert sum(accepted for accepted, _ in counts) == unique
    assert sum(duplicates for _, duplicates in counts) == 60 * len(batches) - unique
    assert len(await stored(site)) == unique


async def test_an_event_of_another_log_refuses_the_whole_report(site: ConsentSite) -> None:
    batch = [event(1), event(2, log=str(POPREG.server("ss2")))]
    async with site.client(site.server(POPREG_SERVER)) as server:
        with pytest.raises(CallerNotAllowed, match=r"events\[1\]") as refused:
            await server.report_access(batch)
    assert refused.value.code == "consent_caller_not_allowed"
    assert await stored(site) == []  # not even the first event


async def test_an_event_about_another_members_service_refuses_the_whole_report(
    site: ConsentSite,
) -> None:
    batch = [event(1), event(2, provider=str(INCOME))]
    async with site.client(site.server(POPREG_SERVER)) as server:
        with pytest.raises(CallerNotAllowed, match=r"DEMO/GOV/TAX/income"):
            await server.report_access(batch)
    assert await stored(site) == []


async def test_another_members_server_cannot_report_this_members_events(
    site: ConsentSite,
) -> None:
    async with site.client(site.server(TAX_SERVER)) as tax:
        with pytest.raises(CallerNotAllowed):
            await tax.report_access([event(1)])  # POPREG's log, POPREG's service
        with pytest.raises(CallerNotAllowed):
            await tax.report_access([event(1, log=str(TAX_SERVER))])  # POPREG's service
    assert await stored(site) == []


async def test_only_registered_security_servers_may_report(site: ConsentSite) -> None:
    unregistered = MemberId.parse("DEMO/GOV/WELFARE").server("ss9")
    for identity in (site.operator(), site.server(unregistered)):
        async with site.client(identity) as caller:
            with pytest.raises(CallerNotAllowed) as refused:
                await caller.report_access([event(1)])
            assert refused.value.code == "consent_caller_not_allowed"
    assert await stored(site) == []


async def test_a_report_of_more_than_1000_events_is_refused_whole(site: ConsentSite) -> None:
    async with site.client(site.server(POPREG_SERVER)) as server:
        with pytest.raises(AccessInvalid, match="at most 1000") as refused:
            await server.report_access([event(seq) for seq in range(1001)])
        assert refused.value.code == "consent_access_invalid"
        assert await stored(site) == []
        assert await server.report_access([event(seq) for seq in range(1000)]) == (1000, 0)


async def test_a_malformed_event_refuses_the_whole_report_naming_it(site: ConsentSite) -> None:
    good = access_event_to_proto(event(1))
    bad = access_event_to_proto(event(2))
    bad.subject = CITIZEN  # the identifier, not its pseudonym
    error = await report_raw(site, consent_pb2.ReportAccessRequest(events=[good, bad]))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert code(error) == AccessInvalid.code
    assert "events[1] (seq 2): subject" in (error.details() or "")
    unset = access_event_to_proto(event(3))
    unset.ClearField("at")
    error = await report_raw(site, consent_pb2.ReportAccessRequest(events=[unset]))
    assert (code(error), "at: required" in (error.details() or "")) == (AccessInvalid.code, True)
    assert await stored(site) == []


# -- reading --------------------------------------------------------------------------------------


async def test_an_operator_reads_a_citizens_history_newest_first_with_paging(
    site: ConsentSite,
) -> None:
    await report(site, [event(seq) for seq in range(7)] + [event(9, THEIRS)])
    async with site.client() as operator:
        everything = await operator.access_of(CITIZEN)
        assert [e.seq for e in everything] == [6, 5, 4, 3, 2, 1, 0]
        assert everything[0] == event(6)
        first = await operator.access_of(CITIZEN, limit=3)
        assert [e.seq for e in first] == [6, 5, 4]
        second = await operator.access_of(CITIZEN, limit=3, before=first[-1].at)
        assert [e.seq for e in second] == [3, 2, 1]
        third = await operator.access_of(CITIZEN, limit=3, before=second[-1].at)
        assert [e.seq for e in third] == [0]
        assert [e.seq for e in await operator.access_of(OTHER_CITIZEN)] == [9]
        assert await operator.access_of("NIK:3174051234569999") == []


async def test_a_limit_beyond_the_maximum_gets_the_maximum(site: ConsentSite) -> None:
    await report(site, [event(seq) for seq in range(1000)])
    await report(site, [event(seq) for seq in range(1000, 1005)])
    async with site.client() as operator:
        assert len(await operator.access_of(CITIZEN, limit=5000)) == 1000
        assert len(await operator.access_of(CITIZEN)) == 1000
        assert len(await operator.access_of(CITIZEN, limit=2)) == 2


async def test_an_operator_acting_for_a_citizen_reads_only_theirs(site: ConsentSite) -> None:
    await report(site, [event(1), event(2, THEIRS)])
    async with site.client() as operator:
        with pytest.raises(CallerNotAllowed) as refused:
            await operator.access_of(CITIZEN, actor=f"citizen {OTHER_CITIZEN}")
        assert refused.value.code == "consent_caller_not_allowed"
        own = await operator.access_of(CITIZEN, actor=f"citizen {CITIZEN}")
        assert [e.seq for e in own] == [1]
        with pytest.raises(ConsentInvalid, match="actor"):
            await operator.access_of(CITIZEN, actor="citizen \x1b[2J")


async def test_only_the_services_operators_read_access_histories(site: ConsentSite) -> None:
    await report(site, [event(1)])
    for identity in (site.server(POPREG_SERVER), site.operator(OperatorId("stranger"))):
        async with site.client(identity) as caller:
            with pytest.raises(CallerNotAllowed):
                await caller.access_of(CITIZEN)


async def test_reading_a_history_names_a_valid_citizen(site: ConsentSite) -> None:
    async with site.client() as operator:
        with pytest.raises(ConsentInvalid, match="subject: required"):
            await operator.access_of("")
        with pytest.raises(ConsentInvalid, match="subject"):
            await operator.access_of(MINE + "/..")


async def test_without_a_pseudonym_key_histories_cannot_be_read(tmp_path: Path) -> None:
    site = ConsentSite(tmp_path, pseudonym_key=None)
    await site.start()
    try:
        assert await report(site, [event(1)]) == (1, 0)  # reports are stored all the same
        async with site.client() as operator:
            with pytest.raises(PseudonymKeyMissing) as refused:
                await operator.access_of(CITIZEN)
        assert refused.value.code == "consent_pseudonym_key_missing"
    finally:
        await site.close()


async def test_another_key_finds_no_history(tmp_path: Path) -> None:
    """The pseudonyms are keyed: a service holding another key than the security servers'
    finds nothing (and learns nothing) about the citizen."""
    site = ConsentSite(tmp_path, pseudonym_key=b"another federation's key, 32 by.")
    await site.start()
    try:
        await report(site, [event(1)])
        async with site.client() as operator:
            assert await operator.access_of(CITIZEN) == []
    finally:
        await site.close()


def test_a_short_pseudonym_key_is_refused_at_start(tmp_path: Path) -> None:
    site = ConsentSite(tmp_path)
    with pytest.raises(ValueError, match="pseudonym_key"):
        dataclasses.replace(site.settings("sqlite://"), pseudonym_key=b"short")


async def test_the_service_on_postgresql_records_and_lists_access(
    tmp_path: Path, postgres_url: str
) -> None:
    site = ConsentSite(tmp_path)
    await site.start(postgres_url)
    try:
        batches = [[event(seq) for seq in range(start, start + 30)] for start in (0, 10, 20, 0)]
        counts = await asyncio.gather(*(report(site, batch) for batch in batches))
        assert sum(accepted for accepted, _ in counts) == 50
        assert sum(duplicates for _, duplicates in counts) == 70
        async with site.client() as operator:
            first = await operator.access_of(CITIZEN, limit=20)
            rest = await operator.access_of(CITIZEN, before=first[-1].at)
        assert [e.seq for e in first + rest] == list(range(49, -1, -1))
    finally:
        await site.close()


# -- pintu consent accesses -----------------------------------------------------------------------


def operator_folder(site: ConsentSite, folder: Path) -> Path:
    """An operator's credentials folder naming the site's consent service."""
    identity: TlsIdentity = site.operator()
    folder.mkdir()
    (folder / "key.pem").write_bytes(identity.private_key)
    (folder / "cert.pem").write_bytes(identity.certificate_chain)
    (folder / "roots.pem").write_bytes(certificate_pem(site.ca.certificate))
    (folder / "operator.toml").write_text(
        'key = "key.pem"\ncertificate = "cert.pem"\ntrust_anchors = "roots.pem"\n'
        f'consent = "{site.address}"\n'
    )
    return folder


async def test_pintu_consent_accesses_prints_one_line_per_exchange(
    site: ConsentSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await report(
        site,
        [
            event(1),
            event(2, allowed=False, code="access_denied", consumer_server="", purpose=""),
            event(3, THEIRS),
        ],
    )
    folder = operator_folder(site, tmp_path / "operator")
    arguments = ["consent", "accesses", "--subject", CITIZEN, "--operator", str(folder)]
    assert await asyncio.to_thread(cli.main, arguments) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    refused, allowed = lines
    assert refused.startswith(event(2).at.isoformat())
    assert "refused (access_denied)" in refused
    assert f"message {event(2).message_id}" in refused
    assert "allowed" in allowed
    for text in (
        "DEMO/GOV/HOSPITAL/emr via DEMO/GOV/HOSPITAL/ss1",
        "-> DEMO/GOV/POPREG/civilregistry /pintu.popreg.v1.Persons/GetPerson for healthcare",
        f"message {event(1).message_id}",
        "checkpoint 2",
    ):
        assert text in allowed
    assert await asyncio.to_thread(cli.main, [*arguments, "--limit", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == [refused]


async def test_pintu_consent_accesses_reports_a_refusal_by_its_code(
    site: ConsentSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = operator_folder(site, tmp_path / "operator")
    arguments = ["consent", "accesses", "--subject", "", "--operator", str(folder)]
    assert await asyncio.to_thread(cli.main, arguments) == 2
    assert "pintu: error [consent_invalid]: subject: required" in capsys.readouterr().err
