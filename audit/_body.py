"""Message bodies kept in the audit log, encrypted at rest (the policy's ``log_body``).

Each security server run draws a fresh data key (AES-256), wraps it with the server's key
encryption key (AES key wrap, RFC 3394) and records the wrapped key once (a ``body_key``
record) before the first body it encrypts. Each message is a ``body`` record: AES-256-GCM with
a random 96-bit nonce, bound (associated data) to the exchange, the direction, the message's
index and the data key's id, so a body cannot be moved to another exchange or place unnoticed.
The records sit in the Merkle tree like any other: tamper-evident, and readable only by a holder
of the key encryption key (``pintu audit bodies``).
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

KEY_BYTES = 32
_NONCE_BYTES = 12
REQUEST_BODY = "request"
RESPONSE_BODY = "response"


class BodyKeyError(ValueError):
    """A key encryption key or a wrapped data key that cannot be used."""

    code = "body_key_invalid"


class BodyUnreadable(ValueError):
    """A body that does not decrypt: another key, or changed."""

    code = "body_unreadable"


def _associated(message_id: str, direction: str, index: int, key_id: str) -> bytes:
    return f"pintu.audit.body|{message_id}|{direction}|{index}|{key_id}".encode()


def check_key(kek: bytes) -> bytes:
    """``kek`` if it is a usable key encryption key (BodyKeyError: not 32 bytes)."""
    if len(kek) != KEY_BYTES:
        raise BodyKeyError(f"a body key is {KEY_BYTES} random bytes, not {len(kek)}")
    return kek


class BodyKey:
    """One run's data key, wrapped with the key encryption key ``kek``."""

    def __init__(self, kek: bytes) -> None:
        data_key = AESGCM.generate_key(bit_length=256)
        self.key_id = os.urandom(8).hex()
        self.wrapped = base64.b64encode(aes_key_wrap(check_key(kek), data_key)).decode()
        self._aead = AESGCM(data_key)

    def encrypt(self, message_id: str, direction: str, index: int, body: bytes) -> str:
        """The sealed body (base64 of the nonce and the ciphertext with its tag)."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(
            nonce, body, _associated(message_id, direction, index, self.key_id)
        )
        return base64.b64encode(nonce + sealed).decode()


def decrypt_body(
    kek: bytes,
    wrapped: str,
    *,
    key_id: str,
    message_id: str,
    direction: str,
    index: int,
    ciphertext: str,
) -> bytes:
    """A body :meth:`BodyKey.encrypt` sealed, with the key encryption key.

    Raises:
        BodyKeyError: the wrapped key does not unwrap with ``kek``.
        BodyUnreadable: the body was changed, moved, or sealed under another key.
    """
    try:
        data_key = aes_key_unwrap(check_key(kek), base64.b64decode(wrapped))
    except (InvalidUnwrap, ValueError):
        raise BodyKeyError("the data key does not unwrap with this body key") from None
    try:
        raw = base64.b64decode(ciphertext, validate=True)
        return AESGCM(data_key).decrypt(
            raw[:_NONCE_BYTES],
            raw[_NONCE_BYTES:],
            _associated(message_id, direction, index, key_id),
        )
    except (InvalidTag, ValueError):
        raise BodyUnreadable(
            f"the {direction} body {index} of {message_id} does not decrypt: changed, moved or"
            " sealed under another key"
        ) from None
