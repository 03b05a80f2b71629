"""Bodies the provider's policy asks to keep (``log_body``) are in its audit log, encrypted
under a wrapped data key, readable only with the security server's body key."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from audit import (
    BODY,
    BODY_KEY,
    BodyKeyError,
    BodyUnreadable,
    ExchangeRecord,
    read_bodies,
)
from tests.integration.support import assert_refusal, refused
from tests.integration.testbed import TwoGateways, metadata, probe

pytestmark = pytest.mark.integration

MakeTestbed = Callable[..., Awaitable[TwoGateways]]
SECRET = b"birth record of a child, kept secret"


def kinds(testbed: TwoGateways, side: str) -> list[ExchangeRecord]:
    audit = getattr(testbed, side).audit
    assert audit is not None
    return [ExchangeRecord.decode(audit.log.record(n)) for n in range(audit.log.size)]


def body_key(testbed: TwoGateways) -> bytes:
    settings = testbed.provider.settings.audit
    assert settings is not None
    assert settings.body_key is not None
    return settings.body_key


def pintu(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pintu", "audit", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def call(testbed: TwoGateways, method: str, kind: str, outgoing: Any) -> str:
    made = probe(testbed.agency_channel(), method, kind)(outgoing, metadata=metadata(), timeout=10)
    if kind in ("server", "bidi"):
        [message async for message in made]
    else:
        await made
    return str(dict(await made.trailing_metadata())["pintu-message-id"])


async def test_kept_bodies_are_encrypted_and_read_back_with_the_body_key(
    make_testbed: MakeTestbed, tmp_path: Path
) -> None:
    testbed = await make_testbed(audit=True)
    message_id = await call(testbed, "Echo", "unary", SECRET)
    provider = testbed.provider.audit
    assert provider is not None
    records = kinds(testbed, "provider")
    assert [r.kind for r in records if r.kind in (BODY, BODY_KEY)] == [BODY_KEY, BODY, BODY]
    assert not [r for r in kinds(testbed, "consumer") if r.kind in (BODY, BODY_KEY)]
    # Nothing of the body is in the file as such.
    for name in (provider.log.path, Path(f"{provider.log.path}-wal")):
        if name.exists():
            assert SECRET not in name.read_bytes()
            assert base64.b64encode(SECRET) not in name.read_bytes()

    assert read_bodies(provider.log.path, message_id, body_key(testbed)) == [
        ("request", 0, SECRET),
        ("response", 0, SECRET),
    ]
    with pytest.raises(BodyKeyError):
        read_bodies(provider.log.path, message_id, b"k" * 32)

    key_file = tmp_path / "body.key"
    key_file.write_bytes(body_key(testbed))
    out = tmp_path / "bodies"
    log = str(provider.log.path)
    listed = pintu(
        "bodies", message_id, "--log", log, "--body-key", str(key_file), "--out", str(out)
    )
    assert listed.returncode == 0, listed.stderr
    assert f"request 0: {len(SECRET)} bytes" in listed.stdout
    assert (out / "response-0.bin").read_bytes() == SECRET
    key_file.write_bytes(b"w" * 32)
    wrong = pintu("bodies", message_id, "--log", log, "--body-key", str(key_file))
    assert wrong.returncode == 1
    assert "body_key_invalid" in wrong.stderr


async def test_every_message_of_a_stream_is_kept_in_order(make_testbed: MakeTestbed) -> None:
    testbed = await make_testbed(audit=True)
    message_id = await call(testbed, "Bidi", "bidi", iter([b"one", b"two", b"three"]))
    provider = testbed.provider.audit
    assert provider is not None
    kept = read_bodies(provider.log.path, message_id, body_key(testbed))
    # Each direction in order; the two directions interleave as the messages passed.
    for direction in ("request", "response"):
        assert [(i, b) for d, i, b in kept if d == direction] == [
            (0, b"one"),
            (1, b"two"),
            (2, b"three"),
        ]


@pytest.mark.parametrize("change", ["ciphertext", "index", "message_id"])
async def test_a_changed_or_moved_body_does_not_decrypt(
    make_testbed: MakeTestbed, change: str
) -> None:
    testbed = await make_testbed(audit=True)
    message_id = await call(testbed, "Echo", "unary", SECRET)
    provider = testbed.provider.audit
    assert provider is not None
    db = sqlite3.connect(provider.log.path)
    seq, raw = next(
        (seq, bytes(raw))
        for seq, raw in db.execute("SELECT seq, body FROM records ORDER BY seq")
        if json.loads(raw)["kind"] == BODY
    )
    document = json.loads(raw)
    if change == "ciphertext":
        sealed = bytearray(base64.b64decode(document["ciphertext"]))
        sealed[-1] ^= 1
        document["ciphertext"] = base64.b64encode(bytes(sealed)).decode()
    elif change == "index":
        document["index"] = 5
    else:
        document["message_id"] = "f" * 32
        message_id = "f" * 32
    with db:
        db.execute(
            "UPDATE records SET body = ? WHERE seq = ?",
            (json.dumps(document, sort_keys=True, separators=(",", ":")).encode(), seq),
        )
    db.close()
    with pytest.raises(BodyUnreadable):
        read_bodies(provider.log.path, message_id, body_key(testbed))


async def test_a_server_without_a_body_key_refuses_what_its_policy_asks_to_keep(
    make_testbed: MakeTestbed,
) -> None:
    testbed = await make_testbed(audit=True, audit_body_key=False)
    error = await refused(probe(testbed.agency_channel(), "Echo")(SECRET, metadata=metadata()))
    detail = assert_refusal(
        error, grpc.StatusCode.PERMISSION_DENIED, "policy_error", "provider_gateway"
    )
    assert "body_key" in detail.message
    assert testbed.probe.calls == []
