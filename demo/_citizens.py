"""How the sample backends name citizens and decide whose data a call may have.

A citizen is named ``NIK:`` followed by the 16 digits of the Nomor Induk Kependudukan. Calls arrive
through the provider's security server, which passes on the exchange's verified ``pintu-subject``:
a backend hands out data only about that citizen, so a request naming someone else is refused.

Backends report refusals by raising :class:`Refusal`; its :meth:`Refusal.abort` is the one place
where one becomes a gRPC status.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from typing import Any, Final, NoReturn

import grpc
import grpc.aio

SUBJECT_KEY: Final = "pintu-subject"

_NIK = re.compile(r"NIK:[0-9]{16}")


class Refusal(Exception):
    """A request a backend will not answer, and the gRPC status that says why."""

    def __init__(self, status: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    async def abort(self, context: grpc.aio.ServicerContext[Any, Any]) -> NoReturn:
        """End the call with this refusal's status and message."""
        await context.abort(self.status, self.message)


def invalid(message: str) -> Refusal:
    """A refusal of malformed input."""
    return Refusal(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> Refusal:
    """A refusal because a record does not exist."""
    return Refusal(grpc.StatusCode.NOT_FOUND, message)


def check_citizen_id(field: str, value: str) -> str:
    """``value`` when it is ``NIK:`` and 16 digits.

    Raises:
        Refusal: INVALID_ARGUMENT naming ``field``.
    """
    if not value:
        raise invalid(f"{field}: required")
    if not _NIK.fullmatch(value):
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise invalid(f"{field}: {shown!r} is not 'NIK:' followed by 16 digits")
    return value


def exchange_subject(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The ``pintu-subject`` of the call, or ``""`` when the exchange names no citizen.

    Raises:
        Refusal: INVALID_ARGUMENT when the subject is given twice or is not a NIK.
    """
    values = [value for key, value in metadata or () if key == SUBJECT_KEY]
    if not values:
        return ""
    if len(values) > 1 or not isinstance(values[0], str):
        raise invalid(f"{SUBJECT_KEY}: expected one text value")
    return check_citizen_id(SUBJECT_KEY, values[0])


def citizen_in_question(
    field: str, requested: str, metadata: Iterable[tuple[str, str | bytes]] | None
) -> str:
    """The citizen a call is about: the request's ``field``, or the subject when it is empty.

    Raises:
        Refusal: INVALID_ARGUMENT for a missing or malformed id, PERMISSION_DENIED when the
            request names another citizen than the exchange's subject.
    """
    subject = exchange_subject(metadata)
    if not requested and subject:
        return subject
    citizen = check_citizen_id(field, requested)
    if subject and citizen != subject:
        raise Refusal(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{field}: {citizen} is not the citizen this exchange concerns ({SUBJECT_KEY} is "
            f"{subject})",
        )
    return citizen


def check_date(field: str, year: int, month: int, day: int) -> date:
    """The calendar date ``year``-``month``-``day``.

    Raises:
        Refusal: INVALID_ARGUMENT naming ``field`` when there is no such date.
    """
    try:
        return date(year, month, day)
    except ValueError:
        raise invalid(f"{field}: {year:04d}-{month:02d}-{day:02d} is not a calendar date") from None
