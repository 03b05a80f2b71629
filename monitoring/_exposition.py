"""Serving a registry's metrics over HTTP, on a thread of its own (never on the exchange path)."""

from __future__ import annotations

from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server


@dataclass
class MetricsServer:
    """A running exposition endpoint; ``port`` is the bound port."""

    server: WSGIServer
    thread: Thread

    @property
    def port(self) -> int:
        """The port the endpoint listens on."""
        return int(self.server.server_address[1])

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve_metrics(address: str, registry: CollectorRegistry) -> MetricsServer:
    """Serve ``registry`` at ``http://address/metrics`` (``host:port``; port 0 picks one).

    Raises:
        OSError: the address cannot be bound.
    """
    host, _, port = address.rpartition(":")
    server, thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    return MetricsServer(server, thread)
