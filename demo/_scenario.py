"""The one-stop birth-support scenario, after Korea's Happy Birth One-Stop Service.

A parent applies once to the welfare agency and consents, online, to the health-insurance agency
sharing their health-insurance data with it. The welfare agency's case system then gathers the
evidence itself from the population registry, the health-insurance agency and the tax office,
calling its own security server with the providers' ordinary generated stubs and ``pintu-*``
metadata (no Pintu SDK), and decides the benefits. Finally it shows what is refused: a caller its
security server does not know, health data about a citizen who gave no consent, and the parent's
health data right after the parent revoked the consent.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final, Protocol, TypeVar, cast

import grpc
import grpc.aio

from demo._welfare import Decision, Evidence, decide_birth_support, idr, rupiah
from demo.contracts import (
    health_insurance_pb2,
    health_insurance_pb2_grpc,
    population_pb2,
    population_pb2_grpc,
    tax_pb2,
    tax_pb2_grpc,
)
from proto import IdentifierError, SubsystemId

# The metadata an agency system speaks; spelt out here because agencies need no Pintu library.
CLIENT_KEY: Final = "pintu-client"
PROVIDER_KEY: Final = "pintu-provider"
PURPOSE_KEY: Final = "pintu-purpose"
SUBJECT_KEY: Final = "pintu-subject"
ISSUE_KEY: Final = "pintu-issue"
USER_KEY: Final = "pintu-user"
MESSAGE_ID_KEY: Final = "pintu-message-id"
ERROR_CODE_KEY: Final = "pintu-error-code"

PURPOSE: Final = "birth-support"
CALL_TIMEOUT_SECONDS: Final = 10.0
_WIDTH: Final = 100
# Prenatal care of this pregnancy: claims from up to 300 days before the birth.
_PREGNANCY_DAYS: Final = 300
_MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Application:
    """A parent's application for birth support, as the welfare agency registered it."""

    reference: str
    applicant: str
    applicant_name: str
    child: str
    caseworker: str


APPLICATION: Final = Application(
    reference="APP-2026-0001",
    applicant="NIK:3174055403940003",
    applicant_name="Siti Rahmawati",
    child="NIK:3174055701260001",
    caseworker="CW-0421",
)


class ConsentDesk(Protocol):
    """Where citizens grant and revoke consent (the consent service; the portal in real life)."""

    async def grant(
        self, subject: str, provider: str, consumer: str, service: str, purpose: str, text: str
    ) -> str:
        """Record the consent; its id."""
        ...

    async def revoke(self, subject: str, consent_id: str) -> None:
        """Revoke the consent."""
        ...


# How long a provider's security server may take to learn of a consent change (its replica
# follows the consent service within a second).
CONSENT_PROPAGATION_SECONDS: Final = 5.0


class _ScenarioFailed(Exception):
    """A step that did not do what it should; the message says which and why."""


@dataclass(frozen=True, slots=True)
class _Party:
    """An agency as the federation lists it."""

    name: str
    subsystem: SubsystemId

    def __str__(self) -> str:
        return f"{self.name} ({self.subsystem})"


@dataclass(frozen=True, slots=True)
class _Federation:
    """What the scenario needs from ``federation.json``."""

    welfare_gateway: str
    welfare: _Party
    popreg: _Party
    nhis: _Party
    tax: _Party


def _lookup(document: Mapping[str, Any], path: str) -> Any:
    found: Any = document
    for name in path.split("."):
        if not isinstance(found, Mapping) or name not in found:
            raise _ScenarioFailed(f"federation.json: {path}: missing")
        found = found[name]
    return found


def _text(document: Mapping[str, Any], path: str) -> str:
    value = _lookup(document, path)
    if not isinstance(value, str) or not value:
        raise _ScenarioFailed(f"federation.json: {path}: expected a non-empty string")
    return value


def _party(document: Mapping[str, Any], key: str) -> _Party:
    path = f"agencies.{key}.subsystem"
    try:
        subsystem = SubsystemId.parse(_text(document, path))
    except IdentifierError as error:
        raise _ScenarioFailed(f"federation.json: {path}: {error}") from None
    return _Party(_text(document, f"agencies.{key}.name"), subsystem)


def _read_federation(document: Mapping[str, Any]) -> _Federation:
    gateway = _text(document, "agencies.welfare.gateway")
    return _Federation(
        welfare_gateway=_text(document, f"gateways.{gateway}.agency_address"),
        welfare=_party(document, "welfare"),
        popreg=_party(document, "popreg"),
        nhis=_party(document, "nhis"),
        tax=_party(document, "tax"),
    )


