"""The sample agencies' backends, called directly as their provider security server would."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any

import grpc
import grpc.aio
import pytest

import demo
from demo import AGENCIES, Agency, AgencyBackend, serve_agency
from demo.contracts import (
    health_insurance_pb2,
    health_insurance_pb2_grpc,
    population_pb2,
    population_pb2_grpc,
    tax_pb2,
    tax_pb2_grpc,
)

PARENT = "NIK:3174055403940003"  # Siti Rahmawati, the scenario's applicant
FATHER = "NIK:3174050208910002"  # Budi Santoso
SON = "NIK:3174052106210001"  # Ahmad Fauzan Santoso
NEWBORN = "NIK:3174055701260001"  # Putri Ayu Santoso
DEWI = "NIK:3578094511880002"  # Surabaya; coverage suspended, not a taxpayer
MADE = "NIK:5171033012790001"  # Denpasar; not insured, exempt from income tax
UNKNOWN = "NIK:3201010101010001"  # nobody in the sample data
TIMEOUT = 5.0
MALFORMED_IDS = [
    "3174055403940003",
    "nik:3174055403940003",
    "NIK:317405540394000",
    "NIK:31740554039400031",
    "NIK:31740554039400AB",
    "NIK: 3174055403940003",
]


def verified(subject: str | None = PARENT) -> tuple[tuple[str, str], ...]:
    """The metadata a provider security server passes to its backend."""
    metadata = [
        ("pintu-client", "DEMO/GOV/WELFARE/birthsupport"),
        ("pintu-purpose", "birth-support"),
        ("pintu-user", "CW-0421"),
        ("pintu-issue", "APP-2026-0001"),
        ("pintu-message-id", "5f0c6a3e9d1b4c2a8e7f6d5c4b3a2910"),
    ]
    if subject is not None:
        metadata.append(("pintu-subject", subject))
    return tuple(metadata)


def agency(key: str) -> Agency:
    return next(agency for agency in AGENCIES if agency.key == key)


async def refusal(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def stream_refusal(call: AsyncIterator[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    return caught.value


async def _channel_to(key: str) -> AsyncIterator[grpc.aio.Channel]:
    backend = await serve_agency(agency(key), "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{backend.port}") as channel:
            yield channel
    finally:
        await backend.stop(None)


@pytest.fixture
async def popreg() -> AsyncIterator[Any]:
    async for channel in _channel_to("popreg"):
        yield population_pb2_grpc.CivilRegistryStub(channel)


@pytest.fixture
async def nhis() -> AsyncIterator[Any]:
    async for channel in _channel_to("nhis"):
        yield health_insurance_pb2_grpc.EligibilityStub(channel)


@pytest.fixture
async def tax() -> AsyncIterator[Any]:
    async for channel in _channel_to("tax"):
        yield tax_pb2_grpc.IncomeStatementsStub(channel)


# The package's face.


def test_public_names_are_sorted_and_documented() -> None:
    assert demo.__all__ == sorted(demo.__all__)
    for name in demo.__all__:
        value = getattr(demo, name)
        if callable(value):
            # A dataclass without a docstring gets its signature as one.
            assert value.__doc__, name
            assert not value.__doc__.startswith(f"{name}("), name


def test_agencies_are_the_four_members_in_order() -> None:
    assert [(a.key, str(a.member), str(a.subsystem)) for a in AGENCIES] == [
        ("welfare", "DEMO/GOV/WELFARE", "DEMO/GOV/WELFARE/birthsupport"),
        ("popreg", "DEMO/GOV/POPREG", "DEMO/GOV/POPREG/civilregistry"),
        ("nhis", "DEMO/PUB/NHIS", "DEMO/PUB/NHIS/eligibility"),
        ("tax", "DEMO/GOV/TAX", "DEMO/GOV/TAX/income"),
    ]
    assert all(a.member_name for a in AGENCIES)


def test_agency_services_name_their_methods() -> None:
    offered = {a.key: [(s.name, s.methods) for s in a.services] for a in AGENCIES if a.services}
    assert offered == {
        "popreg": [
            (
                "popreg.v1.CivilRegistry",
                ("GetPerson", "GetBirthRecord", "ListHouseholdMembers"),
            )
        ],
        "nhis": [("nhis.v1.Eligibility", ("GetCoverage", "ListPrenatalClaims"))],
        "tax": [("tax.v1.IncomeStatements", ("GetIncomeSummary",))],
    }
    assert all(s.description for a in AGENCIES for s in a.services)
    assert agency("welfare").services == ()
    assert agency("welfare").add_servicers is None


async def test_welfare_has_no_backend_to_serve() -> None:
    with pytest.raises(ValueError, match="welfare offers no services"):
        await serve_agency(agency("welfare"), "127.0.0.1:0")


async def test_serving_on_a_taken_port_fails() -> None:
    first = await serve_agency(agency("popreg"), "127.0.0.1:0")
    try:
        with pytest.raises(OSError, match="cannot listen"):
            await serve_agency(agency("tax"), f"127.0.0.1:{first.port}")
    finally:
        await first.stop(None)


async def test_serve_agency_reports_the_bound_port() -> None:
    backend = await serve_agency(agency("tax"), "127.0.0.1:0")
    try:
        assert isinstance(backend, AgencyBackend)
        assert backend.agency is agency("tax")
        assert 0 < backend.port < 65536
    finally:
        await backend.stop(None)


# Population registry.


async def test_get_person_answers_the_subject(popreg: Any) -> None:
    person = await popreg.GetPerson(
        population_pb2.GetPersonRequest(citizen_id=PARENT), metadata=verified(), timeout=TIMEOUT
    )
    assert person.citizen_id == PARENT
    assert person.full_name == "Siti Rahmawati"
    assert person.sex == population_pb2.SEX_FEMALE
    assert person.birth_date == population_pb2.Date(year=1994, month=3, day=14)
    assert person.marital_status == population_pb2.MARITAL_STATUS_MARRIED
    assert person.address.city == "Kota Jakarta Selatan"
    assert person.family_card_number == "3174052009190004"
    assert person.nationality == "IDN"


async def test_get_person_takes_the_subject_when_the_request_names_nobody(popreg: Any) -> None:
    person = await popreg.GetPerson(
        population_pb2.GetPersonRequest(), metadata=verified(FATHER), timeout=TIMEOUT
    )
    assert person.full_name == "Budi Santoso"


async def test_get_person_without_a_subject_answers_the_request(popreg: Any) -> None:
    person = await popreg.GetPerson(
        population_pb2.GetPersonRequest(citizen_id=MADE), metadata=verified(None), timeout=TIMEOUT
    )
    assert person.full_name == "Made Wirawan"


async def test_get_person_unknown_citizen_is_not_found(popreg: Any) -> None:
    error = await refusal(
        popreg.GetPerson(
            population_pb2.GetPersonRequest(citizen_id=UNKNOWN),
            metadata=verified(UNKNOWN),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error.details() == f"no resident {UNKNOWN} in the population register"


async def test_get_person_of_another_citizen_than_the_subject_is_denied(popreg: Any) -> None:
    error = await refusal(
        popreg.GetPerson(
            population_pb2.GetPersonRequest(citizen_id=FATHER), metadata=verified(), timeout=TIMEOUT
        )
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == (
        f"citizen_id: {FATHER} is not the citizen this exchange concerns "
        f"(pintu-subject is {PARENT})"
    )


@pytest.mark.parametrize("citizen_id", MALFORMED_IDS)
async def test_get_person_malformed_citizen_id_is_invalid(popreg: Any, citizen_id: str) -> None:
    error = await refusal(
        popreg.GetPerson(
            population_pb2.GetPersonRequest(citizen_id=citizen_id),
            metadata=verified(None),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("citizen_id: ")


async def test_get_person_naming_nobody_is_invalid(popreg: Any) -> None:
    error = await refusal(
        popreg.GetPerson(
            population_pb2.GetPersonRequest(), metadata=verified(None), timeout=TIMEOUT
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "citizen_id: required"


async def test_malformed_subject_is_invalid(popreg: Any) -> None:
    error = await refusal(
        popreg.GetPerson(
            population_pb2.GetPersonRequest(citizen_id=PARENT),
            metadata=verified("KTP:3174055403940003"),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("pintu-subject: ")


async def test_birth_record_is_given_to_a_parent(popreg: Any) -> None:
    for parent in (PARENT, FATHER):
        record = await popreg.GetBirthRecord(
            population_pb2.GetBirthRecordRequest(child_citizen_id=NEWBORN),
            metadata=verified(parent),
            timeout=TIMEOUT,
        )
        assert record.child_name == "Putri Ayu Santoso"
        assert record.birth_date == population_pb2.Date(year=2026, month=1, day=17)
        assert (record.mother_citizen_id, record.father_citizen_id) == (PARENT, FATHER)
        assert record.birth_order == 2
        assert record.certificate_number == "3174-LT-19012026-0042"
        assert record.HasField("registered_at")


async def test_birth_record_for_someone_not_a_parent_is_denied(popreg: Any) -> None:
    error = await refusal(
        popreg.GetBirthRecord(
            population_pb2.GetBirthRecordRequest(child_citizen_id=NEWBORN),
            metadata=verified(DEWI),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_birth_record_of_an_unknown_child_is_not_found(popreg: Any) -> None:
    error = await refusal(
        popreg.GetBirthRecord(
            population_pb2.GetBirthRecordRequest(child_citizen_id=UNKNOWN),
            metadata=verified(),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND


async def test_birth_record_malformed_child_id_is_invalid(popreg: Any) -> None:
    error = await refusal(
        popreg.GetBirthRecord(
            population_pb2.GetBirthRecordRequest(child_citizen_id="NIK:1"),
            metadata=verified(),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("child_citizen_id: ")


async def test_household_members_stream_the_whole_family_card(popreg: Any) -> None:
    call = popreg.ListHouseholdMembers(
        population_pb2.ListHouseholdMembersRequest(citizen_id=PARENT),
        metadata=verified(),
        timeout=TIMEOUT,
    )
    members = [member async for member in call]
    assert [(m.citizen_id, m.relationship) for m in members] == [
        (FATHER, population_pb2.RELATIONSHIP_HEAD_OF_HOUSEHOLD),
        (PARENT, population_pb2.RELATIONSHIP_SPOUSE),
        (SON, population_pb2.RELATIONSHIP_CHILD),
        (NEWBORN, population_pb2.RELATIONSHIP_CHILD),
    ]
    assert {m.family_card_number for m in members} == {"3174052009190004"}
    assert members[3].full_name == "Putri Ayu Santoso"
    assert await call.code() is grpc.StatusCode.OK


async def test_household_of_another_citizen_than_the_subject_is_denied(popreg: Any) -> None:
    error = await stream_refusal(
        popreg.ListHouseholdMembers(
            population_pb2.ListHouseholdMembersRequest(citizen_id=DEWI),
            metadata=verified(),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_household_of_an_unknown_citizen_is_not_found(popreg: Any) -> None:
    error = await stream_refusal(
        popreg.ListHouseholdMembers(
            population_pb2.ListHouseholdMembersRequest(),
            metadata=verified(UNKNOWN),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND


async def test_household_malformed_citizen_id_is_invalid(popreg: Any) -> None:
    error = await stream_refusal(
        popreg.ListHouseholdMembers(
            population_pb2.ListHouseholdMembersRequest(citizen_id="3174055403940003"),
            metadata=verified(None),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT


# Health insurance.


def idr(rupiah: int) -> tuple[str, int]:
    return ("IDR", rupiah * 100)


def amount(money: Any) -> tuple[str, int]:
    return (money.currency_code, money.minor_units)


async def test_coverage_of_the_subject(nhis: Any) -> None:
    coverage = await nhis.GetCoverage(
        health_insurance_pb2.GetCoverageRequest(citizen_id=PARENT),
        metadata=verified(),
        timeout=TIMEOUT,
    )
    assert coverage.status == health_insurance_pb2.COVERAGE_STATUS_ACTIVE
    assert coverage.membership == health_insurance_pb2.MEMBERSHIP_TYPE_WAGE_EARNER
    assert coverage.plan.code == "JKN-1"
    assert coverage.principal_citizen_id == PARENT
    assert coverage.maternity.eligible
    assert amount(coverage.maternity.remaining_allowance) == idr(1_500_000)


async def test_suspended_coverage_is_not_maternity_eligible(nhis: Any) -> None:
    coverage = await nhis.GetCoverage(
        health_insurance_pb2.GetCoverageRequest(), metadata=verified(DEWI), timeout=TIMEOUT
    )
    assert coverage.status == health_insurance_pb2.COVERAGE_STATUS_SUSPENDED
    assert not coverage.maternity.eligible
    assert "arrears" in coverage.maternity.reason


async def test_coverage_of_an_uninsured_citizen_is_not_found(nhis: Any) -> None:
    error = await refusal(
        nhis.GetCoverage(
            health_insurance_pb2.GetCoverageRequest(citizen_id=MADE),
            metadata=verified(MADE),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error.details() == f"{MADE} is not insured with the national health insurance"


async def test_coverage_of_another_citizen_than_the_subject_is_denied(nhis: Any) -> None:
    error = await refusal(
        nhis.GetCoverage(
            health_insurance_pb2.GetCoverageRequest(citizen_id=FATHER),
            metadata=verified(),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("citizen_id", MALFORMED_IDS)
async def test_coverage_malformed_citizen_id_is_invalid(nhis: Any, citizen_id: str) -> None:
    error = await refusal(
        nhis.GetCoverage(
            health_insurance_pb2.GetCoverageRequest(citizen_id=citizen_id),
            metadata=verified(),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_prenatal_claims_stream_every_claim_oldest_first(nhis: Any) -> None:
    claims = [
        claim
        async for claim in nhis.ListPrenatalClaims(
            health_insurance_pb2.ListPrenatalClaimsRequest(citizen_id=PARENT),
            metadata=verified(),
            timeout=TIMEOUT,
        )
    ]
    assert [claim.claim_id for claim in claims] == [
        "KLM-2021-0031877",
        "KLM-2025-0105514",
        "KLM-2025-0148230",
        "KLM-2025-0196402",
        "KLM-2025-0211987",
        "KLM-2025-0260541",
    ]
    assert all(claim.citizen_id == PARENT for claim in claims)
    ultrasound = claims[2]
    assert ultrasound.status == health_insurance_pb2.CLAIM_STATUS_PAID
    assert amount(ultrasound.billed) == idr(850_000)
    assert amount(ultrasound.covered) == idr(600_000)
    assert amount(ultrasound.patient_share) == idr(250_000)


async def test_prenatal_claims_since_a_date(nhis: Any) -> None:
    claims = [
        claim
        async for claim in nhis.ListPrenatalClaims(
            health_insurance_pb2.ListPrenatalClaimsRequest(
                since=health_insurance_pb2.Date(year=2025, month=7, day=19)
            ),
            metadata=verified(),
            timeout=TIMEOUT,
        )
    ]
    assert [claim.claim_id for claim in claims] == [
        "KLM-2025-0148230",
        "KLM-2025-0196402",
        "KLM-2025-0211987",
        "KLM-2025-0260541",
    ]


async def test_prenatal_claims_of_an_insured_person_without_any_is_empty(nhis: Any) -> None:
    call = nhis.ListPrenatalClaims(
        health_insurance_pb2.ListPrenatalClaimsRequest(citizen_id=FATHER),
        metadata=verified(FATHER),
        timeout=TIMEOUT,
    )
    assert [claim async for claim in call] == []
    assert await call.code() is grpc.StatusCode.OK


@pytest.mark.parametrize(("year", "month", "day"), [(2025, 2, 30), (2025, 13, 1), (0, 0, 0)])
async def test_prenatal_claims_since_a_non_date_is_invalid(
    nhis: Any, year: int, month: int, day: int
) -> None:
    error = await stream_refusal(
        nhis.ListPrenatalClaims(
            health_insurance_pb2.ListPrenatalClaimsRequest(
                citizen_id=PARENT,
                since=health_insurance_pb2.Date(year=year, month=month, day=day),
            ),
            metadata=verified(),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("since: ")


async def test_prenatal_claims_of_an_uninsured_citizen_are_not_found(nhis: Any) -> None:
    error = await stream_refusal(
        nhis.ListPrenatalClaims(
            health_insurance_pb2.ListPrenatalClaimsRequest(citizen_id=UNKNOWN),
            metadata=verified(None),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND


async def test_prenatal_claims_of_another_citizen_than_the_subject_are_denied(nhis: Any) -> None:
    error = await stream_refusal(
        nhis.ListPrenatalClaims(
            health_insurance_pb2.ListPrenatalClaimsRequest(citizen_id=DEWI),
            metadata=verified(),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


# Tax office.


async def test_income_summary_of_the_latest_year(tax: Any) -> None:
    summary = await tax.GetIncomeSummary(
        tax_pb2.GetIncomeSummaryRequest(citizen_id=PARENT), metadata=verified(), timeout=TIMEOUT
    )
    assert summary.tax_year == 2025
    assert summary.taxpayer_number == "3174055403940003"
    assert summary.filing_status == tax_pb2.FILING_STATUS_MARRIED
    assert amount(summary.gross_income) == idr(96_000_000)
    assert amount(summary.non_taxable_allowance) == idr(58_500_000)
    assert amount(summary.annual_taxable_income) == idr(37_500_000)
    assert summary.bracket == tax_pb2.INCOME_BRACKET_5_PERCENT
    assert amount(summary.tax_due) == idr(1_875_000)


async def test_income_summary_of_a_given_year(tax: Any) -> None:
    summary = await tax.GetIncomeSummary(
        tax_pb2.GetIncomeSummaryRequest(tax_year=2024), metadata=verified(), timeout=TIMEOUT
    )
    assert summary.tax_year == 2024
    assert amount(summary.annual_taxable_income) == idr(31_500_000)


async def test_income_tax_is_charged_in_layers(tax: Any) -> None:
    summary = await tax.GetIncomeSummary(
        tax_pb2.GetIncomeSummaryRequest(citizen_id=FATHER),
        metadata=verified(FATHER),
        timeout=TIMEOUT,
    )
    # 180 million less 67.5 million (married, two dependants); 5 % of 60 million, 15 % of the rest.
    assert amount(summary.annual_taxable_income) == idr(112_500_000)
    assert summary.bracket == tax_pb2.INCOME_BRACKET_15_PERCENT
    assert amount(summary.tax_due) == idr(3_000_000 + 7_875_000)


async def test_income_below_the_allowance_is_exempt(tax: Any) -> None:
    summary = await tax.GetIncomeSummary(
        tax_pb2.GetIncomeSummaryRequest(citizen_id=MADE), metadata=verified(None), timeout=TIMEOUT
    )
    assert summary.bracket == tax_pb2.INCOME_BRACKET_EXEMPT
    assert amount(summary.annual_taxable_income) == idr(0)
    assert amount(summary.tax_due) == idr(0)


async def test_income_summary_of_a_year_without_statement_is_not_found(tax: Any) -> None:
    error = await refusal(
        tax.GetIncomeSummary(
            tax_pb2.GetIncomeSummaryRequest(citizen_id=PARENT, tax_year=2019),
            metadata=verified(),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert error.details() == f"no assessed income of {PARENT} for tax year 2019"


async def test_income_summary_of_a_non_taxpayer_is_not_found(tax: Any) -> None:
    error = await refusal(
        tax.GetIncomeSummary(
            tax_pb2.GetIncomeSummaryRequest(citizen_id=DEWI),
            metadata=verified(DEWI),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("year", [-1, 1999, 2101])
async def test_income_summary_year_out_of_range_is_invalid(tax: Any, year: int) -> None:
    error = await refusal(
        tax.GetIncomeSummary(
            tax_pb2.GetIncomeSummaryRequest(citizen_id=PARENT, tax_year=year),
            metadata=verified(),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("tax_year: ")


async def test_income_summary_of_another_citizen_than_the_subject_is_denied(tax: Any) -> None:
    error = await refusal(
        tax.GetIncomeSummary(
            tax_pb2.GetIncomeSummaryRequest(citizen_id=FATHER), metadata=verified(), timeout=TIMEOUT
        )
    )
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("citizen_id", MALFORMED_IDS)
async def test_income_summary_malformed_citizen_id_is_invalid(tax: Any, citizen_id: str) -> None:
    error = await refusal(
        tax.GetIncomeSummary(
            tax_pb2.GetIncomeSummaryRequest(citizen_id=citizen_id),
            metadata=verified(),
            timeout=TIMEOUT,
        )
    )
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
