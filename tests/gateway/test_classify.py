"""How the consumer side names failures on the way to the provider's security server."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest

from gateway import ErrorCode
from gateway._consumer import _classify


def failure(code: grpc.StatusCode, trailers=()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailers), "detail")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (grpc.StatusCode.UNAVAILABLE, ErrorCode.PROVIDER_UNAVAILABLE),
        (grpc.StatusCode.DEADLINE_EXCEEDED, ErrorCode.DEADLINE_EXCEEDED),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ErrorCode.MESSAGE_TOO_LARGE),
    ],
)
def test_failure_without_an_answer_from_the_provider_gateway_gets_a_code(
    status: grpc.StatusCode, expected: ErrorCode
) -> None:
    refusal = _classify(failure(status))
    assert refusal is not None
    assert refusal.code is expected


@pytest.mark.parametrize(
    "trailers",
    [(("pintu-message-id", "0" * 32),), (("pintu-error-code", "peer_unknown"),)],
)
def test_status_from_the_provider_gateway_stands(trailers) -> None:
    assert _classify(failure(grpc.StatusCode.UNAVAILABLE, trailers)) is None
    assert _classify(failure(grpc.StatusCode.DEADLINE_EXCEEDED, trailers)) is None


def test_other_statuses_pass_through() -> None:
    assert _classify(failure(grpc.StatusCode.INTERNAL)) is None
    assert _classify(failure(grpc.StatusCode.CANCELLED)) is None
