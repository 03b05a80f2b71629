"""The tax office's backend: ``tax.v1.IncomeStatements`` over in-memory sample records.

Sample statements follow Indonesia's income tax on individuals: a non-taxable allowance (PTKP) of
IDR 54 million, plus 4.5 million for a married taxpayer and for each dependant (at most three),
plus 54 million when the spouse's income is combined; the rest is taxed at 5, 15, 25, 30 and 35 %
in layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from demo._citizens import Refusal, citizen_in_question, invalid, not_found
from demo.contracts import tax_pb2, tax_pb2_grpc
from demo.contracts.tax_pb2 import FilingStatus, IncomeBracket

LATEST_YEAR: Final = 0
FIRST_YEAR: Final = 2000
LAST_YEAR: Final = 2100

_MILLION: Final = 1_000_000
# Upper bound of each layer in rupiah (None: no bound), its rate in percent, and its bracket.
_LAYERS: Final[tuple[tuple[int | None, int, IncomeBracket.ValueType], ...]] = (
    (60 * _MILLION, 5, tax_pb2.INCOME_BRACKET_5_PERCENT),
    (250 * _MILLION, 15, tax_pb2.INCOME_BRACKET_15_PERCENT),
    (500 * _MILLION, 25, tax_pb2.INCOME_BRACKET_25_PERCENT),
    (5_000 * _MILLION, 30, tax_pb2.INCOME_BRACKET_30_PERCENT),
    (None, 35, tax_pb2.INCOME_BRACKET_35_PERCENT),
)


@dataclass(frozen=True)
class TaxRecords:
    """The tax office's assessed income statements."""

    statements: Mapping[str, Mapping[int, tax_pb2.IncomeSummary]]
    """Statements by citizen id, then by tax year."""

    def summary(self, citizen: str, tax_year: int) -> tax_pb2.IncomeSummary:
        """``citizen``'s statement for ``tax_year`` (:data:`LATEST_YEAR`: the latest one).

        Raises:
            Refusal: INVALID_ARGUMENT for a year out of range, NOT_FOUND when there is no
                statement.
        """
        if tax_year != LATEST_YEAR and not FIRST_YEAR <= tax_year <= LAST_YEAR:
            raise invalid(
                f"tax_year: {tax_year} is not between {FIRST_YEAR} and {LAST_YEAR} "
                f"(or {LATEST_YEAR} for the latest assessed year)"
            )
        years = self.statements.get(citizen)
        if not years:
            raise not_found(f"{citizen} is not a registered taxpayer")
        if tax_year == LATEST_YEAR:
            return years[max(years)]
        found = years.get(tax_year)
        if found is None:
            raise not_found(f"no assessed income of {citizen} for tax year {tax_year}")
        return found


