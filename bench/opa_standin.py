"""A stand-in for an OPA sidecar, for the policy suite's remote round trip: ``POST
/v1/data/pintu/authz/decision`` answers one fixed allowing decision at once, so that what is
measured is the remote engine's own cost (HTTP, JSON, the adapter) and not OPA's evaluation.

    python -m bench.opa_standin --port PORT --ready-file FILE
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

from aiohttp import web

ANSWER = {"allow": True, "reasons": [], "obligations": []}


async def _decide(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"result": ANSWER, "decision_id": str(uuid.uuid4())})


async def _ready(app: web.Application) -> None:
    app["ready_file"].write_text("ready\n")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.opa_standin")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    arguments = parser.parse_args()
    app = web.Application()
    app["ready_file"] = arguments.ready_file
    app.router.add_post("/v1/data/pintu/authz/decision", _decide)
    app.on_startup.append(_ready)
    web.run_app(app, host="127.0.0.1", port=arguments.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
