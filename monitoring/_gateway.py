"""A security server's metrics about its own certificate and revocation status.

===========================================  ======  ==============================================
metric                                       type    meaning
===========================================  ======  ==============================================
``pintu_certificate_expiry_seconds``         gauge   seconds until the authentication certificate
                                                     expires (renewal happens at two thirds)
``pintu_certificate_renewals_total``         counter renewals since the process started
``pintu_ocsp_staple_age_seconds``            gauge   age of the OCSP response stapled to exchanges
                                                     (+Inf before the first one)
``pintu_ocsp_staple_max_age_seconds``        gauge   the age at which peers refuse the staple
``pintu_crl_revoked_certificates``           gauge   revoked serials known from the CRLs
``pintu_global_configuration_version``       gauge   version of the global configuration in use
``pintu_global_configuration_expiry_seconds`` gauge  seconds until it expires (negative once it
                                                     has: every exchange is then refused)
``pintu_global_configuration_age_seconds``   gauge   seconds since it was built by the registry
``pintu_global_configuration_fetch_failures`` gauge  consecutive failed attempts to reach the
                                                     registry (0 after a success)
``pintu_policy_decisions_total``             counter policy decisions by ``outcome``: allow,
                                                     deny, error (every error denied an exchange)
``pintu_policy_denials_total``               counter denials by the policy's ``reason`` code
``pintu_policy_revision_info``               gauge   1, labelled with the deciding ``revision``
``pintu_policy_bundle_refusals_total``       counter signed policy bundles refused (bad
                                                     signature, failed compile or tests); the
                                                     previous policies still decide
``pintu_policy_rights_refusals_total``       counter access-rights files refused (unreadable or
                                                     naming services not served here)
``pintu_policy_cache_hits_total``            counter decisions answered by the decision cache
``pintu_policy_cache_misses_total``          counter decisions the engine had to make
``pintu_consent_replica_age_seconds``        gauge   seconds since the consent service was last
                                                     heard from (+Inf before the first time)
``pintu_consent_replica_max_age_seconds``    gauge   the age past which consent-requiring
                                                     exchanges fail closed
``pintu_consent_replica_consents``           gauge   consents held by the replica
``pintu_consent_replica_position``           gauge   change-stream position applied
``pintu_consent_stale_refusals_total``       counter exchanges refused: replica too old
===========================================  ======  ==============================================

Alert on any increase of ``pintu_policy_bundle_refusals_total`` or
``pintu_policy_rights_refusals_total``: an operator's change did not take effect. Alert when the
staple age passes half the maximum age: the security server cannot reach the
OCSP responder and will be refused by its peers once the maximum age is reached. Alert likewise
when the configuration's expiry falls below half its validity: the registry has not been reached
for that long, and exchanges stop at expiry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pki import CertificateKeeper
from registry import ConfigurationSource


class _KeeperCollector(Collector):
    """Reads the keeper at scrape time: nothing is updated on the exchange path."""

    def __init__(self, keeper: Callable[[], CertificateKeeper | None]) -> None:
        self._keeper = keeper

    def collect(self) -> Iterator[Metric]:
        keeper = self._keeper()
        if keeper is None:
            return
        yield GaugeMetricFamily(
            "pintu_certificate_expiry_seconds",
            "Seconds until the security server's authentication certificate expires.",
            value=keeper.seconds_to_expiry(),
        )
        yield CounterMetricFamily(
            "pintu_certificate_renewals",
            "Renewals of the authentication certificate since the process started.",
            value=keeper.renewals,
        )
        yield GaugeMetricFamily(
            "pintu_ocsp_staple_age_seconds",
            "Age of the OCSP response the security server staples to its exchanges.",
            value=keeper.staple_age(),
        )
        yield GaugeMetricFamily(
            "pintu_ocsp_staple_max_age_seconds",
            "Age at which peers refuse the stapled OCSP response.",
            value=keeper.settings.ocsp_max_age.total_seconds(),
        )
        yield GaugeMetricFamily(
            "pintu_crl_revoked_certificates",
            "Revoked certificate serials known from the issuing CAs' CRLs.",
            value=len(keeper.revoked),
        )


class _ConfigurationCollector(Collector):
    """Reads the global configuration's source at scrape time."""

    def __init__(
        self,
        source: Callable[[], ConfigurationSource | None],
        clock: Callable[[], dt.datetime],
    ) -> None:
        self._source = source
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        source = self._source()
        if source is None:
            return
        configuration = source.configuration
        yield GaugeMetricFamily(
            "pintu_global_configuration_version",
            "Version of the global configuration the security server uses.",
            value=configuration.version,
        )
        yield GaugeMetricFamily(
            "pintu_global_configuration_expiry_seconds",
            "Seconds until the global configuration in use expires (exchanges stop then).",
            value=source.seconds_to_expiry(),
        )
        built_at = configuration.built_at
        yield GaugeMetricFamily(
            "pintu_global_configuration_age_seconds",
            "Seconds since the registry built the global configuration in use.",
            value=(self._clock() - built_at).total_seconds() if built_at else 0.0,
        )
        yield GaugeMetricFamily(
            "pintu_global_configuration_fetch_failures",
            "Consecutive failed attempts to get the global configuration from the registry.",
            value=source.failures,
        )


