"""Choosing listening ports for processes that are configured before they start."""

from __future__ import annotations

import random
import socket
from collections import deque
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Ports handed out by this process lately: a port chosen but not yet bound must not be chosen
# again for another listener.
_HANDED_OUT: deque[int] = deque(maxlen=4096)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in _RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now, outside the kernel's ephemeral range.

    The caller binds it a moment later; picking outside the ephemeral range keeps outgoing
    connections, which take their source ports from that range, from claiming it meanwhile, and
    a port is not handed out twice in a row by this process.
    """
    low, high = _ephemeral_range()
    candidates = [*range(10000, min(low, 65536)), *range(high + 1, 65536)]
    chooser = random.SystemRandom()
    for _ in range(200):
        port: int = chooser.choice(candidates)
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            _HANDED_OUT.append(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        chosen: int = probe.getsockname()[1]
        return chosen
