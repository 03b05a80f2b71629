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
===========================================  ======  ==============================================

Alert when the staple age passes half the maximum age: the security server cannot reach the
OCSP responder and will be refused by its peers once the maximum age is reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pki import CertificateKeeper


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


class GatewayMetrics:
    """The registry of one security server's metrics."""

    def __init__(self, keeper: Callable[[], CertificateKeeper | None]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_KeeperCollector(keeper))
