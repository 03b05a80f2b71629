"""The benchmark's backend: ``bench.v1.Echo/Call`` returns its raw request bytes.

python -m bench.echo --listen 127.0.0.1:PORT [--ready-file FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

METHOD = "/bench.v1.Echo/Call"
SERVICE = "bench.v1.Echo"


async def _echo(request: bytes, context: Any) -> bytes:
    return request


def _write_ready(path: Path, port: int) -> None:
    path.write_text(json.dumps({"pid": os.getpid(), "ports": [port]}))


async def serve(address: str, ready_file: Path | None) -> None:
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", 256 * 1024 * 1024),
            ("grpc.max_send_message_length", 256 * 1024 * 1024),
        ]
    )
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Call": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers([handler])
    port = server.add_insecure_port(address)
    await server.start()
    if ready_file is not None:
        _write_ready(ready_file, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--ready-file", type=Path)
    options = parser.parse_args()
    asyncio.run(serve(options.listen, options.ready_file))


if __name__ == "__main__":
    main()
