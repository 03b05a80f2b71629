"""Moving one exchange's raw messages, metadata, deadline, cancellation and status across a hop.

Messages stay bytes: the gateway never deserializes a payload. Every call is relayed as
stream-stream, which carries all four RPC kinds unchanged (gRPC does not mark the kind on the wire).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
import grpc.aio

from gateway._errors import ErrorCode, GatewayError
from gateway._metadata import Metadata, pairs
from pki import CertificateKeeper

_OK = grpc.StatusCode.OK

# A hop-specific judgement of a failed outgoing call: a refusal of ours, or None to pass the
# status on as the far side sent it.
Classifier = Callable[[grpc.aio.AioRpcError], GatewayError | None]
# What of the far side's metadata the near side's caller may see.
Cleaner = Callable[[Iterable[tuple[str, str | bytes]]], Metadata]


class RequestStream:
    """The caller's request messages, checked against the size limit on their way out."""

    __slots__ = ("_limit", "_source", "oversized")

    def __init__(self, source: AsyncIterator[bytes], limit: int) -> None:
        self._source = source
        self._limit = limit
        self.oversized = 0

    async def messages(self) -> AsyncIterator[bytes]:
        """The checked messages, for the outgoing call."""
        async for message in self._source:
            if len(message) > self._limit:
                # Raising here makes gRPC cancel the outgoing call; `relay` reports the cause.
                self.oversized = len(message)
                raise GatewayError(ErrorCode.MESSAGE_TOO_LARGE, "request message too large")
            yield message


async def relay(
    call: grpc.aio.StreamStreamCall[bytes, bytes],
    requests: RequestStream,
    context: grpc.aio.ServicerContext[Any, Any],
    limit: int,
    trailers: Metadata,
    classify: Classifier,
    clean: Cleaner,
    *,
    extra_initial: Metadata = (),
    check_initial: Callable[[Metadata], None] | None = None,
) -> None:
    """Relay ``call``'s responses, metadata and status to ``context``.

    The outgoing call is cancelled whenever the relay stops early (the caller cancelled, a limit
    was hit, the gateway is stopping), so cancellation reaches the far side.

    Raises:
        GatewayError: a refusal the caller must see with a Pintu code.
    """
    try:
        initial = pairs(await call.initial_metadata())
        if check_initial is not None and not (call.done() and await call.code() != _OK):
            # Nothing from the far side reaches the caller before it passed this check; a
            # refusal without any answer passes through unchecked.
            check_initial(initial)
        if initial or extra_initial or not call.done():
            # Headers travel on their own as soon as the far side sends them: a caller may be
            # waiting for them before the first message. (A call that already ended sent no
            # headers of its own, only trailers.)
            await _deliver(context.send_initial_metadata(clean(initial) + extra_initial))
        async for message in call:
            if len(message) > limit:
                raise GatewayError(
                    ErrorCode.MESSAGE_TOO_LARGE,
                    f"response message of {len(message)} bytes exceeds the limit of {limit}",
                )
            await _deliver(context.write(message))
        context.set_trailing_metadata(clean(pairs(await call.trailing_metadata())) + trailers)
    except grpc.aio.AioRpcError as failure:
        refusal = classify(failure)
        if refusal is not None:
            raise refusal from None
        context.set_code(failure.code())
        context.set_details(failure.details() or "")
        context.set_trailing_metadata(clean(pairs(failure.trailing_metadata())) + trailers)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if requests.oversized and task is not None and not task.cancelling():
            raise GatewayError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"request message of {requests.oversized} bytes exceeds the limit of {limit}",
            ) from None
        raise
    finally:
        if not call.done():
            call.cancel()


class CallerGone(Exception):
    """The caller's call ended (cancelled, deadline passed, connection lost) while the relay was
    delivering to it: the end of the exchange, not a fault."""


async def _deliver(sending: Awaitable[None]) -> None:
    try:
        await sending
    except Exception as error:
        # gRPC fails a write to a call that has already ended with its internal
        # ExecuteBatchError; nothing else can fail here.
        raise CallerGone(str(error)) from error


def own_staple(keeper: CertificateKeeper) -> bytes:
    """This security server's OCSP response to staple, when it is fresh enough for peers.

    Raises:
        GatewayError: ``status_unavailable``: peers would refuse it, so the exchange stops here.
    """
    if keeper.staple and keeper.staple_age() < keeper.settings.ocsp_max_age.total_seconds():
        return keeper.staple
    raise GatewayError(
        ErrorCode.STATUS_UNAVAILABLE,
        "this security server has no fresh OCSP response for its certificate; "
        "the CA's responder may be unreachable",
    )
