"""The health-insurance agency's backend: ``nhis.v1.Eligibility`` over in-memory sample records."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from types import MappingProxyType
from typing import Any

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from demo._citizens import Refusal, check_date, citizen_in_question, not_found
from demo.contracts import health_insurance_pb2, health_insurance_pb2_grpc
from demo.contracts.health_insurance_pb2 import ClaimStatus

_PAID = health_insurance_pb2.CLAIM_STATUS_PAID
_APPROVED = health_insurance_pb2.CLAIM_STATUS_APPROVED
_REJECTED = health_insurance_pb2.CLAIM_STATUS_REJECTED


@dataclass(frozen=True)
class InsuranceRecords:
    """The insurer's register: who is covered, and their prenatal-care claims."""

    coverages: Mapping[str, health_insurance_pb2.Coverage]
    """Coverage by citizen id."""
    prenatal_claims: Mapping[str, tuple[health_insurance_pb2.PrenatalClaim, ...]]
    """Prenatal-care claims by citizen id, oldest first."""

    def coverage(self, citizen: str) -> health_insurance_pb2.Coverage:
        """The coverage of ``citizen``.

        Raises:
            Refusal: NOT_FOUND when ``citizen`` has never been insured.
        """
        found = self.coverages.get(citizen)
        if found is None:
            raise not_found(f"{citizen} is not insured with the national health insurance")
        return found

    def claims(self, citizen: str, since: date | None) -> list[health_insurance_pb2.PrenatalClaim]:
        """``citizen``'s prenatal claims for care on or after ``since``, oldest first.

        Raises:
            Refusal: NOT_FOUND when ``citizen`` has never been insured.
        """
        self.coverage(citizen)
        return [
            claim
            for claim in self.prenatal_claims.get(citizen, ())
            if since is None
            or date(claim.service_date.year, claim.service_date.month, claim.service_date.day)
            >= since
        ]


