"""A stand-in for OPA's REST Data API (``opa run --server``): ``POST /v1/data/<path>`` answers
``{"result": ...}`` by evaluating the shipped policies with the embedded engine, or misbehaves
as ``mode`` says. The OPA binary cannot be installed on these machines."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import time
from pathlib import Path

import policy

ENTRY = "/v1/data/pintu/authz/decision"


class FakeOpa:
    """Serves on 127.0.0.1 (HTTPS with ``tls``: (certificate file, key file)).

    Modes: ``serve``; ``slow`` (answers after ``delay`` seconds); ``garbage`` (an HTML page);
    ``bad_json`` (JSON cut short); ``undefined`` (no result, as OPA answers for an undefined
    document); ``error`` (HTTP 500 with OPA's error body); ``not_a_decision`` (a result that is
    no decision); ``drop`` (closes the connection without an answer).
    """

    def __init__(self, tls: tuple[Path, Path] | None = None, delay: float = 2.0) -> None:
        self.mode = "serve"
        self.delay = delay
        self.requests: list[dict[str, object]] = []
        self.engine = policy.EmbeddedEngine(policy.PolicySet.load(policy.DEFAULT_POLICIES))
        lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = json.loads(body)
                outer.requests.append({"path": self.path, "body": request})
                mode = outer.mode
                if mode == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "slow":
                    time.sleep(outer.delay)
                if self.path != ENTRY:
                    self._answer(404, b'{"code": "resource_not_found"}')
                elif mode == "garbage":
                    self._answer(200, b"<html>not OPA</html>", "text/html")
                elif mode == "bad_json":
                    self._answer(200, b'{"result": {"allow": tr')
                elif mode == "undefined":
                    self._answer(200, b"{}")
                elif mode == "error":
                    self._answer(500, b'{"code": "internal_error", "message": "boom"}')
                elif mode == "not_a_decision":
                    self._answer(200, json.dumps({"result": "yes"}).encode())
                else:
                    with lock:
                        result = outer.engine.evaluate(request["input"])
                    answer = {"result": result, "decision_id": "opa-decision-1"}
                    self._answer(200, json.dumps(answer).encode())

            def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
