"""The welfare agency's birth-support rule: which benefits the gathered evidence grants.

The applicant qualifies when the birth record names them as the child's mother or father and the
child is on their family card. A qualifying applicant gets:

* a birth grant of IDR 2,000,000 for a first child, 3,000,000 for a later one;
* a maternity-care refund: what they paid themselves for paid or approved prenatal claims, up to
  the remaining maternity allowance, when their coverage is active and maternity-eligible;
* a child allowance of IDR 300,000 a month for 12 months when their annual taxable income is in
  the exempt or 5 % bracket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from demo.contracts import health_insurance_pb2, population_pb2, tax_pb2

_IDR: Final = 100  # minor units per rupiah
FIRST_CHILD_GRANT: Final = 2_000_000 * _IDR
LATER_CHILD_GRANT: Final = 3_000_000 * _IDR
MONTHLY_CHILD_ALLOWANCE: Final = 300_000 * _IDR
CHILD_ALLOWANCE_MONTHS: Final = 12
_LOW_INCOME: Final = (tax_pb2.INCOME_BRACKET_EXEMPT, tax_pb2.INCOME_BRACKET_5_PERCENT)
_REFUNDABLE: Final = (
    health_insurance_pb2.CLAIM_STATUS_PAID,
    health_insurance_pb2.CLAIM_STATUS_APPROVED,
)


class Amount(Protocol):
    """An amount of money as the contracts carry it."""

    currency_code: str
    minor_units: int


def idr(amount: Amount) -> int:
    """``amount`` in IDR minor units.

    Raises:
        ValueError: the amount is in another currency.
    """
    if amount.currency_code != "IDR":
        raise ValueError(f"expected an amount in IDR, got {amount.currency_code!r}")
    return amount.minor_units


def rupiah(minor_units: int) -> str:
    """An IDR amount for people: ``IDR 1,500,000`` (sen shown only when there are any)."""
    whole, sen = divmod(minor_units, _IDR)
    return f"IDR {whole:,}" + (f".{sen:02d}" if sen else "")


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the welfare agency gathered from the other agencies about one application."""

    applicant: population_pb2.Person
    birth: population_pb2.BirthRecord
    household: tuple[population_pb2.HouseholdMember, ...]
    coverage: health_insurance_pb2.Coverage
    prenatal_claims: tuple[health_insurance_pb2.PrenatalClaim, ...]
    income: tax_pb2.IncomeSummary


@dataclass(frozen=True, slots=True)
class Benefit:
    """One granted benefit: its name, amount (IDR minor units) and the reason for it."""

    name: str
    amount: int
    basis: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of an application: why it does or does not qualify, and what it grants."""

    qualifies: bool
    findings: tuple[str, ...]
    granted: tuple[Benefit, ...]
    declined: tuple[str, ...]

    @property
    def total(self) -> int:
        """The sum of the granted benefits, in IDR minor units."""
        return sum(benefit.amount for benefit in self.granted)


def _ordinal(number: int) -> str:
    suffix = (
        "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"


def _findings(evidence: Evidence) -> tuple[bool, tuple[str, ...]]:
    """Whether the applicant is the child's parent and has the child on their family card."""
    applicant, birth = evidence.applicant.citizen_id, evidence.birth
    certificate = birth.certificate_number
    parent = {birth.mother_citizen_id: "mother", birth.father_citizen_id: "father"}.get(applicant)
    in_household = any(
        member.citizen_id == birth.child_citizen_id
        and member.relationship == population_pb2.RELATIONSHIP_CHILD
        for member in evidence.household
    )
    if parent:
        as_parent = f"the applicant is the {parent} on birth certificate {certificate}"
    else:
        as_parent = f"{applicant} is not a parent on birth certificate {certificate}"
    if in_household:
        at_home = f"{birth.child_name} is on the applicant's family card as a child"
    else:
        at_home = f"{birth.child_citizen_id} is not a child on the applicant's family card"
    return parent is not None and in_household, (as_parent, at_home)


def _birth_grant(birth: population_pb2.BirthRecord) -> Benefit:
    order = max(birth.birth_order, 1)
    grant = FIRST_CHILD_GRANT if order == 1 else LATER_CHILD_GRANT
    return Benefit("birth grant", grant, f"{_ordinal(order)} child of the mother")


def _maternity_refund(evidence: Evidence) -> Benefit | str:
    """The refund, or why there is none."""
    coverage, maternity = evidence.coverage, evidence.coverage.maternity
    if coverage.status != health_insurance_pb2.COVERAGE_STATUS_ACTIVE or not maternity.eligible:
        return f"maternity-care refund: {maternity.reason or 'coverage is not active'}"
    refundable = [claim for claim in evidence.prenatal_claims if claim.status in _REFUNDABLE]
    paid = sum(idr(claim.patient_share) for claim in refundable)
    remaining = idr(maternity.remaining_allowance)
    if min(paid, remaining) <= 0:
        return "maternity-care refund: nothing paid out of pocket for covered care"
    return Benefit(
        "maternity-care refund",
        min(paid, remaining),
        f"own share of {len(refundable)} covered prenatal claims, {rupiah(paid)}, up to the "
        f"remaining allowance of {rupiah(remaining)}",
    )


def _child_allowance(income: tax_pb2.IncomeSummary) -> Benefit | str:
    """The allowance, or why there is none."""
    taxable = rupiah(idr(income.annual_taxable_income))
    if income.bracket not in _LOW_INCOME:
        return (
            f"child allowance: taxable income {taxable} in {income.tax_year} is above the 5 % "
            "bracket"
        )
    return Benefit(
        "child allowance",
        MONTHLY_CHILD_ALLOWANCE * CHILD_ALLOWANCE_MONTHS,
        f"{rupiah(MONTHLY_CHILD_ALLOWANCE)} a month for {CHILD_ALLOWANCE_MONTHS} months; "
        f"taxable income {taxable} in {income.tax_year}",
    )


def decide_birth_support(evidence: Evidence) -> Decision:
    """Apply the birth-support rule to ``evidence``.

    Raises:
        ValueError: an amount in the evidence is not in IDR.
    """
    qualifies, findings = _findings(evidence)
    if not qualifies:
        return Decision(False, findings, (), ("every benefit: the application does not qualify",))
    outcomes = (
        _birth_grant(evidence.birth),
        _maternity_refund(evidence),
        _child_allowance(evidence.income),
    )
    return Decision(
        True,
        findings,
        tuple(outcome for outcome in outcomes if isinstance(outcome, Benefit)),
        tuple(outcome for outcome in outcomes if isinstance(outcome, str)),
    )
