"""The consent service's client for operators and the citizen portal (``pintu consent ...``).

Each call is one request over mutual TLS with the caller's certificate; a refusal raises the
:class:`ConsentError` of the code the service sent (``consent_not_found`` →
:class:`ConsentNotFound`, ...), an unreachable service :class:`ConsentUnavailable`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import TypeVar, cast

import grpc
import grpc.aio
from google.protobuf.message import Message

from consent._convert import (
    access_event_from_proto,
    access_event_to_proto,
    consent_from_proto,
    detail_to_proto,
    timestamp,
)
from consent._errors import ConsentError, ConsentUnavailable, ReceiptInvalid
from consent._model import AccessEvent, Change, Consent, ConsentDetail
from consent._service import STATUSES
from pki import CONSENT_TLS_NAME, TlsIdentity
from proto import ERROR_CODE_KEY
from proto.pintu.v1 import consent_pb2

# Every code the service sends, and the error it stands for.
_KNOWN: tuple[type[ConsentError], ...] = (*STATUSES, ReceiptInvalid)
_ERRORS: dict[str, type[ConsentError]] = {error.code: error for error in _KNOWN}
M = TypeVar("M", bound=Message)


class ConsentClient:
    """Calls the consent service at ``address`` as ``identity``; use ``async with``."""

    def __init__(self, address: str, identity: TlsIdentity, *, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._channel = grpc.aio.secure_channel(
            address,
            grpc.ssl_channel_credentials(
                root_certificates=identity.trust_anchors,
                private_key=identity.private_key,
                certificate_chain=identity.certificate_chain,
            ),
            options=[("grpc.ssl_target_name_override", CONSENT_TLS_NAME)],
        )

    async def __aenter__(self) -> ConsentClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection."""
        await self._channel.close(None)

    async def _call(self, method: str, request: Message, answer: type[M]) -> M:
        call = self._channel.unary_unary(
            f"/pintu.v1.Consents/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=answer.FromString,
        )
        try:
            result: M = await call(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            trailers = cast(Iterable[tuple[str, str | bytes]], error.trailing_metadata() or ())
            code = next((v for k, v in trailers if k == ERROR_CODE_KEY), None)
            raised = _ERRORS.get(str(code)) if code else None
            if raised is None:
                raise ConsentUnavailable(
                    f"consent service: {error.code().name}: {error.details()}"
                ) from None
            raise raised(error.details() or str(code)) from None
        return result

    async def grant(
        self, detail: ConsentDetail, *, request_id: str = "", actor: str = ""
    ) -> tuple[Consent, str]:
        """Grant ``detail``; the consent and its receipt."""
        answer = await self._call(
            "Grant",
            consent_pb2.GrantConsentRequest(
                detail=detail_to_proto(detail), request_id=request_id, actor=actor
            ),
            consent_pb2.Consent,
        )
        return consent_from_proto(answer), answer.receipt

    async def change(
        self,
        consent_id: str,
        change: Change,
        *,
        subject: str,
        request_id: str = "",
        actor: str = "",
        reason: str = "",
    ) -> Consent:
        """Pause, resume or revoke ``consent_id``, a consent of ``subject``."""
        method = {Change.PAUSE: "Pause", Change.RESUME: "Resume", Change.REVOKE: "Revoke"}
        answer = await self._call(
            method[change],
            consent_pb2.ChangeConsentRequest(
                consent_id=consent_id,
                subject=subject,
                request_id=request_id,
                actor=actor,
                reason=reason,
            ),
            consent_pb2.Consent,
        )
        return consent_from_proto(answer)

    async def get(self, consent_id: str, *, subject: str) -> tuple[Consent, str]:
        """The consent ``consent_id`` of ``subject`` and its receipt."""
        answer = await self._call(
            "Get",
            consent_pb2.GetConsentRequest(consent_id=consent_id, subject=subject),
            consent_pb2.Consent,
        )
        return consent_from_proto(answer), answer.receipt

    async def of_subject(self, subject: str) -> list[Consent]:
        """Every consent of ``subject``, oldest first."""
        answer = await self._call(
            "ListForSubject",
            consent_pb2.ListConsentsRequest(subject=subject),
            consent_pb2.ListConsentsResponse,
        )
        return [consent_from_proto(message) for message in answer.consents]

    async def check(
        self, subject: str, consumer: str, service: str, purpose: str
    ) -> tuple[str, str]:
        """(state, consent id) of one exchange (security servers only)."""
        answer = await self._call(
            "Check",
            consent_pb2.CheckConsentRequest(
                subject=subject, consumer=consumer, service=service, purpose=purpose
            ),
            consent_pb2.CheckConsentResponse,
        )
        return answer.state, answer.consent_id

    async def report_access(self, events: Sequence[AccessEvent]) -> tuple[int, int]:
        """Report access events a security server's audit log recorded (security servers only,
        their own log's events, at most 1,000); (recorded now, recorded already).

        Raises:
            AccessInvalid: too many events, or a malformed one (nothing is recorded).
            CallerNotAllowed: another log's event, or about another member's service (nothing
                is recorded); the caller is not a registered security server.
        """
        answer = await self._call(
            "ReportAccess",
            consent_pb2.ReportAccessRequest(events=[access_event_to_proto(e) for e in events]),
            consent_pb2.ReportAccessResponse,
        )
        return answer.accepted, answer.duplicates

    async def access_of(
        self,
        subject: str,
        *,
        actor: str = "",
        limit: int = 0,
        before: dt.datetime | None = None,
    ) -> list[AccessEvent]:
        """The exchanges about the citizen ``subject``, newest first (operators only): at most
        ``limit`` (0: 1,000), only those before ``before`` when paging.

        Raises:
            CallerNotAllowed: not an operator, or ``actor`` is another citizen.
            PseudonymKeyMissing: the service cannot find access histories.
        """
        answer = await self._call(
            "ListAccess",
            consent_pb2.ListAccessRequest(
                subject=subject,
                actor=actor,
                limit=limit,
                before=timestamp(before) if before is not None else None,
            ),
            consent_pb2.ListAccessResponse,
        )
        return [access_event_from_proto(message) for message in answer.events]
