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
===========================================  ======  ==============================================

Alert when the staple age passes half the maximum age: the security server cannot reach the
OCSP responder and will be refused by its peers once the maximum age is reached. Alert likewise
when the configuration's expiry falls below half its validity: the registry has not been reached
for that long, and exchanges stop at expiry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

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


class GatewayMetrics:
    """The registry of one security server's metrics."""

    def __init__(
        self,
        keeper: Callable[[], CertificateKeeper | None],
        configuration: Callable[[], ConfigurationSource | None] = lambda: None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_KeeperCollector(keeper))
        self.registry.register(_ConfigurationCollector(configuration, clock))
