"""What a security server records of an exchange attempt, and how it is encoded for the log.

A record is a JSON object with sorted keys and no spaces (the same record always gives the same
bytes, hence the same leaf). The citizen concerned is never written as such: the record holds a
keyed pseudonym (HMAC-SHA-256 under the federation's pseudonym key), which only a holder of that
key can link back to the citizen.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, fields
from typing import Any

from proto import subject_pseudonym

# What a record stands for.
REQUEST = "request"  # allowed, written before the call goes to the backend
OUTCOME = "outcome"  # how an allowed exchange ended
REFUSAL = "refusal"  # refused, with its code
CERTIFICATE = "certificate"  # a seal's certificate chain, recorded once, before seals using it
BODY_KEY = "body_key"  # a run's wrapped data key, recorded once, before the bodies it seals
BODY = "body"  # one message of an exchange whose body the policy asks to keep, encrypted
KINDS = (REQUEST, OUTCOME, REFUSAL, CERTIFICATE, BODY_KEY, BODY)
# Written whatever their value; other fields only when set.
_ALWAYS = ("kind", "message_id", "role", "at", "method")


def pseudonym(key: bytes, subject: str) -> str:
    """The keyed pseudonym of ``subject`` ("" for no subject): see
    :func:`proto.subject_pseudonym`."""
    return subject_pseudonym(key, subject)


@dataclass(frozen=True, slots=True)
class ExchangeRecord:
    """One entry of a security server's audit log."""

    kind: str
    message_id: str
    role: str
    at: dt.datetime
    method: str
    client: str = ""
    client_server: str = ""
    provider: str = ""
    purpose: str = ""
    subject: str = ""  # the pseudonym, never the citizen's identifier
    code: str = ""
    reasons: tuple[str, ...] = ()
    decision_id: str = ""
    consent_id: str = ""
    status: str = ""
    duration_ms: float = 0.0
    # The serial number (hex) of the TLS certificate the peer security server presented.
    peer_certificate: str = ""
    # The seals (compact JWS, see audit._seal) of the request and of the response, as received
    # or made here, and the size of each direction's messages.
    request_seal: str = ""
    response_seal: str = ""
    request_bytes: int = 0
    response_bytes: int = 0
    # A certificate record: the chain's leaf thumbprint (x5t#S256) and the chain (base64 DER).
    thumbprint: str = ""
    chain: tuple[str, ...] = ()
    # Kept bodies (audit._body): the data key's id and, in its body_key record, the key
    # wrapped; in a body record the direction, the message's index and the sealed message.
    key_id: str = ""
    wrapped_key: str = ""
    direction: str = ""
    index: int = 0
    ciphertext: str = ""

    def encode(self) -> bytes:
        """The record's canonical bytes (what the Merkle leaf hashes)."""
        document: dict[str, Any] = {
            "kind": self.kind,
            "message_id": self.message_id,
            "role": self.role,
            "at": self.at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "method": self.method,
        }
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value:
                document[name] = list(value) if isinstance(value, tuple) else value
        if self.duration_ms:
            document["duration_ms"] = round(self.duration_ms, 3)
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    @staticmethod
    def decode(raw: bytes) -> ExchangeRecord:
        """A record :meth:`encode` wrote (ValueError: not one)."""
        document = json.loads(raw)
        if not isinstance(document, dict) or document.get("kind") not in KINDS:
            raise ValueError("not an exchange record")
        document["at"] = dt.datetime.fromisoformat(document["at"])
        document["reasons"] = tuple(document.get("reasons", ()))
        document["chain"] = tuple(document.get("chain", ()))
        return ExchangeRecord(**document)


# Fields written only when set, in no particular order (the encoding sorts keys).
_OPTIONAL = tuple(
    field.name for field in fields(ExchangeRecord) if field.name not in (*_ALWAYS, "duration_ms")
)
