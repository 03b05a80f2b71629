"""One exchange's seals and records, at either security server (see audit._seal for what a seal
states, and gateway._audit for the records).

Consumer side: the request messages are digested as they go out and the request is sealed when
the caller's messages end (the seal is the last message on the peer hop, marked by the random
``seal_marker`` of the exchange header). The provider's answer must carry its seal
(``pintu-seal-bin`` trailer) over the response and the request statement's hash; the answer is
recorded, durably, before the caller sees its status.

Provider side: the request's seal is checked against the header and the digest of what arrived
before the backend sees the end of the request; the answer is sealed and recorded, durably,
before it is returned.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from audit import (
    Digest,
    SealInvalid,
    SealParts,
    request_statement,
    response_statement,
)
from gateway._audit import BodyLog, ExchangeAudit
from gateway._errors import ErrorCode, GatewayError
from gateway._metadata import SEAL_KEY, Metadata
from gateway._relay import RequestPump
from proto import MemberId, SecurityServerId, SubsystemId
from proto.pintu.v1 import exchange_pb2

# How long the provider waits, after the backend answered, for the rest of the request and its
# seal (a caller that never closes its side of a stream the backend ended).
SEAL_GRACE_SECONDS = 5.0
MARKER_BYTES = 16
CONSUMER = "consumer"
PROVIDER = "provider"


def new_marker() -> bytes:
    """A fresh seal marker for an exchange header."""
    return os.urandom(MARKER_BYTES)


def _statement(audit: ExchangeAudit, header: exchange_pb2.ExchangeHeader, digest: Digest) -> bytes:
    return request_statement(
        message_id=header.message_id,
        client=str(SubsystemId.from_proto(header.client)),
        consumer_server=str(SecurityServerId.from_proto(header.consumer_server)),
        provider=str(SubsystemId.from_proto(header.provider)),
        method=header.method,
        purpose=header.purpose,
        subject=audit.pseudonym(header.subject),
        created_ns=header.created_at.ToNanoseconds(),
        digest=digest,
        user=header.user,
        issue=header.issue,
    )


class _Seals:
    """What one side knows of an exchange's seals."""

    def __init__(
        self,
        audit: ExchangeAudit,
        role: str,
        header: exchange_pb2.ExchangeHeader,
        clock: Callable[[], float],
    ) -> None:
        self.audit = audit
        self.role = role
        self.header = header
        self.clock = clock
        self.started = clock()
        self.request: SealParts | None = None
        self.request_valid = False
        self.response: SealParts | None = None
        self.response_valid = False
        # Whether the answer was recorded (else the exchange's end is, when it is refused).
        self.answered = False
        # The exchange's kept bodies, when the policy asks to keep them.
        self.bodies: BodyLog | None = None
        # The serial (hex) of the other security server's certificate (at the consumer: the
        # one the provider's OCSP staple is about).
        self.peer_certificate = ""

    def tokens(self) -> dict[str, str]:
        """The seals seen so far, as the record holds them."""
        return {
            "request_seal": self.request.token if self.request else "",
            "response_seal": self.response.token if self.response else "",
        }

    def valid_chains(self) -> list[tuple[bytes, ...]]:
        """The certificate chains of the seals that verified."""
        return [
            parts.chain
            for parts, valid in (
                (self.request, self.request_valid),
                (self.response, self.response_valid),
            )
            if parts is not None and valid
        ]

    async def record_answer(self, status: str, request: Digest, response: Digest) -> None:
        """The answer's outcome record, durably (``audit_unavailable``; also when a kept body
        of the exchange could not be written: its records ride with this one or before)."""
        self._check_bodies()
        await self.audit.answer(
            role=self.role,
            message_id=self.header.message_id,
            method=self.header.method,
            status=status,
            duration=self.clock() - self.started,
            request_bytes=request.size,
            response_bytes=response.size,
            chains=self.valid_chains(),
            request_seal=self.request.token if self.request else "",
            response_seal=self.response.token if self.response else "",
            reasons=("body_truncated",)
            if self.bodies is not None and self.bodies.truncated
            else (),
            peer_certificate=self.peer_certificate,
        )
        self.answered = True
        self._check_bodies()

    def _check_bodies(self) -> None:
        if self.bodies is not None and self.bodies.failed:
            raise GatewayError(
                ErrorCode.AUDIT_UNAVAILABLE,
                "the exchange's body could not be kept in the audit log; the answer is withheld",
            )

    def record_end(self, status: str) -> None:
        """The outcome of an exchange refused midway (in the background)."""
        if self.answered:
            return
        self.audit.outcome(
            role=self.role,
            message_id=self.header.message_id,
            method=self.header.method,
            status=status,
            duration=self.clock() - self.started,
            chains=self.valid_chains(),
            **self.tokens(),
        )