class IncomeStatements(tax_pb2_grpc.IncomeStatementsServicer):
    """``tax.v1.IncomeStatements``: answers from ``records`` about the exchange's subject."""

    def __init__(self, records: TaxRecords) -> None:
        self._records = records

    async def GetIncomeSummary(
        self,
        request: tax_pb2.GetIncomeSummaryRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> tax_pb2.IncomeSummary:
        """The income statement of the taxpayer named in the request (or the subject)."""
        try:
            citizen = citizen_in_question(
                "citizen_id", request.citizen_id, context.invocation_metadata()
            )
            return self._records.summary(citizen, request.tax_year)
        except Refusal as refusal:
            await refusal.abort(context)


def add_income_statements(server: grpc.aio.Server) -> None:
    """Serve ``tax.v1.IncomeStatements`` over the sample statements on ``server``."""
    tax_pb2_grpc.add_IncomeStatementsServicer_to_server(
        IncomeStatements(sample_tax_records()), server
    )


def _idr(rupiah: int) -> tax_pb2.Money:
    return tax_pb2.Money(currency_code="IDR", minor_units=rupiah * 100)


def _allowance(filing_status: FilingStatus.ValueType, dependants: int) -> int:
    """The non-taxable allowance (PTKP) in rupiah."""
    allowance = 54 * _MILLION + 4_500_000 * min(dependants, 3)
    if filing_status in (tax_pb2.FILING_STATUS_MARRIED, tax_pb2.FILING_STATUS_MARRIED_JOINT):
        allowance += 4_500_000
    if filing_status == tax_pb2.FILING_STATUS_MARRIED_JOINT:
        allowance += 54 * _MILLION
    return allowance


def _tax(taxable: int) -> tuple[int, IncomeBracket.ValueType]:
    """The tax in rupiah on ``taxable`` rupiah, and the highest bracket reached."""
    tax, lower, bracket = 0, 0, tax_pb2.INCOME_BRACKET_EXEMPT
    for upper, rate, layer_bracket in _LAYERS:
        if taxable <= lower:
            break
        top = taxable if upper is None else min(taxable, upper)
        tax += (top - lower) * rate // 100
        bracket = layer_bracket
        if upper is None:
            break
        lower = upper
    return tax, bracket


def _statement(
    citizen: str,
    tax_year: int,
    filing_status: FilingStatus.ValueType,
    dependants: int,
    gross: int,
    assessed_at: str,
) -> tax_pb2.IncomeSummary:
    allowance = _allowance(filing_status, dependants)
    taxable = max(gross - allowance, 0)
    tax, bracket = _tax(taxable)
    assessed = Timestamp()
    assessed.FromDatetime(datetime.fromisoformat(assessed_at))
    return tax_pb2.IncomeSummary(
        citizen_id=citizen,
        # Since 2024 a resident's NIK is also their taxpayer number.
        taxpayer_number=citizen.removeprefix("NIK:"),
        tax_year=tax_year,
        filing_status=filing_status,
        dependants=dependants,
        gross_income=_idr(gross),
        non_taxable_allowance=_idr(allowance),
        annual_taxable_income=_idr(taxable),
        bracket=bracket,
        tax_due=_idr(tax),
        assessed_at=assessed,
    )


def sample_tax_records() -> TaxRecords:
    """A fresh copy of the sample statements.

    Siti Rahmawati ``NIK:3174055403940003`` (2024 and 2025; 2025 taxable income IDR 37.5
    million, 5 % bracket), Budi Santoso ``NIK:3174050208910002``, Agus Prasetyo
    ``NIK:3578092304860001`` and Made Wirawan ``NIK:5171033012790001`` (2025, exempt). Dewi
    Kartika is not a taxpayer.
    """
    married, unmarried = tax_pb2.FILING_STATUS_MARRIED, tax_pb2.FILING_STATUS_UNMARRIED
    statements = [
        _statement(
            "NIK:3174055403940003", 2024, married, 0, 90 * _MILLION, "2025-03-20T11:02:00+07:00"
        ),
        _statement(
            "NIK:3174055403940003", 2025, married, 0, 96 * _MILLION, "2026-01-15T09:00:00+07:00"
        ),
        _statement(
            "NIK:3174050208910002", 2025, married, 2, 180 * _MILLION, "2026-01-15T09:00:00+07:00"
        ),
        _statement(
            "NIK:3578092304860001", 2025, married, 1, 75 * _MILLION, "2026-01-22T13:30:00+07:00"
        ),
        _statement(
            "NIK:5171033012790001", 2025, unmarried, 0, 48 * _MILLION, "2026-01-09T10:15:00+07:00"
        ),
    ]
    by_citizen: dict[str, dict[int, tax_pb2.IncomeSummary]] = {}
    for statement in statements:
        by_citizen.setdefault(statement.citizen_id, {})[statement.tax_year] = statement
    return TaxRecords(
        statements=MappingProxyType(
            {citizen: MappingProxyType(years) for citizen, years in by_citizen.items()}
        )
    )
