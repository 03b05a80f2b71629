"""Prometheus metrics of Pintu processes, exposed off the exchange path.

Today: a security server's certificate and revocation-status metrics (:class:`GatewayMetrics`)
and the exposition endpoint (:func:`serve_metrics`). Metric names follow Prometheus
conventions: ``pintu_`` prefix, base units, ``_total`` for counters.
"""

from monitoring._exposition import MetricsServer, serve_metrics
from monitoring._gateway import ConsentFigures, GatewayMetrics, PolicyFigures

__all__ = ["ConsentFigures", "GatewayMetrics", "MetricsServer", "PolicyFigures", "serve_metrics"]
