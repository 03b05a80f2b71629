"""Choosing listening ports for processes that are configured before they start."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in _RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now, outside the kernel's ephemeral range.

    The caller binds it a moment later; picking outside the ephemeral range keeps outgoing
    connections, which take their source ports from that range, from claiming it meanwhile.
    """
    low, high = _ephemeral_range()
    candidates = [*range(10000, min(low, 65536)), *range(high + 1, 65536)]
    chooser = random.SystemRandom()
    for _ in range(200):
        port: int = chooser.choice(candidates)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        chosen: int = probe.getsockname()[1]
        return chosen
