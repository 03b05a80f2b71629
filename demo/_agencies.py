"""The four sample agencies of the one-stop scenario, and how to start their backends.

* ``welfare``: Ministry of Social Welfare, ``DEMO/GOV/WELFARE/birthsupport``, only a client;
* ``popreg``: Population Registry, ``DEMO/GOV/POPREG/civilregistry``, ``popreg.v1.CivilRegistry``;
* ``nhis``: National Health Insurance Service, ``DEMO/PUB/NHIS/eligibility``,
  ``nhis.v1.Eligibility``;
* ``tax``: Tax Office, ``DEMO/GOV/TAX/income``, ``tax.v1.IncomeStatements``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import grpc.aio
from google.protobuf.descriptor import ServiceDescriptor

from demo._health_insurance import add_eligibility
from demo._population import add_civil_registry
from demo._tax import add_income_statements
from demo.contracts import health_insurance_pb2, population_pb2, tax_pb2
from proto import MemberId, SubsystemId


@dataclass(frozen=True, slots=True)
class AgencyService:
    """A gRPC service an agency offers: its full name, its methods, one line about it, its
    descriptor, the facts the registry records about the personal data it handles, and who
    holds an access right to it (``subsystem:ID`` or ``group:CODE``, every method)."""

    name: str
    methods: tuple[str, ...]
    description: str
    descriptor: ServiceDescriptor | None = field(default=None, compare=False, repr=False)
    data_categories: tuple[str, ...] = ()
    purposes: tuple[str, ...] = ()
    legal_basis: str = ""
    clients: tuple[str, ...] = ()
    consent_required: bool = False

    @staticmethod
    def of(
        descriptor: ServiceDescriptor,
        description: str,
        *,
        data_categories: tuple[str, ...] = (),
        purposes: tuple[str, ...] = (),
        legal_basis: str = "",
        clients: tuple[str, ...] = (),
        consent_required: bool = False,
    ) -> AgencyService:
        """The service described by a generated module's ``descriptor``."""
        return AgencyService(
            descriptor.full_name,
            tuple(method.name for method in descriptor.methods),
            description,
            descriptor,
            data_categories,
            purposes,
            legal_basis,
            clients,
            consent_required,
        )


@dataclass(frozen=True, slots=True)
class Agency:
    """A member of the sample federation and the subsystem it takes part with.

    ``add_servicers`` registers the backend's servicers on a ``grpc.aio.Server``; it is None for
    an agency that offers no services and only calls others (the welfare agency).
    """

    key: str
    member: MemberId
    member_name: str
    subsystem: SubsystemId
    services: tuple[AgencyService, ...]
    add_servicers: Callable[[grpc.aio.Server], None] | None

    def __post_init__(self) -> None:
        if self.subsystem.member != self.member:
            raise ValueError(f"{self.key}: subsystem {self.subsystem} is not of {self.member}")
        if bool(self.services) != (self.add_servicers is not None):
            raise ValueError(f"{self.key}: services and add_servicers go together")


def _member(member_class: str, member_code: str) -> MemberId:
    return MemberId("DEMO", member_class, member_code)


_WELFARE = _member("GOV", "WELFARE")
_POPREG = _member("GOV", "POPREG")
_NHIS = _member("PUB", "NHIS")
_TAX = _member("GOV", "TAX")
# The one-stop birth-support application asks every agency below.
_BIRTH_SUPPORT = (f"subsystem:{_WELFARE.subsystem('birthsupport')}",)

AGENCIES: tuple[Agency, ...] = (
    Agency(
        key="welfare",
        member=_WELFARE,
        member_name="Ministry of Social Welfare",
        subsystem=_WELFARE.subsystem("birthsupport"),
        services=(),
        add_servicers=None,
    ),
    Agency(
        key="popreg",
        member=_POPREG,
        member_name="Population Registry",
        subsystem=_POPREG.subsystem("civilregistry"),
        services=(
            AgencyService.of(
                population_pb2.DESCRIPTOR.services_by_name["CivilRegistry"],
                "Residents, registered births and households (family cards).",
                data_categories=("identity", "family"),
                purposes=("birth-support",),
                legal_basis="Birth Support Act (demo), art. 12: verifying a birth",
                clients=_BIRTH_SUPPORT,
            ),
        ),
        add_servicers=add_civil_registry,
    ),
    Agency(
        key="nhis",
        member=_NHIS,
        member_name="National Health Insurance Service",
        subsystem=_NHIS.subsystem("eligibility"),
        services=(
            AgencyService.of(
                health_insurance_pb2.DESCRIPTOR.services_by_name["Eligibility"],
                "Health-insurance coverage, maternity benefit and prenatal-care claims.",
                data_categories=("health", "insurance"),
                purposes=("birth-support",),
                # Health data: only with the citizen's own consent, never on a legal basis.
                consent_required=True,
                clients=_BIRTH_SUPPORT,
            ),
        ),
        add_servicers=add_eligibility,
    ),
    Agency(
        key="tax",
        member=_TAX,
        member_name="Tax Office",
        subsystem=_TAX.subsystem("income"),
        services=(
            AgencyService.of(
                tax_pb2.DESCRIPTOR.services_by_name["IncomeStatements"],
                "Assessed annual income of individual taxpayers.",
                data_categories=("income",),
                purposes=("birth-support",),
                legal_basis="Birth Support Act (demo), art. 14: income-tested support",
                clients=_BIRTH_SUPPORT,
            ),
        ),
        add_servicers=add_income_statements,
    ),
)
"""The sample agencies in a fixed order: welfare (the client), popreg, nhis, tax."""


@dataclass(frozen=True, slots=True)
class AgencyBackend:
    """A started agency backend: its server and the port it listens on. Stop it when done."""

    agency: Agency
    server: grpc.aio.Server
    port: int

    async def stop(self, grace: float | None = None) -> None:
        """Stop the server, letting calls in flight finish for ``grace`` seconds."""
        await self.server.stop(grace)


async def serve_agency(agency: Agency, address: str) -> AgencyBackend:
    """Start ``agency``'s backend, plaintext gRPC on ``address`` (port 0 picks a free port).

    Raises:
        ValueError: the agency offers no services.
        OSError: ``address`` cannot be listened on.
    """
    if agency.add_servicers is None:
        raise ValueError(f"{agency.key} offers no services; it only calls other agencies")
    # Without SO_REUSEPORT a second backend on a taken port fails instead of sharing it.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    agency.add_servicers(server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as error:
        raise OSError(f"{agency.key} backend: cannot listen on {address}: {error}") from None
    if port == 0:
        raise OSError(f"{agency.key} backend: cannot listen on {address}")
    await server.start()
    return AgencyBackend(agency, server, port)
