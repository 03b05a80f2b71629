"""Property tests of the identifier parser (hypothesis): parse to itself, or refuse cleanly.

The seeded fuzz test in ``test_identifiers.py`` covers the same property without hypothesis.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto import (
    IdentifierError,
    MemberId,
    SecurityServerId,
    ServiceId,
    SubsystemId,
    parse_identity_uri,
)
from tests.proto.test_identifiers import ALL_PARSERS, assert_safe_message

# No example database: a failure is reported with its example, and runs do not share state.
fast = settings(database=None, deadline=None, max_examples=300)

# Any Unicode text, lone surrogates included.
any_text = st.text(st.characters(exclude_categories=()), max_size=400)

# Slash-separated parts of characters near the safe set: reaches every branch of the parser.
near_part = st.text(
    st.sampled_from("Aa0._-/:@%\\ \t\n\x00\u0410\uff11\u200b\u202e"), min_size=0, max_size=70
)
near_identifier = st.builds(
    lambda prefix, parts: prefix + "/".join(parts),
    st.sampled_from(["", "/", "urn:pintu:member:", "urn:pintu:subsystem:", "urn:pintu:server:"]),
    st.lists(near_part, min_size=1, max_size=6),
)

_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_ALNUM_CHAR = st.sampled_from(_ALNUM)
safe_part = _ALNUM_CHAR | st.builds(
    lambda first, middle, last: first + middle + last,
    _ALNUM_CHAR,
    st.text(st.sampled_from(_ALNUM + "._-"), max_size=62),
    _ALNUM_CHAR,
)
service_name = st.lists(
    st.builds(
        lambda first, rest: first + rest,
        st.sampled_from(_ALNUM[:52] + "_"),
        st.text(st.sampled_from(_ALNUM + "_"), max_size=20),
    ),
    min_size=2,
    max_size=5,
).map(".".join)


def _check(name: str, text: str) -> None:
    try:
        value = ALL_PARSERS[name](text)
    except IdentifierError as error:
        assert_safe_message(error)
        return
    canonical = value.uri if name == "identity_uri" else str(value)  # type: ignore[attr-defined]
    assert canonical == text


@pytest.mark.parametrize("name", list(ALL_PARSERS))
@fast
@given(text=any_text)
def test_any_text_parses_to_itself_or_raises_identifier_error(name: str, text: str) -> None:
    _check(name, text)


@pytest.mark.parametrize("name", list(ALL_PARSERS))
@fast
@given(text=near_identifier)
def test_near_identifiers_parse_to_themselves_or_raise_identifier_error(
    name: str, text: str
) -> None:
    _check(name, text)


@fast
@given(instance=safe_part, member_class=safe_part, code=safe_part, sub=safe_part, svc=service_name)
def test_every_grammatical_identifier_is_accepted_and_round_trips(
    instance: str, member_class: str, code: str, sub: str, svc: str
) -> None:
    member = f"{instance}/{member_class}/{code}"
    assert str(MemberId.parse(member)) == member
    assert str(SubsystemId.parse(f"{member}/{sub}")) == f"{member}/{sub}"
    assert str(SecurityServerId.parse(f"{member}/{sub}")) == f"{member}/{sub}"
    service = ServiceId.parse(f"{member}/{sub}/{svc}")
    assert str(service) == f"{member}/{sub}/{svc}"
    assert ServiceId.from_proto(service.to_proto()) == service
    assert parse_identity_uri(service.provider.uri) == service.provider
