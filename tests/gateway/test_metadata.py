"""Reading the pintu-* metadata an agency system sends (no network)."""

from __future__ import annotations

import pytest

from gateway import ErrorCode, GatewayError
from gateway._metadata import passthrough, read_agency_metadata
from proto import SubsystemId

GOOD = [
    ("pintu-client", "DEMO/GOV/A/client"),
    ("pintu-provider", "DEMO/GOV/B/provider"),
    ("pintu-purpose", "birth-support"),
]


def replaced(key: str, value: str | bytes) -> list[tuple[str, str | bytes]]:
    return [entry for entry in GOOD if entry[0] != key] + [(key, value)]


def test_reads_required_and_optional_values_and_keeps_other_metadata() -> None:
    request = read_agency_metadata(
        [
            *GOOD,
            ("pintu-subject", "NIK:3174051234560001"),
            ("pintu-user", "caseworker@welfare"),
            ("pintu-issue", "APP/2026/0001"),
            ("x-trace", "t1"),
            ("x-blob-bin", b"\x00"),
            ("user-agent", "grpc-python"),
            ("grpc-accept-encoding", "gzip"),
        ]
    )
    assert request.client == SubsystemId.parse("DEMO/GOV/A/client")
    assert request.provider == SubsystemId.parse("DEMO/GOV/B/provider")
    assert (request.purpose, request.subject, request.user, request.issue) == (
        "birth-support",
        "NIK:3174051234560001",
        "caseworker@welfare",
        "APP/2026/0001",
    )
    assert request.passthrough == (("x-trace", "t1"), ("x-blob-bin", b"\x00"))


def test_optional_values_default_to_empty() -> None:
    request = read_agency_metadata(GOOD)
    assert (request.subject, request.user, request.issue) == ("", "", "")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("pintu-client", "DEMO/GOV/\u0410/client"),  # Cyrillic A
        ("pintu-client", "DEMO/GOV/A/cli\u200bent"),  # zero-width space
        ("pintu-provider", "DEMO/GOV/B/provider\n"),
        ("pintu-provider", "DEMO/GOV/B/\x00"),
        ("pintu-purpose", "caf\u00e9"),
        ("pintu-subject", "NIK:\u0663\u0661"),  # Arabic-Indic digits
        ("pintu-user", "user\u202e"),  # right-to-left override
        ("pintu-issue", "issue\ttab"),
        ("pintu-client", b"DEMO/GOV/A/client"),  # bytes where text is expected
    ],
)
def test_refuses_look_alike_control_and_non_text_values(key: str, value: str | bytes) -> None:
    with pytest.raises(GatewayError) as refusal:
        read_agency_metadata(replaced(key, value))
    assert refusal.value.code is ErrorCode.METADATA_INVALID
    assert refusal.value.field == key
    assert refusal.value.message.isascii()
    assert refusal.value.message.isprintable()


def test_refusal_message_of_hostile_input_is_bounded() -> None:
    with pytest.raises(GatewayError) as refusal:
        read_agency_metadata(replaced("pintu-client", "\x1b[31m" * 5000))
    assert len(refusal.value.message) < 400


@pytest.mark.parametrize("key", ["pintu-client", "pintu-provider", "pintu-purpose"])
def test_missing_required_key(key: str) -> None:
    with pytest.raises(GatewayError) as refusal:
        read_agency_metadata([entry for entry in GOOD if entry[0] != key])
    assert refusal.value.code is ErrorCode.METADATA_MISSING
    assert refusal.value.field == key


def test_passthrough_drops_reserved_entries() -> None:
    entries = [("pintu-x", "1"), ("grpc-timeout", "1S"), ("user-agent", "u"), ("x-a", "b")]
    assert passthrough(entries) == (("x-a", "b"),)
