"""The population registry's backend: ``popreg.v1.CivilRegistry`` over in-memory sample records.

The sample register holds three families (NIKs in :func:`sample_civil_records`); the scenario's
family lives in Jakarta: Budi Santoso and Siti Rahmawati, their son Ahmad and their daughter Putri,
born on 17 January 2026.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from demo._citizens import (
    Refusal,
    check_citizen_id,
    citizen_in_question,
    exchange_subject,
    not_found,
)
from demo.contracts import population_pb2, population_pb2_grpc
from demo.contracts.population_pb2 import Relationship, Sex

_FEMALE = population_pb2.SEX_FEMALE
_MALE = population_pb2.SEX_MALE
_MARRIED = population_pb2.MARITAL_STATUS_MARRIED


@dataclass(frozen=True)
class CivilRecords:
    """A population register: residents, registered births and family cards."""

    people: Mapping[str, population_pb2.Person]
    """Residents by citizen id."""
    births: Mapping[str, population_pb2.BirthRecord]
    """Birth records by the child's citizen id."""
    family_cards: Mapping[str, tuple[tuple[str, Relationship.ValueType], ...]]
    """Each family card's residents and their relationship to the head, head first."""

    def person(self, citizen: str) -> population_pb2.Person:
        """The resident ``citizen``.

        Raises:
            Refusal: NOT_FOUND.
        """
        found = self.people.get(citizen)
        if found is None:
            raise not_found(f"no resident {citizen} in the population register")
        return found

    def birth(self, child: str) -> population_pb2.BirthRecord:
        """The registered birth of ``child``.

        Raises:
            Refusal: NOT_FOUND.
        """
        found = self.births.get(child)
        if found is None:
            raise not_found(f"no registered birth of {child}")
        return found

    def household(self, citizen: str) -> list[population_pb2.HouseholdMember]:
        """Everyone on ``citizen``'s family card, head of household first.

        Raises:
            Refusal: NOT_FOUND.
        """
        card = self.person(citizen).family_card_number
        members: list[population_pb2.HouseholdMember] = []
        for member_id, relationship in self.family_cards.get(card, ()):
            member = self.person(member_id)
            members.append(
                population_pb2.HouseholdMember(
                    family_card_number=card,
                    citizen_id=member_id,
                    full_name=member.full_name,
                    relationship=relationship,
                    sex=member.sex,
                    birth_date=member.birth_date,
                )
            )
        if not members:
            raise not_found(f"{citizen} is not listed on family card {card}")
        return members


