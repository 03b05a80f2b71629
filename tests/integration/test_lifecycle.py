"""Starting, supervising and stopping a security server."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket

import grpc
import pytest

import pki
from gateway import SettingsError, security_server
from tests.integration.testbed import C_CLIENT, TwoGateways, metadata, probe

pytestmark = pytest.mark.integration


async def test_an_address_in_use_is_refused_at_start(testbed: TwoGateways) -> None:
    # A second server with the same settings finds the first one's peer port taken: it must not
    # share it silently (the listeners themselves share their port between replicas).
    twin = security_server(testbed.consumer.settings)
    with pytest.raises(SettingsError) as refusal:
        await twin.start()
    assert refusal.value.setting == "peer.listen"
    assert "cannot listen on" in refusal.value.message


async def test_an_address_held_by_another_program_is_refused(testbed: TwoGateways) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        settings = testbed.consumer.settings
        moved = dataclasses.replace(settings, peer_address=f"127.0.0.1:{port}")
        with pytest.raises(SettingsError) as refusal:
            await security_server(moved).start()
    assert refusal.value.setting == "peer.listen"


async def test_a_listener_that_stops_serving_is_replaced_and_logged(
    testbed: TwoGateways, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="pintu.gateway")
    key, certificate = testbed.pki.client_identity(C_CLIENT)
    attacker = testbed.peer_channel(pki.TlsIdentity(key, certificate, testbed.pki.anchors))
    # grpcio's asyncio server dies on a method path that is not UTF-8.
    with pytest.raises(grpc.aio.AioRpcError):
        await attacker.unary_unary(b"/test.v1.Probe/\xff")(b"x", timeout=5)
    for _ in range(50):
        if testbed.provider.restarts:
            break
        await asyncio.sleep(0.05)
    assert testbed.provider.restarts == 1
    events = [r.pintu_event for r in caplog.records if hasattr(r, "pintu_event")]
    assert events == [
        {
            "event": "listener_restarted",
            "setting": "peer.listen",
            "port": testbed.provider.peer_port,
            "cause": "UnicodeDecodeError",
        }
    ]
    answer = await probe(testbed.agency_channel(), "Echo")(b"ok", metadata=metadata(), timeout=5)
    assert answer == b"ok"
