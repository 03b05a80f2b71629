"""A consent's detail is checked when it is made and round-trips through JSON; it covers the
services it names or whose data categories it lists; its status follows from its history and
its validity; and next_status is the one table of allowed changes."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from consent import (
    AlreadyRevoked,
    Change,
    Consent,
    ConsentDetail,
    ConsentExpired,
    ConsentInvalid,
    ConsentStatus,
    PurposeNotServed,
    ServiceUnknown,
    StatusChange,
    TransitionRefused,
    ValidityInvalid,
    next_status,
)
from proto import ServiceId
from tests.consent.support import (
    CIVIL,
    DAY,
    EMR,
    HEALTH,
    INCOME,
    NOW,
    PERSONS,
    POPREG,
    RECORDS,
    SERVICES,
    STATISTICS,
    SUBJECT,
    TAX,
    UNREGISTERED,
    WIB,
    configuration,
    detail,
)

SECOND = dt.timedelta(seconds=1)


def refused(error_class: type[ConsentInvalid], code: str, **changes: Any) -> str:
    """The message of the exact error ``detail(**changes)`` raises."""
    with pytest.raises(ConsentInvalid) as error:
        detail(**changes)
    assert type(error.value) is error_class
    assert error.value.code == code
    return str(error.value)


# --- a well-formed detail ------------------------------------------------------------------------


def test_a_well_formed_detail_keeps_its_fields() -> None:
    made = detail()
    assert made.subject == SUBJECT
    assert made.provider == POPREG
    assert made.consumer == EMR
    assert made.purpose == "healthcare"
    assert made.services == (PERSONS,)
    assert made.data_categories == ()
    assert made.provider_member == POPREG


def test_services_and_categories_are_deduplicated_and_sorted() -> None:
    made = detail(
        services=[STATISTICS, PERSONS, STATISTICS],
        data_categories=["medical", "address", "medical"],
    )
    assert made.services == (PERSONS, STATISTICS)
    assert made.data_categories == ("address", "medical")


def test_the_provider_member_of_a_subsystem_provider_is_its_member() -> None:
    assert detail(provider=CIVIL).provider_member == POPREG


# --- subject and purpose grammar -----------------------------------------------------------------


@pytest.mark.parametrize("subject", ["NIK:3174051234560001", "a", "x" * 128, "passport.ID_x-1"])
def test_subjects_of_the_grammar_are_accepted(subject: str) -> None:
    assert detail(subject=subject).subject == subject


@pytest.mark.parametrize(
    "subject",
    ["", "NIK 3174", ":NIK", "NIK:", "-NIK", "x" * 129, "NIK:\u0661", "NIK/1", None, 7],
    ids=["empty", "space", "colon-first", "colon-last", "dash-first", "129", "arabic-digit",
         "slash", "none", "number"],
)  # fmt: skip
def test_subjects_outside_the_grammar_are_refused(subject: object) -> None:
    message = refused(ConsentInvalid, "consent_invalid", subject=subject)
    assert "subject" in message


@pytest.mark.parametrize("purpose", ["healthcare", "a", "x" * 64, "tax.assessment_2026-v1"])
def test_purposes_of_the_grammar_are_accepted(purpose: str) -> None:
    assert detail(purpose=purpose).purpose == purpose


@pytest.mark.parametrize(
    "purpose",
    ["", "health care", "-health", "health.", "x" * 65, "health/care", "health:care", None],
    ids=["empty", "space", "dash-first", "dot-last", "65", "slash", "colon", "none"],
)
def test_purposes_outside_the_grammar_are_refused(purpose: object) -> None:
    message = refused(ConsentInvalid, "consent_invalid", purpose=purpose)
    assert "purpose" in message


@pytest.mark.parametrize("category", ["civil registry", "", "-x", "a/b"])
def test_data_categories_outside_the_grammar_are_refused(category: str) -> None:
    message = refused(
        ConsentInvalid, "consent_invalid", services=(), data_categories=("identity", category)
    )
    assert "data_categories" in message


# --- purpose text --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["x" * 500, "Perawatan di RSUD \u2014 d\u00fcrfen \u2615", "a\u00a0b", " padded "],
    ids=["500", "unicode", "nbsp", "padded"],
)
def test_purpose_texts_are_accepted(text: str) -> None:
    assert detail(purpose_text=text).purpose_text == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "required"),
        ("   ", "required"),
        ("\u00a0\t", "required"),
        (None, "required"),
        (5, "required"),
        ("x" * 501, "at most 500"),
        ("line one\nline two", "control"),
        ("tab\there", "control"),
        ("nul\x00", "control"),
        ("escape\x1b[31m", "control"),
        ("delete\x7f", "control"),
        ("c1 \x85 next line", "control"),
        ("c1 \x9f", "control"),
    ],
    ids=["empty", "blank", "whitespace", "none", "number", "501", "newline", "tab", "nul",
         "escape", "del", "nel", "c1-last"],
)  # fmt: skip
def test_bad_purpose_texts_are_refused(text: object, reason: str) -> None:
    message = refused(ConsentInvalid, "consent_invalid", purpose_text=text)
    assert message.startswith("purpose_text:")
    assert reason in message


# --- validity ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("valid_from", "valid_until"),
    [(NOW, NOW), (NOW, NOW - SECOND), (NOW + DAY, NOW)],
    ids=["equal", "one-second-before", "a-day-before"],
)
def test_a_validity_ending_before_it_starts_is_refused(
    valid_from: dt.datetime, valid_until: dt.datetime
) -> None:
    message = refused(
        ValidityInvalid,
        "consent_validity_invalid",
        valid_from=valid_from,
        valid_until=valid_until,
    )
    assert "valid_until" in message


def test_validity_is_compared_as_instants_whatever_the_time_zones() -> None:
    # 10:00 in Jakarta is 03:00 UTC: until 04:00 UTC comes after it, until 02:00 UTC does not.
    start = dt.datetime(2026, 11, 25, 10, tzinfo=WIB)
    assert detail(valid_from=start, valid_until=dt.datetime(2026, 11, 25, 4, tzinfo=dt.UTC))
    refused(
        ValidityInvalid,
        "consent_validity_invalid",
        valid_from=start,
        valid_until=dt.datetime(2026, 11, 25, 2, tzinfo=dt.UTC),
    )


@pytest.mark.parametrize(
    "naive",
    [
        {"valid_from": NOW.replace(tzinfo=None)},
        {"valid_until": (NOW + DAY).replace(tzinfo=None)},
        {"valid_from": NOW.replace(tzinfo=None), "valid_until": (NOW + DAY).replace(tzinfo=None)},
        # Naive and ending first: the missing zone is what is reported, not a TypeError.
        {"valid_from": NOW, "valid_until": (NOW - DAY).replace(tzinfo=None)},
    ],
    ids=["from", "until", "both", "until-earlier"],
)
def test_times_without_a_time_zone_are_refused(naive: dict[str, dt.datetime]) -> None:
    message = refused(ValidityInvalid, "consent_validity_invalid", **naive)
    assert "time zone" in message


# --- what the consent is about -------------------------------------------------------------------


def test_a_consent_names_services_or_data_categories() -> None:
    message = refused(ConsentInvalid, "consent_invalid", services=(), data_categories=())
    assert "services or data categories" in message


def test_categories_alone_are_enough() -> None:
    assert detail(services=(), data_categories=("identity",)).data_categories == ("identity",)


@pytest.mark.parametrize(
    ("provider", "service"),
    [(POPREG, INCOME), (CIVIL, RECORDS), (HEALTH, PERSONS), (TAX, PERSONS)],
    ids=["other-member", "sibling-subsystem", "other-subsystem", "member-of-another"],
)
def test_a_service_of_another_provider_is_refused(provider: object, service: ServiceId) -> None:
    message = refused(
        ConsentInvalid, "consent_invalid", provider=provider, services=(PERSONS, service)
    )
    assert str(service) in message


def test_a_member_provider_takes_services_of_all_its_subsystems() -> None:
    assert detail(provider=POPREG, services=(RECORDS, PERSONS)).services == (PERSONS, RECORDS)


def test_at_most_a_hundred_services_and_categories() -> None:
    services = tuple(ServiceId(CIVIL, f"pintu.popreg.v1.S{n}") for n in range(101))
    categories = tuple(f"c{n}" for n in range(101))
    assert len(detail(services=services[:100]).services) == 100
    assert len(detail(services=(), data_categories=categories[:100]).data_categories) == 100
    refused(ConsentInvalid, "consent_invalid", services=services)
    refused(ConsentInvalid, "consent_invalid", services=(), data_categories=categories)


# --- JSON ----------------------------------------------------------------------------------------


def test_to_json_is_plain_json_with_utc_times() -> None:
    made = detail(
        provider=CIVIL,
        services=(STATISTICS, PERSONS),
        data_categories=("identity",),
        valid_from=dt.datetime(2026, 11, 25, 10, 0, tzinfo=WIB),
        valid_until=dt.datetime(2026, 12, 25, 10, 0, 0, 250000, tzinfo=WIB),
    )
    document = made.to_json()
    assert json.loads(json.dumps(document)) == document
    assert document == {
        "subject": SUBJECT,
        "provider": "DEMO/GOV/POPREG/civilregistry",
        "consumer": "DEMO/GOV/HOSPITAL/emr",
        "services": [
            "DEMO/GOV/POPREG/civilregistry/pintu.popreg.v1.Persons",
            "DEMO/GOV/POPREG/civilregistry/pintu.popreg.v1.Statistics",
        ],
        "data_categories": ["identity"],
        "purpose": "healthcare",
        "purpose_text": "Treatment at the city hospital",
        "valid_from": "2026-11-25T03:00:00Z",
        "valid_until": "2026-12-25T03:00:00.250000Z",
    }


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"provider": CIVIL},
        {"services": (), "data_categories": ("medical", "identity")},
        {"services": (PERSONS, RECORDS), "data_categories": ("address",)},
        {"valid_from": NOW.astimezone(WIB), "valid_until": (NOW + DAY).astimezone(WIB)},
        {"valid_until": NOW + dt.timedelta(microseconds=1)},
        {"purpose_text": "Perawatan \u2014 \u00fc \u2615 \"quoted\" \\ back"},
    ],
    ids=["plain", "subsystem-provider", "categories", "both", "jakarta", "microsecond",
         "unicode"],
)  # fmt: skip
def test_from_json_reads_what_to_json_wrote(changes: dict[str, Any]) -> None:
    made = detail(**changes)
    again = ConsentDetail.from_json(json.loads(json.dumps(made.to_json())))
    assert again == made
    assert type(again.provider) is type(made.provider)
    assert again.valid_from.utcoffset() == dt.timedelta(0)
    assert again.to_json() == made.to_json()


def _document(**changes: object) -> dict[str, object]:
    document: dict[str, object] = detail().to_json()
    for key, value in changes.items():
        if value is _MISSING:
            del document[key]
        else:
            document[key] = value
    return document


_MISSING = object()


@pytest.mark.parametrize(
    ("document", "error_class"),
    [
        (None, ConsentInvalid),
        ([], ConsentInvalid),
        ("subject", ConsentInvalid),
        (_document(subject=_MISSING), ConsentInvalid),
        (_document(provider=_MISSING), ConsentInvalid),
        (_document(consumer=_MISSING), ConsentInvalid),
        (_document(purpose=_MISSING), ConsentInvalid),
        (_document(purpose_text=_MISSING), ConsentInvalid),
        (_document(valid_from=_MISSING), ConsentInvalid),
        (_document(valid_until=_MISSING), ConsentInvalid),
        (_document(services=_MISSING), ConsentInvalid),  # and no data categories
        (_document(services="DEMO/GOV/POPREG/civilregistry/pintu.popreg.v1.Persons"),
         ConsentInvalid),
        (_document(services=None), ConsentInvalid),
        (_document(data_categories="identity"), ConsentInvalid),
        (_document(services=[None]), ConsentInvalid),
        (_document(services=[7]), ConsentInvalid),
        (_document(services=["DEMO/GOV/POPREG/civilregistry"]), ConsentInvalid),
        (_document(services=["DEMO/GOV/TAX/taxes/pintu.tax.v1.Income"]), ConsentInvalid),
        (_document(data_categories=[1]), ConsentInvalid),
        (_document(data_categories=[["identity"]]), ConsentInvalid),
        (_document(subject="NIK 1"), ConsentInvalid),
        (_document(subject=17), ConsentInvalid),
        (_document(provider="DEMO/GOV"), ConsentInvalid),
        (_document(provider="DEMO/GOV/POPREG/civilregistry/x"), ConsentInvalid),
        (_document(provider=None), ConsentInvalid),
        (_document(consumer="DEMO/GOV/HOSPITAL"), ConsentInvalid),
        (_document(consumer=None), ConsentInvalid),
        (_document(purpose="health care"), ConsentInvalid),
        (_document(purpose_text="a\nb"), ConsentInvalid),
        (_document(valid_from="yesterday"), ConsentInvalid),
        (_document(valid_from="2026-13-01T00:00:00Z"), ConsentInvalid),
        (_document(valid_from=1764028800), ConsentInvalid),
        (_document(valid_from=None), ConsentInvalid),
        (_document(valid_from="2026-11-25T10:00:00"), ValidityInvalid),
        (_document(valid_until="2026-11-25"), ValidityInvalid),
        (_document(valid_until=_document()["valid_from"]), ValidityInvalid),
    ],
)  # fmt: skip
def test_from_json_refuses_what_is_not_a_detail(
    document: object, error_class: type[ConsentInvalid]
) -> None:
    with pytest.raises(ConsentInvalid) as error:
        ConsentDetail.from_json(document)
    assert type(error.value) is error_class
    assert error.value.code == error_class.code


def test_from_json_names_the_missing_field() -> None:
    with pytest.raises(ConsentInvalid, match=r"^purpose_text: required$"):
        ConsentDetail.from_json(_document(purpose_text=_MISSING))


# --- covers --------------------------------------------------------------------------------------


def test_a_consent_naming_services_covers_exactly_those() -> None:
    made = detail(services=(PERSONS,))
    assert made.covers(SERVICES[PERSONS])
    assert not made.covers(SERVICES[STATISTICS])  # same subsystem, not named
    assert not made.covers(SERVICES[RECORDS])
    assert not made.covers(SERVICES[INCOME])  # handles identity, but no category is named


def test_a_consent_by_data_category_covers_the_providers_services_handling_one() -> None:
    made = detail(services=(), data_categories=("identity",))
    assert made.covers(SERVICES[PERSONS])
    assert not made.covers(SERVICES[RECORDS])  # medical
    assert not made.covers(SERVICES[STATISTICS])  # statistics
    assert not made.covers(SERVICES[INCOME])  # identity too, but of another member


def test_a_member_provider_covers_every_subsystem_of_the_member() -> None:
    made = detail(provider=POPREG, services=(), data_categories=("identity", "medical"))
    assert made.covers(SERVICES[PERSONS])
    assert made.covers(SERVICES[RECORDS])
    assert not made.covers(SERVICES[STATISTICS])


def test_a_subsystem_provider_covers_only_that_subsystem() -> None:
    made = detail(provider=CIVIL, services=(), data_categories=("identity", "medical"))
    assert made.covers(SERVICES[PERSONS])
    assert not made.covers(SERVICES[RECORDS])  # medical, but of POPREG/health


def test_services_and_categories_together_cover_both() -> None:
    made = detail(provider=POPREG, services=(STATISTICS,), data_categories=("medical",))
    assert made.covers(SERVICES[STATISTICS])
    assert made.covers(SERVICES[RECORDS])
    assert not made.covers(SERVICES[PERSONS])


# --- check_against the registry ------------------------------------------------------------------


def test_a_consent_for_registered_services_serving_its_purpose_is_accepted() -> None:
    config = configuration()
    detail(services=(PERSONS,), purpose="healthcare").check_against(config)
    detail(services=(PERSONS,), purpose="taxation").check_against(config)
    detail(services=(), data_categories=("identity", "medical")).check_against(config)
    detail(provider=CIVIL, services=(), data_categories=("address",)).check_against(config)


def test_a_service_naming_no_purposes_serves_any() -> None:
    config = configuration()
    detail(services=(STATISTICS,), purpose="research").check_against(config)
    detail(services=(), data_categories=("statistics",), purpose="research").check_against(config)


def test_a_service_not_registered_is_unknown() -> None:
    with pytest.raises(ServiceUnknown) as error:
        detail(services=(PERSONS, UNREGISTERED)).check_against(configuration())
    assert error.value.code == "consent_service_unknown"
    assert str(UNREGISTERED) in str(error.value)


@pytest.mark.parametrize(
    ("provider", "categories"),
    [(POPREG, ("income",)), (CIVIL, ("medical",)), (TAX, ("medical",)), (POPREG, ("dna",))],
    ids=["other-members-category", "sibling-subsystems-category", "member-without", "nobody"],
)
def test_categories_no_service_of_the_provider_handles_are_unknown(
    provider: object, categories: tuple[str, ...]
) -> None:
    with pytest.raises(ServiceUnknown) as error:
        detail(provider=provider, services=(), data_categories=categories).check_against(
            configuration()
        )
    assert error.value.code == "consent_service_unknown"
    assert "data_categories" in str(error.value)


@pytest.mark.parametrize(
    "changes",
    [
        {"services": (PERSONS,), "purpose": "research"},
        {"services": (STATISTICS, PERSONS), "purpose": "research"},
        {"services": (), "data_categories": ("medical",), "purpose": "taxation"},
        # PERSONS serves taxation, RECORDS (medical) does not.
        {"services": (PERSONS,), "data_categories": ("medical",), "purpose": "taxation"},
    ],
    ids=["named", "named-among-open", "by-category", "one-of-several"],
)
def test_a_purpose_a_covered_service_does_not_serve_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(PurposeNotServed) as error:
        detail(**changes).check_against(configuration())
    assert error.value.code == "consent_purpose_not_served"
    assert changes["purpose"] in str(error.value)


# --- status --------------------------------------------------------------------------------------

VALID_FROM = NOW
VALID_UNTIL = NOW + 30 * DAY


def consent(*statuses: ConsentStatus) -> Consent:
    history = tuple(
        StatusChange(status, VALID_FROM + n * SECOND, "citizen")
        for n, status in enumerate(statuses)
    )
    return Consent(
        "c1", detail(valid_from=VALID_FROM, valid_until=VALID_UNTIL), history, len(statuses)
    )


ACTIVE = ConsentStatus.ACTIVE
PAUSED = ConsentStatus.PAUSED
REVOKED = ConsentStatus.REVOKED
EXPIRED = ConsentStatus.EXPIRED


def test_the_status_is_the_recorded_one_during_the_validity() -> None:
    assert consent(ACTIVE).recorded is ACTIVE
    assert consent(ACTIVE).status_at(VALID_FROM + DAY) is ACTIVE
    assert consent(ACTIVE, PAUSED).status_at(VALID_FROM + DAY) is PAUSED
    assert consent(ACTIVE, PAUSED, ACTIVE).status_at(VALID_UNTIL - SECOND) is ACTIVE
    assert consent(ACTIVE, REVOKED).status_at(VALID_FROM + DAY) is REVOKED


def test_from_valid_until_on_a_consent_is_expired_unless_revoked() -> None:
    for moment in (VALID_UNTIL, VALID_UNTIL + SECOND, VALID_UNTIL + 365 * DAY):
        assert consent(ACTIVE).status_at(moment) is EXPIRED
        assert consent(ACTIVE, PAUSED).status_at(moment) is EXPIRED
        assert consent(ACTIVE, EXPIRED).status_at(moment) is EXPIRED
        assert consent(ACTIVE, REVOKED).status_at(moment) is REVOKED
        assert consent(ACTIVE, PAUSED, REVOKED).status_at(moment) is REVOKED


def test_the_state_policies_see_is_none_before_valid_from() -> None:
    before = VALID_FROM - SECOND
    assert consent(ACTIVE).state_at(before) == "none"
    assert consent(ACTIVE, PAUSED).state_at(before) == "none"
    assert consent(ACTIVE, REVOKED).state_at(before) == "none"
    assert consent(ACTIVE).status_at(before) is ACTIVE  # the status itself is recorded


def test_the_state_policies_see_is_the_status_value_from_valid_from() -> None:
    assert consent(ACTIVE).state_at(VALID_FROM) == "active"
    assert consent(ACTIVE, PAUSED).state_at(VALID_FROM + DAY) == "paused"
    assert consent(ACTIVE, REVOKED).state_at(VALID_FROM + DAY) == "revoked"
    assert consent(ACTIVE).state_at(VALID_UNTIL) == "expired"
    assert consent(ACTIVE, PAUSED).state_at(VALID_UNTIL + DAY) == "expired"
    assert consent(ACTIVE, REVOKED).state_at(VALID_UNTIL + DAY) == "revoked"


def test_status_values_are_what_policies_see() -> None:
    assert {s.value for s in ConsentStatus} == {"active", "paused", "revoked", "expired"}


# --- next_status ---------------------------------------------------------------------------------

DURING = VALID_FROM + DAY
AFTER = VALID_UNTIL + SECOND


@pytest.mark.parametrize(
    ("history", "change", "now", "expected"),
    [
        ((ACTIVE,), Change.PAUSE, DURING, PAUSED),
        ((ACTIVE,), Change.REVOKE, DURING, REVOKED),
        ((ACTIVE, PAUSED), Change.RESUME, DURING, ACTIVE),
        ((ACTIVE, PAUSED), Change.REVOKE, DURING, REVOKED),
        ((ACTIVE, PAUSED, ACTIVE), Change.PAUSE, DURING, PAUSED),
        # Before the validity starts the consent can change already.
        ((ACTIVE,), Change.PAUSE, VALID_FROM - DAY, PAUSED),
        ((ACTIVE,), Change.REVOKE, VALID_FROM - DAY, REVOKED),
        # The last moment before valid_until.
        ((ACTIVE,), Change.REVOKE, VALID_UNTIL - SECOND, REVOKED),
    ],
    ids=["active-pause", "active-revoke", "paused-resume", "paused-revoke",
         "resumed-pause", "early-pause", "early-revoke", "last-moment-revoke"],
)  # fmt: skip
def test_allowed_changes(
    history: tuple[ConsentStatus, ...], change: Change, now: dt.datetime, expected: ConsentStatus
) -> None:
    assert next_status(consent(*history), change, now) is expected


@pytest.mark.parametrize(
    ("history", "change", "now", "error_class", "code"),
    [
        ((ACTIVE,), Change.RESUME, DURING, TransitionRefused, "consent_transition_invalid"),
        ((ACTIVE, PAUSED), Change.PAUSE, DURING, TransitionRefused, "consent_transition_invalid"),
        ((ACTIVE, PAUSED, ACTIVE), Change.RESUME, DURING, TransitionRefused,
         "consent_transition_invalid"),
        ((ACTIVE, REVOKED), Change.PAUSE, DURING, AlreadyRevoked, "consent_already_revoked"),
        ((ACTIVE, REVOKED), Change.RESUME, DURING, AlreadyRevoked, "consent_already_revoked"),
        ((ACTIVE, REVOKED), Change.REVOKE, DURING, AlreadyRevoked, "consent_already_revoked"),
        ((ACTIVE, PAUSED, REVOKED), Change.RESUME, DURING, AlreadyRevoked,
         "consent_already_revoked"),
        ((ACTIVE, REVOKED), Change.REVOKE, AFTER, AlreadyRevoked, "consent_already_revoked"),
        ((ACTIVE,), Change.PAUSE, AFTER, ConsentExpired, "consent_expired"),
        ((ACTIVE,), Change.RESUME, AFTER, ConsentExpired, "consent_expired"),
        ((ACTIVE,), Change.REVOKE, AFTER, ConsentExpired, "consent_expired"),
        ((ACTIVE,), Change.REVOKE, VALID_UNTIL, ConsentExpired, "consent_expired"),
        ((ACTIVE, PAUSED), Change.RESUME, AFTER, ConsentExpired, "consent_expired"),
        ((ACTIVE, PAUSED), Change.REVOKE, AFTER, ConsentExpired, "consent_expired"),
        # Recorded as expired: never changes again, whatever the clock says.
        ((ACTIVE, EXPIRED), Change.REVOKE, AFTER, ConsentExpired, "consent_expired"),
        ((ACTIVE, EXPIRED), Change.RESUME, DURING, ConsentExpired, "consent_expired"),
    ],
    ids=["active-resume", "paused-pause", "resumed-resume", "revoked-pause", "revoked-resume",
         "revoked-revoke", "paused-revoked-resume", "revoked-late-revoke", "expired-pause",
         "expired-resume", "expired-revoke", "at-valid-until-revoke", "expired-paused-resume",
         "expired-paused-revoke", "recorded-expired-revoke", "recorded-expired-resume"],
)  # fmt: skip
def test_refused_changes(
    history: tuple[ConsentStatus, ...],
    change: Change,
    now: dt.datetime,
    error_class: type[TransitionRefused],
    code: str,
) -> None:
    with pytest.raises(TransitionRefused) as error:
        next_status(consent(*history), change, now)
    assert type(error.value) is error_class
    assert error.value.code == code
    assert "c1" in str(error.value)