class CivilRegistry(population_pb2_grpc.CivilRegistryServicer):
    """``popreg.v1.CivilRegistry``: answers from ``records`` about the exchange's subject."""

    def __init__(self, records: CivilRecords) -> None:
        self._records = records

    async def GetPerson(
        self,
        request: population_pb2.GetPersonRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> population_pb2.Person:
        """The resident named in the request (or the subject)."""
        try:
            citizen = citizen_in_question(
                "citizen_id", request.citizen_id, context.invocation_metadata()
            )
            return self._records.person(citizen)
        except Refusal as refusal:
            await refusal.abort(context)

    async def GetBirthRecord(
        self,
        request: population_pb2.GetBirthRecordRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> population_pb2.BirthRecord:
        """The child's birth record, when the subject is the child or one of its parents."""
        try:
            child = check_citizen_id("child_citizen_id", request.child_citizen_id)
            subject = exchange_subject(context.invocation_metadata())
            record = self._records.birth(child)
            related = (record.child_citizen_id, record.mother_citizen_id, record.father_citizen_id)
            if subject and subject not in related:
                raise Refusal(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"child_citizen_id: {subject} (pintu-subject) is neither {child} nor a "
                    "registered parent",
                )
            return record
        except Refusal as refusal:
            await refusal.abort(context)

    async def ListHouseholdMembers(
        self,
        request: population_pb2.ListHouseholdMembersRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[population_pb2.HouseholdMember]:
        """The household of the resident named in the request (or the subject)."""
        try:
            citizen = citizen_in_question(
                "citizen_id", request.citizen_id, context.invocation_metadata()
            )
            members = self._records.household(citizen)
        except Refusal as refusal:
            await refusal.abort(context)
        for member in members:
            yield member


def add_civil_registry(server: grpc.aio.Server) -> None:
    """Serve ``popreg.v1.CivilRegistry`` over the sample register on ``server``."""
    population_pb2_grpc.add_CivilRegistryServicer_to_server(
        CivilRegistry(sample_civil_records()), server
    )


def _date(year: int, month: int, day: int) -> population_pb2.Date:
    return population_pb2.Date(year=year, month=month, day=day)


def _instant(text: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.fromisoformat(text))
    return stamp


def _person(
    citizen: str,
    name: str,
    sex: Sex.ValueType,
    born: population_pb2.Date,
    place: str,
    address: population_pb2.Address,
    card: str,
    marital_status: population_pb2.MaritalStatus.ValueType = population_pb2.MARITAL_STATUS_SINGLE,
) -> population_pb2.Person:
    return population_pb2.Person(
        citizen_id=citizen,
        full_name=name,
        sex=sex,
        birth_date=born,
        birth_place=place,
        marital_status=marital_status,
        address=address,
        family_card_number=card,
        nationality="IDN",
    )


def sample_civil_records() -> CivilRecords:
    """A fresh copy of the sample register.

    ======================  ==========================================================
    family card             residents
    ======================  ==========================================================
    ``3174052009190004``    Budi Santoso ``NIK:3174050208910002`` (head),
    (Jakarta Selatan)       Siti Rahmawati ``NIK:3174055403940003`` (spouse, the
                            scenario's applicant), Ahmad Fauzan Santoso
                            ``NIK:3174052106210001`` (son, born 2021), Putri Ayu
                            Santoso ``NIK:3174055701260001`` (daughter, born
                            17 January 2026, the scenario's newborn)
    ``3578091203140005``    Agus Prasetyo ``NIK:3578092304860001`` (head), Dewi
    (Surabaya)              Kartika ``NIK:3578094511880002`` (spouse), Rizky Pratama
                            ``NIK:3578091009150003`` (son), Sri Wahyuni
                            ``NIK:3578096802580004`` (Agus's mother)
    ``5171031506150002``    Made Wirawan ``NIK:5171033012790001``, living alone
    (Denpasar)
    ======================  ==========================================================
    """
    jakarta = population_pb2.Address(
        street="Jl. Kebayoran Lama Raya Gg. Masjid No. 12",
        neighbourhood="RT 006/RW 004",
        village="Grogol Utara",
        district="Kebayoran Lama",
        city="Kota Jakarta Selatan",
        province="DKI Jakarta",
        postal_code="12210",
    )
    surabaya = population_pb2.Address(
        street="Jl. Ngagel Jaya Selatan No. 41",
        neighbourhood="RT 002/RW 007",
        village="Ngagelrejo",
        district="Wonokromo",
        city="Kota Surabaya",
        province="Jawa Timur",
        postal_code="60245",
    )
    denpasar = population_pb2.Address(
        street="Jl. Gunung Agung Gg. Merpati No. 8",
        neighbourhood="Banjar Tegal Buah",
        village="Padangsambian",
        district="Denpasar Barat",
        city="Kota Denpasar",
        province="Bali",
        postal_code="80117",
    )
    santoso, prasetyo, wirawan = "3174052009190004", "3578091203140005", "5171031506150002"
    people = [
        _person(
            "NIK:3174050208910002",
            "Budi Santoso",
            _MALE,
            _date(1991, 8, 2),
            "Surabaya",
            jakarta,
            santoso,
            _MARRIED,
        ),
        _person(
            "NIK:3174055403940003",
            "Siti Rahmawati",
            _FEMALE,
            _date(1994, 3, 14),
            "Bandung",
            jakarta,
            santoso,
            _MARRIED,
        ),
        _person(
            "NIK:3174052106210001",
            "Ahmad Fauzan Santoso",
            _MALE,
            _date(2021, 6, 21),
            "Jakarta",
            jakarta,
            santoso,
        ),
        _person(
            "NIK:3174055701260001",
            "Putri Ayu Santoso",
            _FEMALE,
            _date(2026, 1, 17),
            "Jakarta",
            jakarta,
            santoso,
        ),
        _person(
            "NIK:3578092304860001",
            "Agus Prasetyo",
            _MALE,
            _date(1986, 4, 23),
            "Malang",
            surabaya,
            prasetyo,
            _MARRIED,
        ),
        _person(
            "NIK:3578094511880002",
            "Dewi Kartika",
            _FEMALE,
            _date(1988, 11, 5),
            "Surabaya",
            surabaya,
            prasetyo,
            _MARRIED,
        ),
        _person(
            "NIK:3578091009150003",
            "Rizky Pratama",
            _MALE,
            _date(2015, 9, 10),
            "Surabaya",
            surabaya,
            prasetyo,
        ),
        _person(
            "NIK:3578096802580004",
            "Sri Wahyuni",
            _FEMALE,
            _date(1958, 2, 28),
            "Malang",
            surabaya,
            prasetyo,
            population_pb2.MARITAL_STATUS_WIDOWED,
        ),
        _person(
            "NIK:5171033012790001",
            "Made Wirawan",
            _MALE,
            _date(1979, 12, 30),
            "Gianyar",
            denpasar,
            wirawan,
            population_pb2.MARITAL_STATUS_DIVORCED,
        ),
    ]
    births = [
        population_pb2.BirthRecord(
            certificate_number="3174-LT-19012026-0042",
            child_citizen_id="NIK:3174055701260001",
            child_name="Putri Ayu Santoso",
            sex=_FEMALE,
            birth_date=_date(2026, 1, 17),
            birth_place="RSIA Budhi Jaya, Jakarta Selatan",
            mother_citizen_id="NIK:3174055403940003",
            father_citizen_id="NIK:3174050208910002",
            birth_order=2,
            birth_weight_grams=3150,
            registration_office="Suku Dinas Dukcapil Kota Jakarta Selatan",
            registered_at=_instant("2026-01-19T10:24:00+07:00"),
        ),
        population_pb2.BirthRecord(
            certificate_number="3174-LT-05072021-0117",
            child_citizen_id="NIK:3174052106210001",
            child_name="Ahmad Fauzan Santoso",
            sex=_MALE,
            birth_date=_date(2021, 6, 21),
            birth_place="RSUD Kebayoran Lama, Jakarta Selatan",
            mother_citizen_id="NIK:3174055403940003",
            father_citizen_id="NIK:3174050208910002",
            birth_order=1,
            birth_weight_grams=3300,
            registration_office="Suku Dinas Dukcapil Kota Jakarta Selatan",
            registered_at=_instant("2021-07-05T09:02:00+07:00"),
        ),
        population_pb2.BirthRecord(
            certificate_number="3578-LT-21092015-0350",
            child_citizen_id="NIK:3578091009150003",
            child_name="Rizky Pratama",
            sex=_MALE,
            birth_date=_date(2015, 9, 10),
            birth_place="RSUD Dr. Soetomo, Surabaya",
            mother_citizen_id="NIK:3578094511880002",
            father_citizen_id="NIK:3578092304860001",
            birth_order=1,
            birth_weight_grams=2950,
            registration_office="Dinas Dukcapil Kota Surabaya",
            registered_at=_instant("2015-09-21T13:45:00+07:00"),
        ),
    ]
    head = population_pb2.RELATIONSHIP_HEAD_OF_HOUSEHOLD
    spouse = population_pb2.RELATIONSHIP_SPOUSE
    child = population_pb2.RELATIONSHIP_CHILD
    family_cards = {
        santoso: (
            ("NIK:3174050208910002", head),
            ("NIK:3174055403940003", spouse),
            ("NIK:3174052106210001", child),
            ("NIK:3174055701260001", child),
        ),
        prasetyo: (
            ("NIK:3578092304860001", head),
            ("NIK:3578094511880002", spouse),
            ("NIK:3578091009150003", child),
            ("NIK:3578096802580004", population_pb2.RELATIONSHIP_PARENT),
        ),
        wirawan: (("NIK:5171033012790001", head),),
    }
    return CivilRecords(
        people=MappingProxyType({person.citizen_id: person for person in people}),
        births=MappingProxyType({birth.child_citizen_id: birth for birth in births}),
        family_cards=MappingProxyType(family_cards),
    )
