"""A running consent service on 127.0.0.1 with a throwaway CA: its TLS and receipt-signing
certificates, an operator (``portal``), the security servers of two members, and a static global
configuration in which ``DEMO/GOV/POPREG/civilregistry`` offers ``popreg.v1.CivilRegistry``
(personal data, consent required, for ``birth-support``) and ``DEMO/GOV/TAX/income`` offers
``tax.v1.Income``; the federation's pseudonym key (``PSEUDONYM_KEY``) finds access histories."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pki
from consent import (
    ConsentClient,
    ConsentDetail,
    ConsentReplica,
    ConsentService,
    ConsentSettings,
    ReplicaFollower,
)
from pintu import free_port
from proto import MemberId, OperatorId, SecurityServerId
from registry import GlobalConfiguration, Member, SecurityServer, Service, StaticConfiguration

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)
POPREG = MemberId.parse("DEMO/GOV/POPREG")
TAX = MemberId.parse("DEMO/GOV/TAX")
WELFARE = MemberId.parse("DEMO/GOV/WELFARE")
OPERATOR_MEMBER = MemberId.parse("DEMO/GOV/PINTU")
CIVIL = POPREG.subsystem("civilregistry")
INCOME = TAX.subsystem("income")
BIRTH = WELFARE.subsystem("birthsupport")
CIVIL_REGISTRY = CIVIL.service("popreg.v1.CivilRegistry")
TAX_INCOME = INCOME.service("tax.v1.Income")
POPREG_SERVER = POPREG.server("ss1")
TAX_SERVER = TAX.server("ss1")
CITIZEN = "NIK:3174051234560001"
OTHER_CITIZEN = "NIK:3174051234560002"
PORTAL = OperatorId("portal")
PSEUDONYM_KEY = bytes(range(32))


def configuration() -> GlobalConfiguration:
    return GlobalConfiguration.build(
        "DEMO",
        [
            Member(POPREG, "Population Registry", frozenset({"civilregistry"})),
            Member(TAX, "Tax Office", frozenset({"income"})),
            Member(WELFARE, "Welfare", frozenset({"birthsupport"})),
        ],
        [
            *(SecurityServer(POPREG.server(f"ss{n}"), (f"127.0.0.1:{n}",)) for n in (1, 2, 3)),
            SecurityServer(TAX_SERVER, ("127.0.0.1:9",)),
        ],
        [
            Service(
                CIVIL_REGISTRY,
                ("GetPerson",),
                "Civil registry",
                personal_data=True,
                data_categories=("identity", "family"),
                purposes=("birth-support",),
                consent_required=True,
            ),
            Service(
                TAX_INCOME,
                ("GetIncome",),
                "Income",
                personal_data=True,
                data_categories=("income",),
                purposes=("birth-support",),
                consent_required=True,
            ),
        ],
    )


def detail(
    subject: str = CITIZEN,
    *,
    provider: object = CIVIL,
    services: tuple[object, ...] = (CIVIL_REGISTRY,),
    purpose: str = "birth-support",
    valid_from: dt.datetime | None = None,
    valid_until: dt.datetime | None = None,
) -> ConsentDetail:
    return ConsentDetail(
        subject=subject,
        provider=provider,  # type: ignore[arg-type]
        consumer=BIRTH,
        purpose=purpose,
        purpose_text="To decide on the birth-support application for your child",
        valid_from=valid_from or NOW - dt.timedelta(minutes=1),
        valid_until=valid_until or NOW + DAY * 30,
        services=services,  # type: ignore[arg-type]
    )


@dataclass
class ConsentSite:
    """The CA, the settings and (once started) the service."""

    folder: Path
    ca: pki.CertificateAuthority = field(
        default_factory=lambda: pki.CertificateAuthority.create(
            "DEMO", now=NOW - DAY, lifetime=DAY * 30
        )
    )
    port: int = field(default_factory=free_port)
    service: ConsentService | None = None
    followers: list[ReplicaFollower] = field(default_factory=list)
    pseudonym_key: bytes | None = PSEUDONYM_KEY

    @property
    def anchors(self) -> bytes:
        return pki.certificate_pem(self.ca.certificate)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def settings(self, database: str, heartbeat: float = 0.2) -> ConsentSettings:
        tls_key, signing_key = pki.generate_key(), pki.generate_key()
        tls = self.ca.issue_service_certificate(
            "consent",
            ["127.0.0.1"],
            tls_key.public_key(),
            now=NOW,
            lifetime=DAY,
            reserved=(pki.CONSENT_TLS_NAME,),
        )
        signer = self.ca.issue_signing_certificate(
            OPERATOR_MEMBER, signing_key.public_key(), now=NOW, lifetime=DAY
        )
        return ConsentSettings(
            database=database,
            listen=self.address,
            tls=pki.TlsIdentity(pki.key_pem(tls_key), pki.certificate_pem(tls), self.anchors),
            signing_key=signing_key,  # type: ignore[arg-type]
            signing_chain=(signer,),
            registry=StaticConfiguration(configuration()),
            operators=frozenset({PORTAL}),
            heartbeat_seconds=heartbeat,
            poll_seconds=0.1,
            pseudonym_key=self.pseudonym_key,
        )

    async def start(self, database: str | None = None) -> ConsentService:
        self.service = ConsentService(
            self.settings(database or f"sqlite:///{self.folder / 'consent.db'}")
        )
        await self.service.start()
        return self.service

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop(0)
            self.service = None

    def operator(self, name: OperatorId = PORTAL) -> pki.TlsIdentity:
        key = pki.generate_key()
        certificate = self.ca.issue_operator_certificate(
            name, key.public_key(), now=NOW, lifetime=DAY
        )
        return pki.TlsIdentity(pki.key_pem(key), pki.certificate_pem(certificate), self.anchors)

    def server(self, server: SecurityServerId = POPREG_SERVER) -> pki.TlsIdentity:
        key = pki.generate_key()
        certificate = self.ca.issue_server_certificate(
            server, key.public_key(), now=NOW, lifetime=DAY
        )
        return pki.TlsIdentity(pki.key_pem(key), pki.certificate_pem(certificate), self.anchors)

    def client(self, identity: pki.TlsIdentity | None = None) -> ConsentClient:
        return ConsentClient(self.address, identity or self.operator())

    def follow(self, server: SecurityServerId = POPREG_SERVER) -> ReplicaFollower:
        identity = self.server(server)
        follower = ReplicaFollower(ConsentReplica(), self.address, lambda: identity)
        follower.start()
        self.followers.append(follower)
        return follower

    async def close(self) -> None:
        for follower in self.followers:
            await follower.stop()
        await self.stop()