class ConsumerSeals(_Seals):
    """The consumer side of one sealed exchange."""

    def __init__(
        self,
        audit: ExchangeAudit,
        header: exchange_pb2.ExchangeHeader,
        provider: MemberId,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(audit, CONSUMER, header, clock)
        self._provider = provider
        self.statement = b""

    def seal_request(self, digest: Digest) -> bytes:
        """The last message on the peer hop: the marker and the request's seal."""
        self.statement = _statement(self.audit, self.header, digest)
        self.request = self.audit.sealer.seal(self.statement)
        self.request_valid = True
        return self.header.seal_marker + self.request.encode()

    async def finish(
        self, status: str, trailers: Metadata, response: Digest, pump: RequestPump
    ) -> None:
        """Check the provider's answer and record it (before the caller sees it).

        Raises:
            GatewayError: ``signature_missing``, ``signature_invalid``, ``audit_unavailable``.
        """
        raw = next((value for key, value in trailers if key == SEAL_KEY), None)
        try:
            if not isinstance(raw, bytes) or not raw:
                raise GatewayError(
                    ErrorCode.SIGNATURE_MISSING,
                    "the provider's security server did not seal its answer",
                )
            self.response = SealParts.decode(raw)
            expected = response_statement(
                request=self.statement,
                message_id=self.header.message_id,
                status=status,
                digest=response,
            )
            self.audit.verifier.verify(
                self.response, statement=expected, signer=self._provider, now=self.audit.now()
            )
        except SealInvalid as error:
            raise GatewayError(
                ErrorCode.SIGNATURE_INVALID, f"the provider's seal on its answer: {error}"
            ) from None
        self.response_valid = True
        await self.record_answer(status, pump.digest, response)


class ProviderSeals(_Seals):
    """The provider side of one sealed exchange."""

    def __init__(
        self,
        audit: ExchangeAudit,
        header: exchange_pb2.ExchangeHeader,
        client: MemberId,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(audit, PROVIDER, header, clock)
        self._client = client
        self.statement = b""

    def read_request_seal(self, raw: bytes | None, digest: Digest) -> None:
        """Check the consumer's seal on the request (``None``: the request ended without one).

        Raises:
            GatewayError: ``signature_missing``, ``signature_invalid``.
        """
        if raw is None:
            raise GatewayError(
                ErrorCode.SIGNATURE_MISSING, "the request ended without the consumer's seal"
            )
        statement = _statement(self.audit, self.header, digest)
        try:
            self.request = SealParts.decode(raw)
            self.audit.verifier.verify(
                self.request, statement=statement, signer=self._client, now=self.audit.now()
            )
        except (SealInvalid, ValueError) as error:
            raise GatewayError(
                ErrorCode.SIGNATURE_INVALID, f"the consumer's seal on the request: {error}"
            ) from None
        self.request_valid = True
        self.statement = statement

    async def finish(
        self, status: str, response: Digest, pump: RequestPump, remaining: float | None
    ) -> Metadata:
        """Wait for the request's seal, seal the answer and record it; the trailer to add.

        Raises:
            GatewayError: the request's seal is missing or invalid, ``audit_unavailable``.
        """
        grace = SEAL_GRACE_SECONDS if remaining is None else min(remaining, SEAL_GRACE_SECONDS)
        await pump.finished(max(grace, 0.0))
        if not self.request_valid:
            raise GatewayError(
                ErrorCode.SIGNATURE_MISSING, "the request ended without the consumer's seal"
            )
        self.response = self.audit.sealer.seal(
            response_statement(
                request=self.statement,
                message_id=self.header.message_id,
                status=status,
                digest=response,
            )
        )
        self.response_valid = True
        await self.record_answer(status, pump.digest, response)
        return ((SEAL_KEY, self.response.encode()),)
