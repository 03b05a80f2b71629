"""Moving one exchange's raw messages, metadata, deadline, cancellation and status across a hop.

Messages stay bytes: the gateway never deserializes a payload. Every call is relayed as
stream-stream, which carries all four RPC kinds unchanged (gRPC does not mark the kind on the wire).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
import grpc.aio

from audit import Digest
from gateway._errors import ErrorCode, GatewayError
from gateway._metadata import Metadata, pairs
from pki import CertificateKeeper

_OK = grpc.StatusCode.OK

# A hop-specific judgement of a failed outgoing call: a refusal of ours, or None to pass the
# status on as the far side sent it.
Classifier = Callable[[grpc.aio.AioRpcError], GatewayError | None]
# What of the far side's metadata the near side's caller may see.
Cleaner = Callable[[Iterable[tuple[str, str | bytes]]], Metadata]


# Called when the far side answered (OK or its own status): the status name, the far side's
# trailers and the digest of its responses in, extra trailers for the caller out (e.g. a seal).
# It may refuse the answer.
Finisher = Callable[[str, Metadata, Digest], Awaitable[Metadata]]
# Called for the marked last message (a seal) and, with None, at the end of the messages.
SealReader = Callable[[bytes | None, Digest], None]


class RequestPump:
    """Moves the caller's request messages to the outgoing call, checking each against the size
    limit and adding it to the request's running digest.

    * ``seal``: called at the end of the messages with the digest; what it returns is written
      last (the consumer's sealed statement), before the call's end of requests;
    * ``observe``: sees every request message (a kept body);
    * ``marker`` and ``read_seal``: a message that starts with ``marker`` is the sender's seal,
      handed to ``read_seal`` and not passed on; ``read_seal(None, ...)`` at the end lets it
      insist on one. The far side sees the end of the requests only after ``read_seal``
      accepted it.

    A refusal (``failure``) cancels the outgoing call; :func:`relay` reports it.
    """

    __slots__ = (
        "_limit",
        "_marker",
        "_observe",
        "_read_seal",
        "_seal",
        "_source",
        "_task",
        "digest",
        "failure",
    )

    def __init__(
        self,
        source: AsyncIterator[bytes],
        limit: int,
        *,
        seal: Callable[[Digest], bytes] | None = None,
        marker: bytes = b"",
        read_seal: SealReader | None = None,
        observe: Callable[[bytes], None] | None = None,
    ) -> None:
        self._source = source
        self._observe = observe
        self._limit = limit
        self._seal = seal
        self._marker = marker
        self._read_seal = read_seal
        self.digest = Digest()
        self.failure: GatewayError | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, call: grpc.aio.StreamStreamCall[bytes, bytes]) -> None:
        """Pump every request message into ``call``, in a task beside :func:`relay`."""
        self._task = asyncio.create_task(self._run(call), name="request pump")

    def stop(self) -> None:
        """Stop pumping (the exchange is over)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def finished(self, seconds: float) -> None:
        """Wait until every request message was read, at most ``seconds``.

        Raises:
            GatewayError: the pump's refusal, or ``signature_missing`` when the requests did not
                end in time (the caller never closed its side).
        """
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), seconds)
        except TimeoutError:
            raise GatewayError(
                ErrorCode.SIGNATURE_MISSING,
                f"the request did not end (with its seal) within {seconds:g} s of the answer",
            ) from None
        if self.failure is not None:
            raise self.failure

    async def _run(self, call: grpc.aio.StreamStreamCall[bytes, bytes]) -> None:
        try:
            await self._pump(call)
        except GatewayError as error:
            self.failure = error
            call.cancel()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a seal check that failed unexpectedly: fail closed
            self.failure = GatewayError(
                ErrorCode.SIGNATURE_INVALID, f"the request could not be checked: {error!r}"[:300]
            )
            call.cancel()

    async def _pump(self, call: grpc.aio.StreamStreamCall[bytes, bytes]) -> None:
        marker, sealed, open_ = self._marker, False, True
        async for message in self._source:
            if marker and message.startswith(marker):
                if sealed:
                    raise GatewayError(ErrorCode.SIGNATURE_INVALID, "the request is sealed twice")
                if self._read_seal is not None:
                    self._read_seal(message[len(marker) :], self.digest)
                sealed = True
                continue
            if sealed:
                raise GatewayError(ErrorCode.SIGNATURE_INVALID, "a request message after its seal")
            if len(message) > self._limit:
                raise GatewayError(
                    ErrorCode.MESSAGE_TOO_LARGE,
                    f"request message of {len(message)} bytes exceeds the limit of {self._limit}",
                )
            self.digest.update(message)
            if self._observe is not None:
                self._observe(message)
            # Once the far side has ended the call, the rest is only read (for its seal).
            open_ = open_ and await _write(call, message)
        if self._read_seal is not None and not sealed:
            self._read_seal(None, self.digest)
        if self._seal is not None:
            open_ = open_ and await _write(call, self._seal(self.digest))
        if open_ and not call.done():
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                await call.done_writing()


async def _write(call: grpc.aio.StreamStreamCall[bytes, bytes], message: bytes) -> bool:
    """Write one message; False when the call has ended."""
    if call.done():
        return False
    try:
        await call.write(message)
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
        return False
    return True


async def relay(
    call: grpc.aio.StreamStreamCall[bytes, bytes],
    requests: RequestPump,
    context: grpc.aio.ServicerContext[Any, Any],
    limit: int,
    trailers: Metadata,
    classify: Classifier,
    clean: Cleaner,
    *,
    extra_initial: Metadata = (),
    check_initial: Callable[[Metadata], None] | None = None,
    finish: Finisher | None = None,
    observe: Callable[[bytes], None] | None = None,
) -> Digest:
    """Relay ``call``'s responses, metadata and status to ``context`` while ``requests`` pumps
    the caller's messages into it; the digest of the responses relayed.

    The outgoing call is cancelled whenever the relay stops early (the caller cancelled, a limit
    was hit, the gateway is stopping), so cancellation reaches the far side. ``finish`` sees the
    far side's answer before the caller does; ``observe`` sees every response message.

    Raises:
        GatewayError: a refusal the caller must see with a Pintu code.
    """
    digest = Digest()
    requests.start(call)
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
            digest.update(message)
            if observe is not None:
                observe(message)
            await _deliver(context.write(message))
        far = pairs(await call.trailing_metadata())
        own = await finish(_OK.name, far, digest) if finish is not None else ()
        context.set_trailing_metadata(clean(far) + trailers + own)
    except grpc.aio.AioRpcError as failure:
        if requests.failure is not None:
            raise requests.failure from None
        refusal = classify(failure)
        if refusal is not None:
            raise refusal from None
        far = pairs(failure.trailing_metadata())
        own = await finish(failure.code().name, far, digest) if finish is not None else ()
        context.set_code(failure.code())
        context.set_details(failure.details() or "")
        context.set_trailing_metadata(clean(far) + trailers + own)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if requests.failure is not None and task is not None and not task.cancelling():
            raise requests.failure from None
        raise
    finally:
        if not call.done():
            call.cancel()
        requests.stop()
    return digest


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