class _CalendarDate(Protocol):
    year: int
    month: int
    day: int


def _day(value: _CalendarDate) -> str:
    if not 1 <= value.month <= 12:
        return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"


def _words(enum_name: str, prefix: str) -> str:
    """An enum value's name in plain words: ``SEX_FEMALE`` -> ``female``."""
    return enum_name.removeprefix(prefix).replace("_", " ").lower()


def _trailer(metadata: object, key: str) -> str:
    """The text value of ``key`` in gRPC metadata (key/value pairs at run time), or ``""``."""
    for name, value in cast(Iterable[tuple[str, str | bytes]], metadata or ()):
        if name == key and isinstance(value, str):
            return value
    return ""


def _refusal(error: grpc.aio.AioRpcError) -> str:
    code = _trailer(error.trailing_metadata(), ERROR_CODE_KEY)
    return f"{error.code().name}{f' ({code})' if code else ''}: {error.details()}"


class _CaseSystem:
    """The welfare agency's case system, calling providers through its own security server."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        federation: _Federation,
        application: Application,
        say: Callable[[str], None],
    ) -> None:
        self._federation = federation
        self._application = application
        self._say = say
        self._population = population_pb2_grpc.CivilRegistryStub(channel)
        self._insurance = health_insurance_pb2_grpc.EligibilityStub(channel)
        self._tax = tax_pb2_grpc.IncomeStatementsStub(channel)

    def _tell(self, text: str, indent: int = 3, hang: int = 0) -> None:
        """Say ``text`` wrapped to the page, indented; continuation lines ``hang`` further in."""
        for line in textwrap.wrap(
            text,
            _WIDTH,
            initial_indent=" " * indent,
            subsequent_indent=" " * (indent + hang),
            break_long_words=False,
            break_on_hyphens=False,
        ):
            self._say(line)

    def _heard(self, text: str) -> None:
        """Say what came back."""
        self._tell(f"-> {text}", indent=5, hang=3)

    def _exchange(self, message_id: str) -> None:
        """Say the exchange's message id: the key to it in every party's audit log."""
        self._tell(f"exchange {message_id or '(no pintu-message-id returned)'}", indent=5)

    def _metadata(
        self, provider: _Party, client: SubsystemId | None = None, subject: str | None = None
    ) -> tuple[tuple[str, str], ...]:
        application = self._application
        return (
            (CLIENT_KEY, str(client or self._federation.welfare.subsystem)),
            (PROVIDER_KEY, str(provider.subsystem)),
            (PURPOSE_KEY, PURPOSE),
            (SUBJECT_KEY, subject or application.applicant),
            (ISSUE_KEY, application.reference),
            (USER_KEY, application.caseworker),
        )

    async def _answer(self, call: grpc.aio.UnaryUnaryCall[Any, R], what: str) -> tuple[R, str]:
        """The response of a unary call and the exchange's message id."""
        try:
            response = await call
            message_id = _trailer(await call.trailing_metadata(), MESSAGE_ID_KEY)
        except grpc.aio.AioRpcError as error:
            raise _ScenarioFailed(f"{what} failed: {_refusal(error)}") from None
        return response, message_id

    async def _items(self, call: grpc.aio.UnaryStreamCall[Any, R], what: str) -> AsyncIterator[R]:
        """The responses of a server-streaming call as they arrive; then says the message id."""
        try:
            async for item in call:
                yield item
            message_id = _trailer(await call.trailing_metadata(), MESSAGE_ID_KEY)
        except grpc.aio.AioRpcError as error:
            raise _ScenarioFailed(f"{what} failed: {_refusal(error)}") from None
        self._exchange(message_id)

    def announce(self) -> None:
        """Step 1: the parent's application."""
        application, welfare = self._application, self._federation.welfare
        self._say("1. A parent applies")
        self._tell(
            f"{application.applicant_name} ({application.applicant}) applies to the "
            f"{welfare.name} for birth support for the newborn child {application.child}: "
            f"one application, {application.reference}, handled by caseworker "
            f"{application.caseworker}, and no certificates to collect from other offices."
        )
        self._tell(
            f"The welfare case system ({welfare.subsystem}) gathers the evidence itself, for the "
            f"purpose '{PURPOSE}', through its own security server at "
            f"{self._federation.welfare_gateway}."
        )

    async def population(
        self,
    ) -> tuple[
        population_pb2.Person,
        population_pb2.BirthRecord,
        tuple[population_pb2.HouseholdMember, ...],
    ]:
        """Step 2: the applicant, the child's birth record and the household."""
        provider, application = self._federation.popreg, self._application
        metadata = self._metadata(provider)
        self._say(f"2. {provider}")

        self._tell(f"GetPerson {application.applicant}")
        person, message_id = await self._answer(
            self._population.GetPerson(
                population_pb2.GetPersonRequest(citizen_id=application.applicant),
                metadata=metadata,
                timeout=CALL_TIMEOUT_SECONDS,
            ),
            "GetPerson",
        )
        sex = _words(population_pb2.Sex.Name(person.sex), "SEX_")
        marital = _words(
            population_pb2.MaritalStatus.Name(person.marital_status), "MARITAL_STATUS_"
        )
        address = person.address
        self._heard(
            f"{person.full_name}, {sex}, born {_day(person.birth_date)} in {person.birth_place}, "
            f"{marital}; lives at {address.street}, {address.neighbourhood}, {address.village}, "
            f"{address.district}, {address.city}; family card {person.family_card_number}"
        )
        self._exchange(message_id)

        self._tell(f"GetBirthRecord {application.child}")
        birth, message_id = await self._answer(
            self._population.GetBirthRecord(
                population_pb2.GetBirthRecordRequest(child_citizen_id=application.child),
                metadata=metadata,
                timeout=CALL_TIMEOUT_SECONDS,
            ),
            "GetBirthRecord",
        )
        self._heard(
            f"{birth.child_name}, born {_day(birth.birth_date)} at {birth.birth_place}, "
            f"{birth.birth_weight_grams:,} g; mother {birth.mother_citizen_id}, father "
            f"{birth.father_citizen_id or '(not registered)'}; the mother's child number "
            f"{birth.birth_order}; birth certificate {birth.certificate_number}"
        )
        self._exchange(message_id)

        self._tell(f"ListHouseholdMembers {application.applicant}, streamed member by member")
        household: list[population_pb2.HouseholdMember] = []
        call = self._population.ListHouseholdMembers(
            population_pb2.ListHouseholdMembersRequest(citizen_id=application.applicant),
            metadata=metadata,
            timeout=CALL_TIMEOUT_SECONDS,
        )
        async for member in self._items(call, "ListHouseholdMembers"):
            relationship = population_pb2.Relationship.Name(member.relationship)
            self._heard(
                f"{member.full_name}, {_words(relationship, 'RELATIONSHIP_')}, "
                f"{member.citizen_id}, born {_day(member.birth_date)}"
            )
            household.append(member)
        return person, birth, tuple(household)

    async def consent(self, desk: ConsentDesk) -> str:
        """Step 1, continued: the parent consents to sharing health-insurance data."""
        federation, application = self._federation, self._application
        eligibility = health_insurance_pb2.DESCRIPTOR.services_by_name["Eligibility"]
        consent_id = await desk.grant(
            application.applicant,
            str(federation.nhis.subsystem),
            str(federation.welfare.subsystem),
            f"{federation.nhis.subsystem}/{eligibility.full_name}",
            PURPOSE,
            "To decide on your birth-support application: your health-insurance coverage and "
            "prenatal-care claims",
        )
        self._tell(
            "Health data is shared only with the citizen's own consent: "
            f"{application.applicant_name} consents online to the {federation.nhis.name}"
            f" sharing her health-insurance data with the {federation.welfare.name} for"
            f" '{PURPOSE}' (consent {consent_id}, with a signed receipt)."
        )
        return consent_id

    async def _coverage(
        self, subject: str, *, expect_consent: bool
    ) -> tuple[health_insurance_pb2.Coverage | None, str, grpc.aio.AioRpcError | None]:
        """GetCoverage about ``subject``, asked again (for at most the propagation time) while
        the answer is not yet what the consent just changed should give."""
        provider = self._federation.nhis
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONSENT_PROPAGATION_SECONDS
        while True:
            call = self._insurance.GetCoverage(
                health_insurance_pb2.GetCoverageRequest(citizen_id=subject),
                metadata=self._metadata(provider, subject=subject),
                timeout=CALL_TIMEOUT_SECONDS,
            )
            try:
                coverage = await call
                message_id = _trailer(await call.trailing_metadata(), MESSAGE_ID_KEY)
                if expect_consent or loop.time() >= deadline:
                    return coverage, message_id, None
            except grpc.aio.AioRpcError as error:
                if not expect_consent or loop.time() >= deadline:
                    return None, "", error
            await asyncio.sleep(0.1)

    async def health_insurance(
        self, birth: population_pb2.BirthRecord
    ) -> tuple[health_insurance_pb2.Coverage, tuple[health_insurance_pb2.PrenatalClaim, ...]]:
        """Step 3: the applicant's coverage and the prenatal claims of this pregnancy."""
        provider, application = self._federation.nhis, self._application
        metadata = self._metadata(provider)
        self._say(f"3. {provider}")

        self._tell(f"GetCoverage {application.applicant}, with her consent")
        answered, message_id, failure = await self._coverage(
            application.applicant, expect_consent=True
        )
        if answered is None:
            assert failure is not None
            raise _ScenarioFailed(f"GetCoverage failed: {_refusal(failure)}")
        coverage = answered
        status = _words(
            health_insurance_pb2.CoverageStatus.Name(coverage.status), "COVERAGE_STATUS_"
        )
        membership = _words(
            health_insurance_pb2.MembershipType.Name(coverage.membership), "MEMBERSHIP_TYPE_"
        )
        maternity = coverage.maternity
        self._heard(
            f"{status}, plan {coverage.plan.code} ({coverage.plan.name}), {membership}, card "
            f"{coverage.card_number}, covered since {_day(coverage.covered_since)}; maternity "
            f"benefit {'eligible' if maternity.eligible else 'not eligible'} "
            f"({maternity.reason}), {rupiah(idr(maternity.remaining_allowance))} remaining"
        )
        self._exchange(message_id)

        born = birth.birth_date
        since = date(born.year, born.month, born.day) - timedelta(days=_PREGNANCY_DAYS)
        request = health_insurance_pb2.ListPrenatalClaimsRequest(
            citizen_id=application.applicant,
            since=health_insurance_pb2.Date(year=since.year, month=since.month, day=since.day),
        )
        self._tell(
            f"ListPrenatalClaims {application.applicant} since {_day(request.since)}, "
            "streamed claim by claim"
        )
        claims: list[health_insurance_pb2.PrenatalClaim] = []
        call = self._insurance.ListPrenatalClaims(
            request, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS
        )
        async for claim in self._items(call, "ListPrenatalClaims"):
            claim_status = _words(
                health_insurance_pb2.ClaimStatus.Name(claim.status), "CLAIM_STATUS_"
            )
            self._heard(
                f"{_day(claim.service_date)}, week {claim.gestational_week}: {claim.service} at "
                f"{claim.facility}; {claim_status}, billed {rupiah(idr(claim.billed))}, paid by "
                f"the parent {rupiah(idr(claim.patient_share))}"
            )
            claims.append(claim)
        return coverage, tuple(claims)

    async def income(self) -> tax_pb2.IncomeSummary:
        """Step 4: the applicant's latest assessed income."""
        provider, application = self._federation.tax, self._application
        self._say(f"4. {provider}")
        self._tell(f"GetIncomeSummary {application.applicant}, latest assessed year")
        summary, message_id = await self._answer(
            self._tax.GetIncomeSummary(
                tax_pb2.GetIncomeSummaryRequest(citizen_id=application.applicant, tax_year=0),
                metadata=self._metadata(provider),
                timeout=CALL_TIMEOUT_SECONDS,
            ),
            "GetIncomeSummary",
        )
        bracket = _words(tax_pb2.IncomeBracket.Name(summary.bracket), "INCOME_BRACKET_")
        self._heard(
            f"tax year {summary.tax_year}: gross income {rupiah(idr(summary.gross_income))}, "
            f"non-taxable allowance {rupiah(idr(summary.non_taxable_allowance))}, taxable "
            f"income {rupiah(idr(summary.annual_taxable_income))} "
            f"({bracket.replace(' percent', ' %')} bracket), tax {rupiah(idr(summary.tax_due))}"
        )
        self._exchange(message_id)
        return summary

    def decide(self, evidence: Evidence) -> Decision:
        """Step 5: the decision on the application."""
        decision = decide_birth_support(evidence)
        self._say(f"5. The {self._federation.welfare.name} decides")
        for finding in decision.findings:
            self._tell(f"checked: {finding}", hang=9)
        for benefit in decision.granted:
            self._tell(
                f"granted: {benefit.name}, {rupiah(benefit.amount)} ({benefit.basis})", hang=9
            )
        for reason in decision.declined:
            self._tell(f"not granted: {reason}", hang=13)
        reference = self._application.reference
        if decision.qualifies:
            self._tell(
                f"Application {reference} approved: {rupiah(decision.total)} in all, without a "
                "single certificate from the parent."
            )
        else:
            self._tell(f"Application {reference} rejected.")
        return decision

    async def unregistered_caller(self) -> bool:
        """Step 6: a caller that is not a client of the welfare security server is refused."""
        federation, application = self._federation, self._application
        intruder = federation.welfare.subsystem.member.subsystem("unregistered")
        self._say("6. A refused request")
        self._tell(
            f"{intruder}, which is not registered as a client of the welfare security server, "
            f"asks the {federation.popreg.name} for {application.applicant} (GetPerson)"
        )
        call = self._population.GetPerson(
            population_pb2.GetPersonRequest(citizen_id=application.applicant),
            metadata=self._metadata(federation.popreg, client=intruder),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        try:
            await call
        except grpc.aio.AioRpcError as error:
            code = _trailer(error.trailing_metadata(), ERROR_CODE_KEY)
            self._heard(
                f"refused: {error.code().name}, {ERROR_CODE_KEY} {code or '(none)'}: "
                f"{error.details()}"
            )
            if error.code() is grpc.StatusCode.PERMISSION_DENIED and code == "client_not_allowed":
                self._tell("As it should be: a security server serves only its registered clients.")
                return True
            self._tell("Expected PERMISSION_DENIED with pintu-error-code client_not_allowed.")
            return False
        self._tell("It was answered: the security server let an unknown caller through.")
        return False

    async def without_consent(self, desk: ConsentDesk, consent_id: str) -> bool:
        """Step 7: health data about a citizen who gave no consent is refused, and so is the
        parent's right after she revokes hers."""
        federation, application = self._federation, self._application
        self._say("7. Consent, enforced")
        self._tell(
            f"The case system asks the {federation.nhis.name} for the coverage of the child "
            f"{application.child}, for whom no one consented (GetCoverage)"
        )
        _, _, failure = await self._coverage(application.child, expect_consent=False)
        if not self._consent_missing(failure):
            return False
        await desk.revoke(application.applicant, consent_id)
        self._tell(
            f"{application.applicant_name} revokes her consent {consent_id}; the case system "
            "asks for her coverage again right away (GetCoverage)"
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        answered, _, failure = await self._coverage(application.applicant, expect_consent=False)
        while answered is not None and loop.time() - started < CONSENT_PROPAGATION_SECONDS:
            answered, _, failure = await self._coverage(application.applicant, expect_consent=False)
        if not self._consent_missing(failure):
            return False
        self._tell(
            f"Refused {loop.time() - started:.2f} s after the revocation: every provider's "
            "security server follows citizens' consents within a second."
        )
        return True

    def _consent_missing(self, failure: grpc.aio.AioRpcError | None) -> bool:
        if failure is None:
            self._tell("It was answered: health data went out without the citizen's consent.")
            return False
        code = _trailer(failure.trailing_metadata(), ERROR_CODE_KEY)
        self._heard(
            f"refused: {failure.code().name}, {ERROR_CODE_KEY} {code or '(none)'}: "
            f"{failure.details()}"
        )
        if failure.code() is grpc.StatusCode.PERMISSION_DENIED and "consent_missing" in (
            failure.details() or ""
        ):
            return True
        self._tell("Expected PERMISSION_DENIED, access_denied for consent_missing.")
        return False


async def run_scenario(
    federation: Mapping[str, Any], say: Callable[[str], None], desk: ConsentDesk
) -> bool:
    """Run the one-stop birth-support scenario against a running federation; tell it with ``say``.

    ``federation`` is the parsed ``federation.json`` written by ``pintu up``. Every call has a
    deadline. Returns True when every step did what it should, the refused request included;
    anything else is told through ``say`` and returns False (nothing is raised).
    """
    try:
        route = _read_federation(federation)
        async with grpc.aio.insecure_channel(route.welfare_gateway) as channel:
            case = _CaseSystem(channel, route, APPLICATION, say)
            case.announce()
            consent_id = await case.consent(desk)
            person, birth, household = await case.population()
            coverage, claims = await case.health_insurance(birth)
            income = await case.income()
            decision = case.decide(Evidence(person, birth, household, coverage, claims, income))
            refused = await case.unregistered_caller()
            enforced = await case.without_consent(desk, consent_id)
    except _ScenarioFailed as failure:
        say(f"Scenario failed: {failure}")
        return False
    except Exception as error:  # the scenario reports every failure; its caller is a CLI
        say(f"Scenario failed: unexpected {type(error).__name__}: {error}")
        return False
    if not decision.qualifies:
        say("Scenario failed: the sample family should qualify for birth support.")
        return False
    if not refused:
        say("Scenario failed: the unregistered caller was not refused as it should be.")
        return False
    if not enforced:
        say("Scenario failed: health data went out without the citizen's consent.")
        return False
    say("Scenario complete: every step did what it should.")
    return True
