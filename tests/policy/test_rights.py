"""Access rights: which apply to one exchange, and the rights file that holds them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from policy import AccessRights, Grant, PolicyError, Right, Window
from tests.policy.rego_support import CLIENT, SERVICE

OTHER_CLIENT = "DEMO/GOV/HEALTH/clinic"
OTHER_SERVICE = "popreg.v1.AddressRegistry"
SUBSYSTEM = f"subsystem:{CLIENT}"


def test_right_held_by_the_subsystem_applies() -> None:
    rights = AccessRights([Grant(SERVICE, SUBSYSTEM, ("GetPerson",))])

    assert rights.applicable(CLIENT, (), SERVICE) == (Right(SUBSYSTEM, ("GetPerson",)),)
    assert rights.applicable(OTHER_CLIENT, (), SERVICE) == ()


def test_right_held_by_a_global_group_applies_to_its_members() -> None:
    rights = AccessRights([Grant(SERVICE, "group:social-services", ("GetPerson",))])

    assert rights.applicable(CLIENT, ("health", "social-services"), SERVICE) == (
        Right("group:social-services", ("GetPerson",)),
    )
    assert rights.applicable(CLIENT, ("health",), SERVICE) == ()
    assert rights.applicable(CLIENT, (), SERVICE) == ()


def test_right_held_by_a_local_group_applies_to_its_members() -> None:
    rights = AccessRights(
        [Grant(SERVICE, "local:caseworkers", ("GetPerson",))],
        {"caseworkers": [CLIENT, "DEMO/GOV/WELFARE/other"]},
    )

    assert rights.applicable(CLIENT, (), SERVICE) == (Right("local:caseworkers", ("GetPerson",)),)
    assert rights.applicable(OTHER_CLIENT, (), SERVICE) == ()


def test_a_global_group_is_not_a_local_group_of_the_same_code() -> None:
    rights = AccessRights(
        [Grant(SERVICE, "group:caseworkers"), Grant(SERVICE, "local:auditors")],
        {"auditors": [OTHER_CLIENT]},
    )

    # CLIENT is in the global group "auditors" only, OTHER_CLIENT in the local one.
    assert rights.applicable(CLIENT, ("auditors",), SERVICE) == ()
    assert rights.applicable(OTHER_CLIENT, ("caseworkers",), SERVICE) == (
        Right("group:caseworkers"),
        Right("local:auditors"),
    )


def test_every_applicable_right_is_given_subsystem_then_groups_then_local() -> None:
    rights = AccessRights(
        [
            Grant(SERVICE, "local:b-team", ("ListPeople",)),
            Grant(SERVICE, "local:a-team", ("GetPerson",)),
            Grant(SERVICE, "group:welfare"),
            Grant(SERVICE, "group:health", ("GetPerson",)),
            Grant(SERVICE, SUBSYSTEM, ("GetPerson",)),
        ],
        {"b-team": [CLIENT], "a-team": [CLIENT]},
    )

    assert rights.applicable(CLIENT, ("welfare", "health"), SERVICE) == (
        Right(SUBSYSTEM, ("GetPerson",)),
        Right("group:health", ("GetPerson",)),
        Right("group:welfare", ()),
        Right("local:a-team", ("GetPerson",)),
        Right("local:b-team", ("ListPeople",)),
    )


def test_rights_are_per_service() -> None:
    rights = AccessRights(
        [
            Grant(OTHER_SERVICE, SUBSYSTEM, ("GetAddress",)),
            Grant(OTHER_SERVICE, "group:social-services"),
            Grant(SERVICE, SUBSYSTEM, ("GetPerson",)),
        ]
    )

    assert rights.applicable(CLIENT, ("social-services",), SERVICE) == (
        Right(SUBSYSTEM, ("GetPerson",)),
    )
    assert rights.applicable(CLIENT, ("social-services",), OTHER_SERVICE) == (
        Right(SUBSYSTEM, ("GetAddress",)),
        Right("group:social-services", ()),
    )
    assert rights.applicable(CLIENT, (), "popreg.v1.Unknown") == ()


def test_methods_of_several_grants_are_merged_and_sorted() -> None:
    rights = AccessRights(
        [
            Grant(SERVICE, SUBSYSTEM, ("ListPeople",)),
            Grant(SERVICE, SUBSYSTEM, ("GetPerson", "ListPeople")),
            Grant(SERVICE, SUBSYSTEM, ("CountPeople",)),
        ]
    )

    assert rights.applicable(CLIENT, (), SERVICE) == (
        Right(SUBSYSTEM, ("CountPeople", "GetPerson", "ListPeople")),
    )
    assert len(rights) == 1


@pytest.mark.parametrize("every_first", [True, False], ids=["every first", "every last"])
def test_a_grant_without_methods_covers_all_and_absorbs_method_lists(every_first: bool) -> None:
    grants = [Grant(SERVICE, SUBSYSTEM, ("GetPerson",)), Grant(SERVICE, SUBSYSTEM, ("ListPeople",))]
    every = Grant(SERVICE, SUBSYSTEM)
    grants = [every, *grants] if every_first else [grants[0], every, grants[1]]

    rights = AccessRights(grants)

    assert rights.applicable(CLIENT, (), SERVICE) == (Right(SUBSYSTEM, ()),)


def test_local_groups_of_a_client() -> None:
    rights = AccessRights([], {"b-team": [CLIENT], "a-team": [CLIENT, OTHER_CLIENT], "c": []})

    assert rights.local_groups_of(CLIENT) == ("a-team", "b-team")
    assert rights.local_groups_of(OTHER_CLIENT) == ("a-team",)
    assert rights.local_groups_of("DEMO/GOV/X/y") == ()


def test_a_right_is_given_once_however_often_a_member_is_listed() -> None:
    rights = AccessRights(
        [Grant(SERVICE, "local:caseworkers", ("GetPerson",))],
        {"caseworkers": [CLIENT, CLIENT]},
    )

    assert rights.applicable(CLIENT, (), SERVICE) == (Right("local:caseworkers", ("GetPerson",)),)


@pytest.mark.parametrize(
    "holder",
    ["user:someone", "group:", "subsystem", "", "Group:social-services", ":x", CLIENT],
)
def test_malformed_holder_is_refused(holder: str) -> None:
    with pytest.raises(PolicyError) as error:
        AccessRights([Grant(SERVICE, SUBSYSTEM), Grant(SERVICE, holder)])

    assert error.value.code == "policy_error"
    assert str(error.value) == (
        f"right for {SERVICE}: holder {holder!r} is not subsystem:NAME | group:NAME | local:NAME"
    )


def test_ten_thousand_grants_give_exactly_the_applicable_rights() -> None:
    # 100 members' subsystems, 20 global and 10 local groups, 50 services: 10,000 grants.
    services = [f"agency{n}.v1.Service{n}" for n in range(50)]
    subsystems = [f"DEMO/GOV/M{n}/app" for n in range(100)]
    groups = [f"g{n}" for n in range(20)]
    local_groups = {f"l{n}": subsystems[n::10] for n in range(10)}
    holders = [
        *(f"subsystem:{s}" for s in subsystems),
        *(f"group:{g}" for g in groups),
        *(f"local:{code}" for code in local_groups),
    ]
    grants = [
        Grant(services[n % 50], holders[(n * 7) % len(holders)], (f"M{n % 3}",) if n % 11 else ())
        for n in range(10_000)
    ]
    rights = AccessRights(grants, local_groups)

    def expected(client: str, client_groups: tuple[str, ...], service: str) -> set[Right]:
        mine = {f"subsystem:{client}", *(f"group:{g}" for g in client_groups)}
        mine |= {f"local:{code}" for code, members in local_groups.items() if client in members}
        merged: dict[str, set[str] | None] = {}
        for grant in grants:
            if grant.service == service and grant.holder in mine:
                known = merged.get(grant.holder, set())
                every = known is None or not grant.methods
                merged[grant.holder] = None if every else {*(known or ()), *grant.methods}
        return {Right(h, () if m is None else tuple(sorted(m))) for h, m in merged.items()}

    assert len(grants) == 10_000
    assert len(rights) == len({(g.service, g.holder) for g in grants})
    checked = 0
    for client in subsystems[::9]:
        for client_groups in [(), ("g3",), ("g0", "g7", "g19")]:
            for service in services[::7]:
                found = rights.applicable(client, client_groups, service)
                assert len(found) == len(set(found))
                assert set(found) == expected(client, client_groups, service)
                checked += len(found)
    # The sample did find rights of each kind, some for every method.
    assert checked > 100


# -- the rights file -----------------------------------------------------------------------------

DOCUMENTED = {
    "local_groups": {"caseworkers": [CLIENT]},
    "rights": [{"service": SERVICE, "holder": "local:caseworkers", "methods": ["GetPerson"]}],
}


def test_documented_rights_file_is_read() -> None:
    rights = AccessRights.from_json(DOCUMENTED)

    assert rights.applicable(CLIENT, (), SERVICE) == (Right("local:caseworkers", ("GetPerson",)),)


def test_rights_file_without_methods_or_groups() -> None:
    rights = AccessRights.from_json({"rights": [{"service": SERVICE, "holder": SUBSYSTEM}]})

    assert rights.applicable(CLIENT, (), SERVICE) == (Right(SUBSYSTEM, ()),)
    assert len(AccessRights.from_json({})) == 0


def test_rights_file_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "rights.json"
    path.write_text(json.dumps(DOCUMENTED), encoding="utf-8")

    rights = AccessRights.load(path)

    assert rights.applicable(CLIENT, (), SERVICE) == (Right("local:caseworkers", ("GetPerson",)),)


GOOD = {"service": SERVICE, "holder": SUBSYSTEM}
SHAPES = {
    "not an object": ([GOOD], "rights.json: expected an object"),
    "local_groups a list": (
        {"local_groups": [CLIENT]},
        "rights.json: local_groups must map codes to lists of subsystems",
    ),
    "local group not a list": (
        {"local_groups": {"caseworkers": CLIENT}},
        "rights.json: local_groups must map codes to lists of subsystems",
    ),
    "local group member not a string": (
        {"local_groups": {"caseworkers": [CLIENT, 7]}},
        "rights.json: local_groups must map codes to lists of subsystems",
    ),
    "rights an object": ({"rights": GOOD}, "rights.json: rights must be a list"),
    "right not an object": ({"rights": [GOOD, SUBSYSTEM]}, "rights.json: rights[1] needs"),
    "right without service": (
        {"rights": [GOOD, GOOD, {"holder": SUBSYSTEM}]},
        "rights.json: rights[2] needs",
    ),
    "right without holder": ({"rights": [{"service": SERVICE}]}, "rights.json: rights[0] needs"),
    "service not a string": (
        {"rights": [{"service": 1, "holder": SUBSYSTEM}]},
        "rights.json: rights[0] needs",
    ),
    "methods a string": (
        {"rights": [GOOD, {**GOOD, "methods": "GetPerson"}]},
        "rights.json: rights[1] needs",
    ),
    "methods not strings": ({"rights": [{**GOOD, "methods": [1]}]}, "rights.json: rights[0] needs"),
    "methods null": ({"rights": [{**GOOD, "methods": None}]}, "rights.json: rights[0] needs"),
}


@pytest.mark.parametrize(("document", "message"), SHAPES.values(), ids=SHAPES.keys())
def test_rights_file_of_the_wrong_shape_is_refused(document: Any, message: str) -> None:
    with pytest.raises(PolicyError) as error:
        AccessRights.from_json(document, "rights.json")

    assert error.value.code == "policy_error"
    assert str(error.value).startswith(message)


def test_malformed_holder_in_a_rights_file_names_its_position() -> None:
    document = {"rights": [GOOD, {"service": SERVICE, "holder": "user:someone"}]}

    with pytest.raises(PolicyError) as error:
        AccessRights.from_json(document, "rights.json")

    assert str(error.value).startswith("rights.json: rights[1]")
    assert "'user:someone'" in str(error.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "access rights {path}: [Errno 2] No such file or directory"),
        (b'{"rights": [', "access rights {path}: Expecting value"),
        (b"\xff\xfe{}", "access rights {path}: 'utf-8' codec can't decode"),
        (b'{"rights": {}}', "{path}: rights must be a list"),
    ],
    ids=["missing", "not JSON", "not UTF-8", "wrong shape"],
)
def test_rights_file_that_cannot_be_read_is_refused(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "rights.json"
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(PolicyError) as error:
        AccessRights.load(path)

    assert error.value.code == "policy_error"
    assert str(error.value).startswith(message.format(path=path))


# -- closed windows ------------------------------------------------------------------------------

WINDOW = {"service": SERVICE, "from": "2026-12-01T01:00:00Z", "until": "2026-12-01T03:00:00+01:00"}


def test_windows_are_read_per_service_earliest_first() -> None:
    later = {**WINDOW, "from": "2026-12-02T01:00:00Z", "until": "2026-12-02T02:00:00Z"}
    rights = AccessRights.from_json(
        {"windows": [later, {**WINDOW, "reason": "migration"}, {**later, "service": "x"}]}
    )
    first, second = rights.windows_for(SERVICE)
    assert first == Window(1_796_086_800 * 10**9, 1_796_090_400 * 10**9, "migration")
    assert second.reason == "maintenance"
    assert second.from_ns > first.from_ns
    assert rights.windows_for(OTHER_SERVICE) == ()
    assert rights.services == {SERVICE, "x"}


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({**WINDOW, "until": WINDOW["from"]}, "until must come after from"),
        ({**WINDOW, "from": "2026-12-01T01:00:00"}, "windows[0].from: a time zone is required"),
        ({**WINDOW, "until": "tomorrow"}, "windows[0].until: not an ISO 8601 time"),
        ({**WINDOW, "until": "9999-01-01T00:00:00Z"}, "between the years 1970 and 2261"),
        ({**WINDOW, "from": "1926-12-01T01:00:00Z"}, "between the years 1970 and 2261"),
        ({**WINDOW, "reason": "Not A Code"}, "windows[0].reason"),
        ({"service": SERVICE, "from": "2026-12-01T01:00:00Z"}, "needs service, from and until"),
        ("2026-12-01", "needs service, from and until"),
    ],
)
def test_a_malformed_window_is_refused(window: object, message: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(message)):
        AccessRights.from_json({"windows": [window]})


def test_windows_must_be_a_list_and_unknown_keys_are_refused() -> None:
    with pytest.raises(PolicyError, match="windows must be a list"):
        AccessRights.from_json({"windows": {}})
    with pytest.raises(PolicyError, match="unknown key 'grants'"):
        AccessRights.from_json({"grants": []})


def test_holds_any_says_whether_some_right_applies() -> None:
    rights = AccessRights([Grant(SERVICE, "group:welfare", ("GetPerson",))])
    assert rights.holds_any(CLIENT, ("welfare",), SERVICE)
    assert not rights.holds_any(CLIENT, (), SERVICE)
    assert not rights.holds_any(CLIENT, ("welfare",), OTHER_SERVICE)


def test_a_rights_file_nested_too_deep_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rights.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PolicyError, match="RecursionError"):
        AccessRights.load(path)
