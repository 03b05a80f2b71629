"""What the consent tests share: a federation with the consent service's signing key, the
parties and services of a small registry, a consent detail and an access event to vary."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

import pki
from consent import AccessEvent, ConsentDetail, sign_receipt
from proto import MemberId, SecurityServerId, ServiceId
from registry import GlobalConfiguration, Member, SecurityServer, Service

INSTANCE = "DEMO"
# The real time, whole seconds: receipts are signed with certificates valid now.
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)
WIB = dt.timezone(dt.timedelta(hours=7), "WIB")

POPREG = MemberId(INSTANCE, "GOV", "POPREG")
TAX = MemberId(INSTANCE, "GOV", "TAX")
HOSPITAL = MemberId(INSTANCE, "GOV", "HOSPITAL")
KOMINFO = MemberId(INSTANCE, "GOV", "KOMINFO")  # runs the consent service
CIVIL = POPREG.subsystem("civilregistry")
HEALTH = POPREG.subsystem("health")
TAXES = TAX.subsystem("taxes")
EMR = HOSPITAL.subsystem("emr")

PERSONS = ServiceId(CIVIL, "pintu.popreg.v1.Persons")  # identity, address: healthcare, taxation
STATISTICS = ServiceId(CIVIL, "pintu.popreg.v1.Statistics")  # statistics: any purpose
RECORDS = ServiceId(HEALTH, "pintu.health.v1.Records")  # medical: healthcare
INCOME = ServiceId(TAXES, "pintu.tax.v1.Income")  # income, identity: taxation
UNREGISTERED = ServiceId(CIVIL, "pintu.popreg.v1.Unregistered")

SUBJECT = "NIK:3174051234560001"
OTHER_SUBJECT = "NIK:3174059876540002"


def detail(**changes: Any) -> ConsentDetail:
    """A valid consent detail (EMR may read PERSONS of POPREG for healthcare for 30 days),
    with ``changes``."""
    fields: dict[str, Any] = {
        "subject": SUBJECT,
        "provider": POPREG,
        "consumer": EMR,
        "purpose": "healthcare",
        "purpose_text": "Treatment at the city hospital",
        "valid_from": NOW,
        "valid_until": NOW + 30 * DAY,
        "services": (PERSONS,),
        "data_categories": (),
    }
    fields.update(changes)
    return ConsentDetail(**fields)


SERVICES = {
    PERSONS: Service(
        PERSONS,
        ("GetPerson",),
        "Persons",
        personal_data=True,
        data_categories=("identity", "address"),
        purposes=("healthcare", "taxation"),
        consent_required=True,
        legal_basis="Population Administration Act, art. 58",
    ),
    STATISTICS: Service(STATISTICS, ("Count",), "Statistics", data_categories=("statistics",)),
    RECORDS: Service(
        RECORDS,
        ("GetRecord",),
        "Medical records",
        personal_data=True,
        data_categories=("medical",),
        purposes=("healthcare",),
        consent_required=True,
    ),
    INCOME: Service(
        INCOME,
        ("GetIncome",),
        "Income",
        personal_data=True,
        data_categories=("income", "identity"),
        purposes=("taxation",),
    ),
}


def configuration() -> GlobalConfiguration:
    return GlobalConfiguration.build(
        INSTANCE,
        [
            Member(POPREG, "Population Registry", frozenset({"civilregistry", "health"})),
            Member(TAX, "Tax Office", frozenset({"taxes"})),
            Member(HOSPITAL, "City Hospital", frozenset({"emr"})),
            Member(KOMINFO, "Ministry of Communication", frozenset({"consent"})),
        ],
        [
            SecurityServer(SecurityServerId(POPREG, "ss1"), ("ss1.popreg.example:7101",)),
            SecurityServer(SecurityServerId(TAX, "ss1"), ("ss1.tax.example:7101",)),
        ],
        list(SERVICES.values()),
    )


@dataclass
class Signer:
    key: ec.EllipticCurvePrivateKey
    chain: list[x509.Certificate]

    def sign(self, consent_id: str, consent: ConsentDetail, at: dt.datetime) -> str:
        """A receipt, as :class:`consent.ConsentStore` asks its signer for one."""
        return sign_receipt(consent_id, consent, at, self.key, self.chain)


@dataclass
class Federation:
    ca: pki.CertificateAuthority

    @staticmethod
    def create() -> Federation:
        # The root is older than the tests, so that certificates can be issued in the past.
        return Federation(
            pki.CertificateAuthority.create(INSTANCE, now=NOW - 10 * DAY, lifetime=30 * DAY)
        )

    @property
    def roots(self) -> list[x509.Certificate]:
        return [self.ca.certificate]

    def signer(
        self,
        member: MemberId = KOMINFO,
        *,
        now: dt.datetime = NOW - DAY,
        lifetime: dt.timedelta = 3 * DAY,
    ) -> Signer:
        key = pki.generate_key()
        certificate = self.ca.issue_signing_certificate(
            member, key.public_key(), now=now, lifetime=lifetime
        )
        return Signer(key, [certificate])


POPREG_LOG = SecurityServerId(POPREG, "ss1")
HOSPITAL_SERVER = SecurityServerId(HOSPITAL, "ss1")
PSEUDONYM = "0123456789abcdef0123456789abcdef"  # a citizen's, as audit.pseudonym gives them
OTHER_PSEUDONYM = "fedcba9876543210fedcba9876543210"


def access_event(seq: int, **changes: Any) -> AccessEvent:
    """An allowed exchange of EMR with POPREG's Persons about ``PSEUDONYM``, record ``seq`` of
    POPREG's ss1 log, ``seq`` seconds after NOW, with ``changes``."""
    fields: dict[str, Any] = {
        "log": str(POPREG_LOG),
        "seq": seq,
        "subject": PSEUDONYM,
        "consumer": str(EMR),
        "consumer_server": str(HOSPITAL_SERVER),
        "provider": str(CIVIL),
        "method": "/pintu.popreg.v1.Persons/GetPerson",
        "purpose": "healthcare",
        "at": NOW + dt.timedelta(seconds=seq),
        "allowed": True,
        "code": "",
        "message_id": f"{seq:032x}",
        "checkpoint_size": seq + 1,
        "checkpoint_root": "ab" * 32,
    }
    fields.update(changes)
    return AccessEvent(**fields)


def run_in_threads(count: int, work: Callable[[int], object]) -> list[object]:
    """``work(0..count-1)`` in as many threads started together; their results, in order."""
    start = threading.Barrier(count)
    results: list[object] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait(timeout=10)
            results[index] = work(index)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert [repr(e) for e in errors] == []
    return results
