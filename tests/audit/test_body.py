"""Kept bodies: AES-256-GCM under a data key wrapped with the server's body key, bound to the
exchange, direction, index and data key."""

from __future__ import annotations

import os

import pytest

from audit import BodyKey, BodyKeyError, BodyUnreadable, decrypt_body

KEK = os.urandom(32)
ID = "0123456789abcdef0123456789abcdef"


def sealed(key: BodyKey, body: bytes = b"the body") -> str:
    return key.encrypt(ID, "request", 3, body)


def test_a_body_decrypts_with_the_body_key_only() -> None:
    key = BodyKey(KEK)
    opened = decrypt_body(
        KEK,
        key.wrapped,
        key_id=key.key_id,
        message_id=ID,
        direction="request",
        index=3,
        ciphertext=sealed(key),
    )
    assert opened == b"the body"
    with pytest.raises(BodyKeyError):
        decrypt_body(
            os.urandom(32),
            key.wrapped,
            key_id=key.key_id,
            message_id=ID,
            direction="request",
            index=3,
            ciphertext=sealed(key),
        )


def test_the_same_body_seals_differently_each_time() -> None:
    key = BodyKey(KEK)
    assert sealed(key) != sealed(key)
    assert BodyKey(KEK).wrapped != key.wrapped  # a fresh data key per run


@pytest.mark.parametrize(
    "moved",
    [
        {"message_id": "f" * 32},
        {"direction": "response"},
        {"index": 4},
        {"key_id": "0" * 16},
    ],
)
def test_a_body_moved_to_another_place_does_not_decrypt(moved: dict[str, object]) -> None:
    key = BodyKey(KEK)
    place: dict[str, object] = {
        "key_id": key.key_id,
        "message_id": ID,
        "direction": "request",
        "index": 3,
    }
    with pytest.raises(BodyUnreadable):
        decrypt_body(KEK, key.wrapped, ciphertext=sealed(key), **{**place, **moved})  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_a_body_key_is_32_bytes(size: int) -> None:
    with pytest.raises(BodyKeyError, match="32 random bytes"):
        BodyKey(b"k" * size)