class Eligibility(health_insurance_pb2_grpc.EligibilityServicer):
    """``nhis.v1.Eligibility``: answers from ``records`` about the exchange's subject."""

    def __init__(self, records: InsuranceRecords) -> None:
        self._records = records

    async def GetCoverage(
        self,
        request: health_insurance_pb2.GetCoverageRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> health_insurance_pb2.Coverage:
        """The coverage of the person named in the request (or the subject)."""
        try:
            citizen = citizen_in_question(
                "citizen_id", request.citizen_id, context.invocation_metadata()
            )
            return self._records.coverage(citizen)
        except Refusal as refusal:
            await refusal.abort(context)

    async def ListPrenatalClaims(
        self,
        request: health_insurance_pb2.ListPrenatalClaimsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[health_insurance_pb2.PrenatalClaim]:
        """The prenatal claims of the person named in the request (or the subject)."""
        try:
            citizen = citizen_in_question(
                "citizen_id", request.citizen_id, context.invocation_metadata()
            )
            since = None
            if request.HasField("since"):
                since = check_date(
                    "since", request.since.year, request.since.month, request.since.day
                )
            claims = self._records.claims(citizen, since)
        except Refusal as refusal:
            await refusal.abort(context)
        for claim in claims:
            yield claim


def add_eligibility(server: grpc.aio.Server) -> None:
    """Serve ``nhis.v1.Eligibility`` over the sample register on ``server``."""
    health_insurance_pb2_grpc.add_EligibilityServicer_to_server(
        Eligibility(sample_insurance_records()), server
    )


def _idr(rupiah: int) -> health_insurance_pb2.Money:
    return health_insurance_pb2.Money(currency_code="IDR", minor_units=rupiah * 100)


def _date(year: int, month: int, day: int) -> health_insurance_pb2.Date:
    return health_insurance_pb2.Date(year=year, month=month, day=day)


def _plan(ward_class: int) -> health_insurance_pb2.Plan:
    return health_insurance_pb2.Plan(
        code=f"JKN-{ward_class}", name=f"JKN ward class {ward_class}", ward_class=ward_class
    )


def _claim(
    claim_id: str,
    service_date: health_insurance_pb2.Date,
    facility: str,
    service: str,
    week: int,
    status: ClaimStatus.ValueType,
    billed: int,
    covered: int,
    submitted_at: str,
) -> health_insurance_pb2.PrenatalClaim:
    submitted = Timestamp()
    submitted.FromDatetime(datetime.fromisoformat(submitted_at))
    return health_insurance_pb2.PrenatalClaim(
        claim_id=claim_id,
        citizen_id="NIK:3174055403940003",
        service_date=service_date,
        facility=facility,
        service=service,
        gestational_week=week,
        status=status,
        billed=_idr(billed),
        covered=_idr(covered),
        patient_share=_idr(billed - covered),
        submitted_at=submitted,
    )


def sample_insurance_records() -> InsuranceRecords:
    """A fresh copy of the sample register.

    Insured: the Santoso family in Jakarta (Siti Rahmawati ``NIK:3174055403940003`` is eligible
    for the maternity benefit and has six prenatal claims, one from 2021 and five from her 2025
    pregnancy); Dewi Kartika ``NIK:3578094511880002`` (coverage suspended) and Sri Wahyuni
    ``NIK:3578096802580004`` (state-subsidised) in Surabaya. Made Wirawan
    ``NIK:5171033012790001`` is not insured.
    """
    not_giving_birth = health_insurance_pb2.MaternityBenefit(
        eligible=False, reason="the maternity benefit covers the insured person giving birth"
    )
    coverages = [
        health_insurance_pb2.Coverage(
            citizen_id="NIK:3174055403940003",
            card_number="0001328456712",
            status=health_insurance_pb2.COVERAGE_STATUS_ACTIVE,
            membership=health_insurance_pb2.MEMBERSHIP_TYPE_WAGE_EARNER,
            plan=_plan(1),
            covered_since=_date(2019, 7, 1),
            principal_citizen_id="NIK:3174055403940003",
            maternity=health_insurance_pb2.MaternityBenefit(
                eligible=True,
                reason="coverage active since 2019-07-01 with contributions paid",
                remaining_allowance=_idr(1_500_000),
            ),
        ),
        health_insurance_pb2.Coverage(
            citizen_id="NIK:3174050208910002",
            card_number="0001328456704",
            status=health_insurance_pb2.COVERAGE_STATUS_ACTIVE,
            membership=health_insurance_pb2.MEMBERSHIP_TYPE_WAGE_EARNER,
            plan=_plan(1),
            covered_since=_date(2014, 2, 1),
            principal_citizen_id="NIK:3174050208910002",
            maternity=not_giving_birth,
        ),
        health_insurance_pb2.Coverage(
            citizen_id="NIK:3174052106210001",
            card_number="0001328456729",
            status=health_insurance_pb2.COVERAGE_STATUS_ACTIVE,
            membership=health_insurance_pb2.MEMBERSHIP_TYPE_DEPENDANT,
            plan=_plan(1),
            covered_since=_date(2021, 6, 21),
            principal_citizen_id="NIK:3174050208910002",
            maternity=not_giving_birth,
        ),
        health_insurance_pb2.Coverage(
            citizen_id="NIK:3578094511880002",
            card_number="0002076319855",
            status=health_insurance_pb2.COVERAGE_STATUS_SUSPENDED,
            membership=health_insurance_pb2.MEMBERSHIP_TYPE_SELF_PAYING,
            plan=_plan(2),
            covered_since=_date(2016, 3, 1),
            principal_citizen_id="NIK:3578094511880002",
            maternity=health_insurance_pb2.MaternityBenefit(
                eligible=False,
                reason="coverage suspended: contributions in arrears since 2025-10",
                remaining_allowance=_idr(0),
            ),
        ),
        health_insurance_pb2.Coverage(
            citizen_id="NIK:3578096802580004",
            card_number="0002076319863",
            status=health_insurance_pb2.COVERAGE_STATUS_ACTIVE,
            membership=health_insurance_pb2.MEMBERSHIP_TYPE_STATE_SUBSIDISED,
            plan=_plan(3),
            covered_since=_date(2014, 1, 1),
            principal_citizen_id="NIK:3578096802580004",
            maternity=not_giving_birth,
        ),
    ]
    puskesmas = "Puskesmas Kebayoran Lama"
    hospital = "RSIA Budhi Jaya"
    siti = (
        _claim(
            "KLM-2021-0031877",
            _date(2021, 3, 13),
            puskesmas,
            "Antenatal check-up (second trimester)",
            23,
            _PAID,
            150_000,
            150_000,
            "2021-03-15T08:30:00+07:00",
        ),
        _claim(
            "KLM-2025-0105514",
            _date(2025, 5, 24),
            puskesmas,
            "Antenatal check-up (first trimester)",
            6,
            _PAID,
            150_000,
            150_000,
            "2025-05-26T09:12:00+07:00",
        ),
        _claim(
            "KLM-2025-0148230",
            _date(2025, 7, 19),
            hospital,
            "Obstetric ultrasound",
            14,
            _PAID,
            850_000,
            600_000,
            "2025-07-21T14:05:00+07:00",
        ),
        _claim(
            "KLM-2025-0196402",
            _date(2025, 9, 27),
            "Klinik Pratama Sehat Grogol",
            "Oral glucose tolerance test",
            24,
            _APPROVED,
            400_000,
            300_000,
            "2025-09-29T10:40:00+07:00",
        ),
        _claim(
            "KLM-2025-0211987",
            _date(2025, 10, 25),
            hospital,
            "Elective 4D ultrasound (not covered)",
            28,
            _REJECTED,
            1_200_000,
            0,
            "2025-10-27T16:18:00+07:00",
        ),
        _claim(
            "KLM-2025-0260541",
            _date(2025, 12, 20),
            puskesmas,
            "Antenatal check-up (third trimester)",
            36,
            _APPROVED,
            150_000,
            150_000,
            "2025-12-22T08:55:00+07:00",
        ),
    )
    return InsuranceRecords(
        coverages=MappingProxyType({coverage.citizen_id: coverage for coverage in coverages}),
        prenatal_claims=MappingProxyType({"NIK:3174055403940003": siti}),
    )