@dataclass(frozen=True)
class PolicyFigures:
    """A security server's policy enforcement figures since it started."""

    revision: str
    allowed: int
    denied: int
    failed: int
    bundle_refusals: int
    rights_refusals: int
    cache_hits: int = 0
    cache_misses: int = 0
    denials_by_reason: Mapping[str, int] = field(default_factory=dict)


class _PolicyCollector(Collector):
    """Reads the policy enforcement figures at scrape time."""

    def __init__(self, figures: Callable[[], PolicyFigures | None]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        figures = self._figures()
        if figures is None:
            return
        decisions = CounterMetricFamily(
            "pintu_policy_decisions",
            "Policy decisions on exchanges by outcome (an error denies the exchange).",
            labels=["outcome"],
        )
        decisions.add_metric(["allow"], figures.allowed)
        decisions.add_metric(["deny"], figures.denied)
        decisions.add_metric(["error"], figures.failed)
        yield decisions
        denials = CounterMetricFamily(
            "pintu_policy_denials",
            "Exchanges denied by policy, by the policy's reason code.",
            labels=["reason"],
        )
        for reason, count in sorted(figures.denials_by_reason.items()):
            denials.add_metric([reason], count)
        yield denials
        revision = GaugeMetricFamily(
            "pintu_policy_revision_info",
            "The revision of the policies deciding exchanges (value 1).",
            labels=["revision"],
        )
        revision.add_metric([figures.revision], 1)
        yield revision
        yield CounterMetricFamily(
            "pintu_policy_bundle_refusals",
            "Signed policy bundles refused; the previous policies still decide.",
            value=figures.bundle_refusals,
        )
        yield CounterMetricFamily(
            "pintu_policy_rights_refusals",
            "Access-rights files refused; the rights read last stay in force.",
            value=figures.rights_refusals,
        )
        yield CounterMetricFamily(
            "pintu_policy_cache_hits",
            "Policy decisions answered by the decision cache.",
            value=figures.cache_hits,
        )
        yield CounterMetricFamily(
            "pintu_policy_cache_misses",
            "Policy decisions the engine had to make (cache misses).",
            value=figures.cache_misses,
        )


@dataclass(frozen=True)
class ConsentFigures:
    """A provider security server's consent replica."""

    age_seconds: float
    max_staleness_seconds: float
    consents: int
    position: int
    stale_refusals: int


class _ConsentCollector(Collector):
    """Reads the consent replica at scrape time."""

    def __init__(self, figures: Callable[[], ConsentFigures | None]) -> None:
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        figures = self._figures()
        if figures is None:
            return
        yield GaugeMetricFamily(
            "pintu_consent_replica_age_seconds",
            "Seconds since the consent service was last heard from.",
            value=figures.age_seconds,
        )
        yield GaugeMetricFamily(
            "pintu_consent_replica_max_age_seconds",
            "Replica age past which consent-requiring exchanges fail closed.",
            value=figures.max_staleness_seconds,
        )
        yield GaugeMetricFamily(
            "pintu_consent_replica_consents",
            "Consents held by the consent replica.",
            value=figures.consents,
        )
        yield GaugeMetricFamily(
            "pintu_consent_replica_position",
            "Position of the consent service's change stream the replica has applied.",
            value=figures.position,
        )
        yield CounterMetricFamily(
            "pintu_consent_stale_refusals",
            "Exchanges refused because the consent replica was too old.",
            value=figures.stale_refusals,
        )


class GatewayMetrics:
    """The registry of one security server's metrics."""

    def __init__(
        self,
        keeper: Callable[[], CertificateKeeper | None],
        configuration: Callable[[], ConfigurationSource | None] = lambda: None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        *,
        policy: Callable[[], PolicyFigures | None] = lambda: None,
        consent: Callable[[], ConsentFigures | None] = lambda: None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_KeeperCollector(keeper))
        self.registry.register(_ConfigurationCollector(configuration, clock))
        self.registry.register(_PolicyCollector(policy))
        self.registry.register(_ConsentCollector(consent))
