"""The global configuration document: round trip, look-ups and one test per invalid input."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from proto import MemberId, SecurityServerId, ServiceId, SubsystemId
from registry import (
    GlobalConfiguration,
    GlobalConfigurationInvalid,
    GlobalGroup,
    Member,
    RegistryError,
    SecurityServer,
    Service,
    parse_address,
)

POPREG = "DEMO/GOV/POPREG"
TAX = "DEMO/GOV/TAX"
BANK = "DEMO/COM/BANK"
CERT_A = hashlib.sha256(b"popreg ss1 certificate A").hexdigest()
CERT_B = hashlib.sha256(b"popreg ss1 certificate B").hexdigest()
CERT_C = hashlib.sha256(b"tax ss1 certificate").hexdigest()


def document() -> dict[str, Any]:
    """A valid document in the form ``to_json`` writes (sorted subsystems, certificates and group
    members, every field present)."""
    return {
        "version": 1,
        "instance": "DEMO",
        "members": [
            {
                "id": POPREG,
                "name": "Population Registry",
                "subsystems": ["civilregistry", "statistics"],
            },
            {"id": TAX, "name": "Tax Board", "subsystems": ["assessment"]},
            {"id": BANK, "name": "A Bank", "subsystems": []},
        ],
        "security_servers": [
            {
                "id": f"{POPREG}/ss1",
                "addresses": ["127.0.0.1:7101", "popreg-ss1.example.gov:7101"],
                "certificates_sha256": sorted([CERT_A, CERT_B]),
                "subsystems": [],
            },
            {
                "id": f"{POPREG}/ss2",
                "addresses": ["popreg-ss2.example.gov:7102"],
                "certificates_sha256": [],
                "subsystems": ["statistics"],
            },
            {
                "id": f"{TAX}/ss1",
                "addresses": ["[::1]:7201"],
                "certificates_sha256": [CERT_C],
                "subsystems": [],
            },
        ],
        "services": [
            {
                "id": f"{POPREG}/civilregistry/popreg.v1.CivilRegistry",
                "methods": ["GetPerson", "ListPeople"],
                "description": "Who lives where",
                "personal_data": True,
                "data_categories": ["identity", "address"],
                "purposes": ["birth-support"],
                "consent_required": False,
                "legal_basis": "Population Administration Act, art. 58",
            },
            {
                "id": f"{POPREG}/civilregistry/popreg.v1.Addresses",
                "methods": [],
                "description": "",
                "personal_data": False,
                "data_categories": [],
                "purposes": [],
                "consent_required": False,
                "legal_basis": "",
            },
            {
                "id": f"{TAX}/assessment/tax.v1.Assessment",
                "methods": ["Assess"],
                "description": "Tax assessments",
                "personal_data": True,
                "data_categories": ["income"],
                "purposes": ["benefit-check", "audit"],
                "consent_required": True,
                "legal_basis": "",
            },
        ],
        "global_groups": [
            {
                "code": "registries",
                "description": "The base registries",
                "members": [f"{POPREG}/civilregistry", f"{TAX}/assessment"],
            },
            {"code": "nobody", "description": "", "members": []},
        ],
    }


def invalid(doc: object) -> str:
    """Validate ``doc`` and return the message of the :class:`GlobalConfigurationInvalid` raised."""
    with pytest.raises(GlobalConfigurationInvalid) as info:
        GlobalConfiguration.from_json(doc)
    return str(info.value)


def names_field(message: str, field: str) -> None:
    """The message starts with the offending field's path, as ``field: explanation``."""
    assert message.startswith(f"{field}: "), message


def rebuild(
    config: GlobalConfiguration,
    *,
    members: list[Member] | None = None,
    servers: list[SecurityServer] | None = None,
    services: list[Service] | None = None,
    groups: list[GlobalGroup] | None = None,
    descriptor_files: tuple[bytes, ...] = (),
    expires_at: dt.datetime | None = None,
) -> GlobalConfiguration:
    """``config``'s parts, some replaced, through :meth:`GlobalConfiguration.build`."""
    return GlobalConfiguration.build(
        config.instance,
        list(config.members.values()) if members is None else members,
        list(config.security_servers.values()) if servers is None else servers,
        list(config.services.values()) if services is None else services,
        list(config.groups.values()) if groups is None else groups,
        descriptor_files=descriptor_files,
        expires_at=expires_at,
    )


@pytest.fixture
def config() -> GlobalConfiguration:
    return GlobalConfiguration.from_json(document())


# --- round trip and model -----------------------------------------------------------------------


def test_valid_document_round_trips(config: GlobalConfiguration) -> None:
    assert config.to_json() == document()
    again = GlobalConfiguration.from_json(json.loads(json.dumps(config.to_json())))
    assert again.to_json() == document()


def test_minimal_document() -> None:
    config = GlobalConfiguration.from_json({"version": 1, "instance": "DEMO"})
    assert dict(config.members) == {}
    assert config.to_json() == {
        "version": 1,
        "instance": "DEMO",
        "members": [],
        "security_servers": [],
        "services": [],
        "global_groups": [],
    }
    assert config.version == 0
    assert config.built_at is None
    assert config.expires_at is None
    assert config.descriptor_files == ()


def test_optional_service_fields_default() -> None:
    doc = document()
    del doc["services"][0]["methods"]
    del doc["services"][0]["description"]
    service = GlobalConfiguration.from_json(doc).services[
        ServiceId.parse(f"{POPREG}/civilregistry/popreg.v1.CivilRegistry")
    ]
    assert service.methods == ()
    assert service.description == ""


def test_subsystems_are_written_sorted() -> None:
    doc = document()
    doc["members"][0]["subsystems"] = ["statistics", "civilregistry"]
    written = GlobalConfiguration.from_json(doc).to_json()
    assert written["members"][0]["subsystems"] == ["civilregistry", "statistics"]


def test_model_objects(config: GlobalConfiguration) -> None:
    assert config.instance == "DEMO"
    member = config.members[MemberId.parse(POPREG)]
    assert member.name == "Population Registry"
    assert member.subsystems == frozenset({"civilregistry", "statistics"})
    server = config.security_servers[SecurityServerId.parse(f"{TAX}/ss1")]
    assert server.address == "[::1]:7201"
    assert server.addresses == ("[::1]:7201",)
    assert server.certificates == frozenset({bytes.fromhex(CERT_C)})
    assert server.subsystems == frozenset()
    first = config.security_servers[SecurityServerId.parse(f"{POPREG}/ss1")]
    assert first.addresses == ("127.0.0.1:7101", "popreg-ss1.example.gov:7101")
    assert first.address == "127.0.0.1:7101"
    second = config.security_servers[SecurityServerId.parse(f"{POPREG}/ss2")]
    assert second.subsystems == frozenset({"statistics"})
    service = config.services[ServiceId.parse(f"{TAX}/assessment/tax.v1.Assessment")]
    assert service.methods == ("Assess",)
    assert service.description == "Tax assessments"
    assert service.personal_data is True
    assert service.data_categories == ("income",)
    assert service.purposes == ("benefit-check", "audit")
    assert service.consent_required is True
    assert service.legal_basis == ""
    assert service.descriptor_file == ""
    civil = config.services[ServiceId.parse(f"{POPREG}/civilregistry/popreg.v1.CivilRegistry")]
    assert civil.data_categories == ("identity", "address")
    assert civil.legal_basis == "Population Administration Act, art. 58"
    group = config.groups["registries"]
    assert group.description == "The base registries"
    assert group.members == frozenset(
        {SubsystemId.parse(f"{POPREG}/civilregistry"), SubsystemId.parse(f"{TAX}/assessment")}
    )
    assert config.groups["nobody"].members == frozenset()


def test_configuration_is_immutable(config: GlobalConfiguration) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.instance = "OTHER"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.members[MemberId.parse("DEMO/GOV/NEW")] = config.members[  # type: ignore[index]
            MemberId.parse(POPREG)
        ]


def test_configuration_does_not_share_state_with_the_document() -> None:
    doc = document()
    config = GlobalConfiguration.from_json(doc)
    doc["services"][0]["methods"].append("Injected")
    doc["services"][0]["data_categories"].append("injected")
    doc["members"][0]["subsystems"].append("injected")
    doc["security_servers"][0]["addresses"].append("127.0.0.1:9999")
    doc["security_servers"][1]["subsystems"].append("civilregistry")
    doc["global_groups"][1]["members"].append(f"{BANK}/x")
    assert config.to_json() == document()


# --- look-ups -----------------------------------------------------------------------------------


def test_servers_of_a_member_in_document_order(config: GlobalConfiguration) -> None:
    servers = config.servers_of(MemberId.parse(POPREG))
    assert [str(s.id) for s in servers] == [f"{POPREG}/ss1", f"{POPREG}/ss2"]
    assert servers[0] == SecurityServer(
        SecurityServerId.parse(f"{POPREG}/ss1"),
        ("127.0.0.1:7101", "popreg-ss1.example.gov:7101"),
        frozenset({bytes.fromhex(CERT_A), bytes.fromhex(CERT_B)}),
        frozenset(),
    )


def test_servers_of_a_member_without_servers(config: GlobalConfiguration) -> None:
    assert config.servers_of(MemberId.parse(BANK)) == ()


def test_servers_of_an_unknown_member(config: GlobalConfiguration) -> None:
    assert config.servers_of(MemberId.parse("DEMO/GOV/UNKNOWN")) == ()
    assert config.servers_of(MemberId.parse("DEMO/GOV/popreg")) == ()


def test_services_of_a_provider_in_document_order(config: GlobalConfiguration) -> None:
    services = config.services_of(SubsystemId.parse(f"{POPREG}/civilregistry"))
    assert [s.id.service_name for s in services] == [
        "popreg.v1.CivilRegistry",
        "popreg.v1.Addresses",
    ]


def test_services_of_a_subsystem_without_services(config: GlobalConfiguration) -> None:
    assert config.services_of(SubsystemId.parse(f"{POPREG}/statistics")) == ()


def test_services_of_an_unknown_subsystem(config: GlobalConfiguration) -> None:
    assert config.services_of(SubsystemId.parse(f"{BANK}/nothing")) == ()


def test_has_subsystem(config: GlobalConfiguration) -> None:
    assert config.has_subsystem(SubsystemId.parse(f"{POPREG}/civilregistry"))
    assert config.has_subsystem(SubsystemId.parse(f"{TAX}/assessment"))
    assert not config.has_subsystem(SubsystemId.parse(f"{POPREG}/assessment"))
    assert not config.has_subsystem(SubsystemId.parse(f"{POPREG}/CivilRegistry"))
    assert not config.has_subsystem(SubsystemId.parse("DEMO/GOV/UNKNOWN/civilregistry"))


def test_subsystems_sorted_by_canonical_form(config: GlobalConfiguration) -> None:
    assert [str(s) for s in config.subsystems()] == [
        "DEMO/GOV/POPREG/civilregistry",
        "DEMO/GOV/POPREG/statistics",
        "DEMO/GOV/TAX/assessment",
    ]


# --- invalid documents: one test per failure mode -----------------------------------------------


@pytest.mark.parametrize("doc", [None, [], "text", 1], ids=["null", "list", "string", "number"])
def test_document_not_an_object(doc: object) -> None:
    names_field(invalid(doc), "global configuration")


@pytest.mark.parametrize(
    "version", [None, 2, 0, "1", [1]], ids=["missing", "2", "0", "str", "list"]
)
def test_wrong_version(version: object) -> None:
    doc = document()
    if version is None:
        del doc["version"]
    else:
        doc["version"] = version
    names_field(invalid(doc), "version")


def test_version_true_is_not_version_1() -> None:
    # JSON true == 1 in Python; the version is a number, not a boolean.
    doc = document()
    doc["version"] = True
    names_field(invalid(doc), "version")


def test_version_1_point_5_is_not_version_1() -> None:
    doc = document()
    doc["version"] = 1.5
    names_field(invalid(doc), "version")


@pytest.mark.parametrize("instance", [None, "", 7], ids=["missing", "empty", "number"])
def test_instance_not_a_string(instance: object) -> None:
    doc = document()
    if instance is None:
        del doc["instance"]
    else:
        doc["instance"] = instance
    assert invalid(doc).startswith("instance")


def test_instance_error_names_the_field() -> None:
    # The field is "instance", not "instance.instance".
    names_field(invalid({"version": 1}), "instance")


def test_instance_not_an_identifier_part() -> None:
    # Every identifier belongs to the instance, so the instance itself must be a valid part.
    names_field(invalid({"version": 1, "instance": "DE MO/X"}), "instance")


def test_members_not_a_list() -> None:
    doc = document()
    doc["members"] = {"id": POPREG}
    names_field(invalid(doc), "members")


def test_member_not_an_object() -> None:
    doc = document()
    doc["members"][1] = TAX
    names_field(invalid(doc), "members[1]")


@pytest.mark.parametrize(
    "member_id",
    [None, "", "DEMO/GOV", "DEMO/GOV/POP REG", "DEMO/GOV/POPREG/x", "DEMO/GOV/\u0410", 5],
    ids=["missing", "empty", "too_few_parts", "space", "subsystem", "cyrillic", "number"],
)
def test_member_id_malformed(member_id: object) -> None:
    doc = document()
    doc["members"][1]["id"] = member_id
    message = invalid(doc)
    names_field(message, "members[1].id")
    assert all(" " <= c <= "~" for c in message)


@pytest.mark.parametrize("name", [None, "", 3], ids=["missing", "empty", "number"])
def test_member_name_not_a_string(name: object) -> None:
    doc = document()
    doc["members"][0]["name"] = name
    names_field(invalid(doc), "members[0].name")


def test_duplicate_member() -> None:
    doc = document()
    doc["members"].append({"id": TAX, "name": "Tax Board again", "subsystems": []})
    message = invalid(doc)
    names_field(message, "members[3].id")
    assert "listed twice" in message


def test_member_of_another_instance() -> None:
    doc = document()
    doc["members"][2]["id"] = "OTHER/COM/BANK"
    message = invalid(doc)
    names_field(message, "members[2].id")
    assert "DEMO" in message


def test_subsystems_not_a_list() -> None:
    doc = document()
    doc["members"][0]["subsystems"] = "civilregistry"
    names_field(invalid(doc), "members[0].subsystems")


@pytest.mark.parametrize(
    "code", [1, None, ["x"], {"code": "x"}], ids=["int", "null", "list", "obj"]
)
def test_subsystem_code_not_a_string(code: object) -> None:
    doc = document()
    doc["members"][0]["subsystems"] = ["civilregistry", code]
    names_field(invalid(doc), "members[0].subsystems[1]")


@pytest.mark.parametrize("code", ["", "..", "a/b", "civil registry", "-x", "\u0441ivil"], ids=str)
def test_subsystem_code_malformed(code: str) -> None:
    doc = document()
    doc["members"][0]["subsystems"] = ["civilregistry", code]
    assert invalid(doc).startswith("members[0].subsystems[1]")


def test_subsystem_code_error_names_the_field() -> None:
    # The field is the list item itself: there is no "id" inside a subsystem code.
    doc = document()
    doc["members"][0]["subsystems"] = ["civilregistry", "civil registry"]
    names_field(invalid(doc), "members[0].subsystems[1]")


def test_security_servers_not_a_list() -> None:
    doc = document()
    doc["security_servers"] = "127.0.0.1:7101"
    names_field(invalid(doc), "security_servers")


def test_security_server_not_an_object() -> None:
    doc = document()
    doc["security_servers"][0] = None
    names_field(invalid(doc), "security_servers[0]")


def test_security_server_id_malformed() -> None:
    doc = document()
    doc["security_servers"][1]["id"] = f"{POPREG}/ss 2"
    names_field(invalid(doc), "security_servers[1].id")


def test_security_server_of_unknown_owner() -> None:
    doc = document()
    doc["security_servers"][2]["id"] = "DEMO/GOV/UNKNOWN/ss1"
    message = invalid(doc)
    names_field(message, "security_servers[2].id")
    assert "DEMO/GOV/UNKNOWN" in message


def test_security_server_of_another_instance() -> None:
    doc = document()
    doc["security_servers"][2]["id"] = "OTHER/GOV/TAX/ss1"
    names_field(invalid(doc), "security_servers[2].id")


def test_duplicate_security_server() -> None:
    doc = document()
    doc["security_servers"].append({"id": f"{POPREG}/ss1", "address": "127.0.0.1:7999"})
    message = invalid(doc)
    names_field(message, "security_servers[3].id")
    assert "listed twice" in message


@pytest.mark.parametrize(
    "address",
    [
        None,
        5,
        "",
        "127.0.0.1",
        "popreg.example.gov",
        "127.0.0.1:0",
        "127.0.0.1:70000",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:",
        "host:port:x",
        "host:80:x",
        "::1:7101",
        "fe80::1:7101",
        "[::1]",
        "[127.0.0.1]:7101",
        ":7101",
        "bad_host:7101",
        "host name:7101",
        "http://host:7101",
        "host:7101/path",
        "h\u00f6st:7101",
        "host: 7101",
        "host:7101\n",
    ],
    ids=[
        "null",
        "number",
        "empty",
        "no_port",
        "hostname_no_port",
        "port_0",
        "port_70000",
        "port_65536",
        "negative_port",
        "empty_port",
        "host_port_x",
        "extra_part",
        "ipv6_without_brackets",
        "ipv6_link_local_without_brackets",
        "ipv6_without_port",
        "ipv4_in_brackets",
        "no_host",
        "underscore_host",
        "space_in_host",
        "url",
        "path",
        "non_ascii_host",
        "space_before_port",
        "trailing_newline",
    ],
)
def test_security_server_bad_address(address: object) -> None:
    # The second address is the bad one: the message names its position.
    doc = document()
    doc["security_servers"][0]["addresses"] = ["127.0.0.1:7101", address]
    names_field(invalid(doc), "security_servers[0].addresses[1]")


@pytest.mark.parametrize(
    "address", [None, 5, "", "127.0.0.1", "127.0.0.1:0", "[::1]", "host:7101/path"]
)
def test_security_server_bad_single_address(address: object) -> None:
    doc = document()
    del doc["security_servers"][0]["addresses"]
    doc["security_servers"][0]["address"] = address
    names_field(invalid(doc), "security_servers[0].addresses[0]")


def test_security_server_single_address_is_read_as_addresses() -> None:
    doc = document()
    del doc["security_servers"][2]["addresses"]
    doc["security_servers"][2]["address"] = "[::1]:7201"
    config = GlobalConfiguration.from_json(doc)
    assert config.security_servers[SecurityServerId.parse(f"{TAX}/ss1")].addresses == (
        "[::1]:7201",
    )
    assert config.to_json() == document()


def test_security_server_with_address_and_addresses() -> None:
    doc = document()
    doc["security_servers"][1]["address"] = "popreg-ss2.example.gov:7102"
    message = invalid(doc)
    names_field(message, "security_servers[1]")
    assert "not both" in message


def test_security_server_without_any_address() -> None:
    doc = document()
    del doc["security_servers"][1]["addresses"]
    names_field(invalid(doc), "security_servers[1].addresses")


@pytest.mark.parametrize(
    "addresses",
    [[], "127.0.0.1:7101", {"a": "127.0.0.1:7101"}, None],
    ids=["empty", "string", "object", "null"],
)
def test_security_server_addresses_not_a_list_of_addresses(addresses: object) -> None:
    doc = document()
    doc["security_servers"][1]["addresses"] = addresses
    names_field(invalid(doc), "security_servers[1].addresses")


def test_security_server_built_without_addresses() -> None:
    config = GlobalConfiguration.from_json(document())
    server = config.security_servers[SecurityServerId.parse(f"{TAX}/ss1")]
    with pytest.raises(GlobalConfigurationInvalid, match=r"^security_servers\[2\]\.addresses: "):
        rebuild(
            config,
            servers=[
                *list(config.security_servers.values())[:2],
                dataclasses.replace(server, addresses=()),
            ],
        )


def test_services_not_a_list() -> None:
    doc = document()
    doc["services"] = {}
    names_field(invalid(doc), "services")


def test_service_not_an_object() -> None:
    doc = document()
    doc["services"][2] = "tax.v1.Assessment"
    names_field(invalid(doc), "services[2]")


@pytest.mark.parametrize(
    "service_id",
    [None, f"{POPREG}/civilregistry", f"{POPREG}/civilregistry/CivilRegistry"],
    ids=["missing", "no_service_name", "no_package"],
)
def test_service_id_malformed(service_id: object) -> None:
    doc = document()
    doc["services"][0]["id"] = service_id
    names_field(invalid(doc), "services[0].id")


def test_service_of_unknown_provider_member() -> None:
    doc = document()
    doc["services"][1]["id"] = "DEMO/GOV/UNKNOWN/civilregistry/popreg.v1.Addresses"
    message = invalid(doc)
    names_field(message, "services[1].id")
    assert "DEMO/GOV/UNKNOWN/civilregistry" in message


def test_service_of_unknown_subsystem() -> None:
    doc = document()
    doc["services"][1]["id"] = f"{POPREG}/unknown/popreg.v1.Addresses"
    message = invalid(doc)
    names_field(message, "services[1].id")
    assert f"{POPREG}/unknown" in message


def test_service_of_a_subsystem_of_another_member() -> None:
    doc = document()
    doc["services"][2]["id"] = f"{BANK}/assessment/tax.v1.Assessment"
    names_field(invalid(doc), "services[2].id")


def test_duplicate_service() -> None:
    doc = document()
    doc["services"].append(copy.deepcopy(doc["services"][0]))
    message = invalid(doc)
    names_field(message, "services[3].id")
    assert "listed twice" in message


@pytest.mark.parametrize(
    "methods", ["GetPerson", {"GetPerson": 1}, None, 3], ids=["string", "object", "null", "number"]
)
def test_service_methods_not_a_list(methods: object) -> None:
    doc = document()
    doc["services"][0]["methods"] = methods
    names_field(invalid(doc), "services[0].methods")


@pytest.mark.parametrize(
    "method",
    ["", "1Get", "Get-Person", "Get.Person", "/pkg.S/Get", "Get Person", "G\u0435t", 7, None],
    ids=[
        "empty",
        "digit_first",
        "hyphen",
        "dot",
        "path",
        "space",
        "cyrillic",
        "number",
        "null",
    ],
)
def test_service_bad_method_name(method: object) -> None:
    doc = document()
    doc["services"][0]["methods"] = ["GetPerson", method]
    names_field(invalid(doc), "services[0].methods")


def test_service_method_name_of_101_characters() -> None:
    doc = document()
    doc["services"][0]["methods"] = ["M" * 101]
    names_field(invalid(doc), "services[0].methods")


def test_service_method_name_of_100_characters_is_accepted() -> None:
    doc = document()
    doc["services"][0]["methods"] = ["M" * 100]
    assert GlobalConfiguration.from_json(doc).to_json() == doc


@pytest.mark.parametrize("description", [None, 1, ["x"]], ids=["null", "number", "list"])
def test_service_description_not_a_string(description: object) -> None:
    doc = document()
    doc["services"][0]["description"] = description
    names_field(invalid(doc), "services[0].description")


def test_errors_are_registry_errors_with_a_stable_code() -> None:
    assert issubclass(GlobalConfigurationInvalid, RegistryError)
    assert GlobalConfigurationInvalid.code == "global_configuration_invalid"
    assert RegistryError.code == "registry_error"


# --- load ---------------------------------------------------------------------------------------


def test_load_a_valid_file(tmp_path: Path) -> None:
    path = tmp_path / "global.json"
    path.write_text(json.dumps(document()), encoding="utf-8")
    assert GlobalConfiguration.load(path).to_json() == document()


def test_load_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"
    with pytest.raises(GlobalConfigurationInvalid) as info:
        GlobalConfiguration.load(path)
    assert str(path) in str(info.value)


def test_load_a_directory(tmp_path: Path) -> None:
    with pytest.raises(GlobalConfigurationInvalid):
        GlobalConfiguration.load(tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"version: 1", b"\xff\xfe\x00", b'{"version": 1,}', b"NaN-ish"],
    ids=["empty", "truncated", "yaml", "bad_utf8", "trailing_comma", "garbage"],
)
def test_load_a_file_that_is_not_json(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "global.json"
    path.write_bytes(content)
    with pytest.raises(GlobalConfigurationInvalid) as info:
        GlobalConfiguration.load(path)
    assert str(path) in str(info.value)


def test_load_deeply_nested_json(tmp_path: Path) -> None:
    # Valid JSON that the parser cannot handle must still be refused as invalid configuration.
    path = tmp_path / "global.json"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(GlobalConfigurationInvalid):
        GlobalConfiguration.load(path)


def test_load_valid_json_that_is_not_a_configuration(tmp_path: Path) -> None:
    path = tmp_path / "global.json"
    path.write_text('{"version": 1, "instance": "DEMO", "members": 3}', encoding="utf-8")
    with pytest.raises(GlobalConfigurationInvalid, match=r"^members: "):
        GlobalConfiguration.load(path)


# --- parse_address ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:7101", "127.0.0.1", 7101),
        ("localhost:1", "localhost", 1),
        ("popreg-ss1.example.gov:65535", "popreg-ss1.example.gov", 65535),
        ("[::1]:443", "::1", 443),
        ("[2001:db8::7]:8443", "2001:db8::7", 8443),
        ("a:80", "a", 80),
    ],
)
def test_parse_address(text: str, host: str, port: int) -> None:
    assert parse_address(text, "peer_address") == (host, port)


@pytest.mark.parametrize(
    "text",
    ["127.0.0.1", "[::1]", "::1:80", "fe80::1:80", "host:port:x", "[1.2.3.4]:80", ":80", ""],
    ids=[
        "no_port",
        "ipv6_no_port",
        "ipv6_without_brackets",
        "ipv6_link_local_without_brackets",
        "host_port_x",
        "ipv4_in_brackets",
        "no_host",
        "empty",
    ],
)
def test_parse_address_not_host_port(text: str) -> None:
    with pytest.raises(GlobalConfigurationInvalid, match=r"^gateway\.peer_address: "):
        parse_address(text, "gateway.peer_address")


@pytest.mark.parametrize(
    "text", ["host:0", "host:70000", "host:65536", "host:", "host:x", "host:-1"]
)
def test_parse_address_port_out_of_range(text: str) -> None:
    with pytest.raises(GlobalConfigurationInvalid, match=r"^peer: port out of range"):
        parse_address(text, "peer")


@pytest.mark.parametrize("value", [None, 7101, b"host:80", ("host", 80)])
def test_parse_address_not_a_string(value: object) -> None:
    with pytest.raises(GlobalConfigurationInvalid, match=r"^peer: expected 'host:port', got "):
        parse_address(value, "peer")


@pytest.mark.parametrize(
    "text",
    ["host:\u0668\u0660", "host:\uff18\uff10", "host:\u00b2", "host:\u0968\u0966"],
    ids=["arabic_indic_80", "fullwidth_80", "superscript_two", "devanagari_20"],
)
def test_parse_address_port_with_non_ascii_digits(text: str) -> None:
    # str.isdigit() accepts these; a port is ASCII digits only, and the refusal is ours.
    with pytest.raises(GlobalConfigurationInvalid, match=r"^peer: "):
        parse_address(text, "peer")


def test_numeric_host_that_is_no_ipv4_address() -> None:
    with pytest.raises(GlobalConfigurationInvalid, match="where"):
        parse_address("999.1.1.1:443", "where")


def test_duplicate_subsystem_code() -> None:
    doubled = document()
    doubled["members"][0]["subsystems"] = ["civilregistry", "civilregistry"]
    with pytest.raises(
        GlobalConfigurationInvalid, match=r"members\[0\]\.subsystems\[1\]: .* twice"
    ):
        GlobalConfiguration.from_json(doubled)


def test_duplicate_method_name() -> None:
    doubled = document()
    doubled["services"][0]["methods"] = ["GetPerson", "GetPerson"]
    with pytest.raises(GlobalConfigurationInvalid, match=r"services\[0\]\.methods: .* twice"):
        GlobalConfiguration.from_json(doubled)


# --- authentication certificates ----------------------------------------------------------------


def test_certificates_are_written_sorted_in_lower_case_hex() -> None:
    doc = document()
    doc["security_servers"][0]["certificates_sha256"] = [
        max(CERT_A, CERT_B).upper(),
        min(CERT_A, CERT_B),
    ]
    written = GlobalConfiguration.from_json(doc).to_json()
    assert written["security_servers"][0]["certificates_sha256"] == sorted([CERT_A, CERT_B])


def test_server_with_certificate(config: GlobalConfiguration) -> None:
    ss1 = SecurityServerId.parse(f"{POPREG}/ss1")
    assert config.server_with_certificate(bytes.fromhex(CERT_A)) == ss1
    assert config.server_with_certificate(bytes.fromhex(CERT_B)) == ss1
    assert config.server_with_certificate(bytes.fromhex(CERT_C)) == SecurityServerId.parse(
        f"{TAX}/ss1"
    )
    assert config.server_with_certificate(hashlib.sha256(b"unknown").digest()) is None


def test_certificate_registered_for_two_servers() -> None:
    doc = document()
    doc["security_servers"][2]["certificates_sha256"] = [CERT_C, CERT_B]
    message = invalid(doc)
    names_field(message, "security_servers[2].certificates")
    assert f"{POPREG}/ss1" in message
    assert CERT_B[:16] in message


def test_certificate_listed_twice_for_one_server_is_one_certificate() -> None:
    doc = document()
    doc["security_servers"][2]["certificates_sha256"] = [CERT_C, CERT_C]
    config = GlobalConfiguration.from_json(doc)
    assert config.security_servers[SecurityServerId.parse(f"{TAX}/ss1")].certificates == {
        bytes.fromhex(CERT_C)
    }


@pytest.mark.parametrize(
    "fingerprint",
    [CERT_A[:-2], CERT_A + "00", "", hashlib.sha1(b"x").hexdigest()],
    ids=["31_bytes", "33_bytes", "empty", "sha1"],
)
def test_certificate_fingerprint_not_32_bytes(fingerprint: str) -> None:
    doc = document()
    doc["security_servers"][1]["certificates_sha256"] = [fingerprint]
    message = invalid(doc)
    names_field(message, "security_servers[1].certificates")
    assert "32 bytes" in message


def test_certificate_fingerprint_not_32_bytes_when_built(config: GlobalConfiguration) -> None:
    servers = list(config.security_servers.values())
    servers[1] = dataclasses.replace(servers[1], certificates=frozenset({b"\x01" * 31}))
    with pytest.raises(GlobalConfigurationInvalid, match=r"^security_servers\[1\]\.certificates: "):
        rebuild(config, servers=servers)


@pytest.mark.parametrize("text", ["xyz", CERT_A[:-1], "0x" + CERT_A[2:]], ids=str)
def test_certificate_fingerprint_not_hex(text: str) -> None:
    doc = document()
    doc["security_servers"][0]["certificates_sha256"] = [CERT_A, text]
    names_field(invalid(doc), "security_servers[0].certificates_sha256[1]")


@pytest.mark.parametrize(
    "value", [CERT_A, [1], [None], {"a": CERT_A}], ids=["string", "number", "null", "object"]
)
def test_certificates_not_a_list_of_strings(value: object) -> None:
    doc = document()
    doc["security_servers"][0]["certificates_sha256"] = value
    names_field(invalid(doc), "security_servers[0].certificates_sha256")


# --- which servers serve which subsystems -------------------------------------------------------


def test_servers_for_a_subsystem_served_by_a_server_serving_all(
    config: GlobalConfiguration,
) -> None:
    # ss1 lists no subsystems (all of POPREG's); ss2 serves statistics only.
    servers = config.servers_for(SubsystemId.parse(f"{POPREG}/civilregistry"))
    assert [str(s.id) for s in servers] == [f"{POPREG}/ss1"]


def test_servers_for_a_subsystem_in_document_order(config: GlobalConfiguration) -> None:
    servers = config.servers_for(SubsystemId.parse(f"{POPREG}/statistics"))
    assert [str(s.id) for s in servers] == [f"{POPREG}/ss1", f"{POPREG}/ss2"]
    assert [str(s.id) for s in config.servers_for(SubsystemId.parse(f"{TAX}/assessment"))] == [
        f"{TAX}/ss1"
    ]


def test_servers_for_a_subsystem_nobody_serves(config: GlobalConfiguration) -> None:
    assert config.servers_for(SubsystemId.parse(f"{BANK}/payments")) == ()
    assert config.servers_for(SubsystemId.parse(f"{POPREG}/unknown")) == ()
    assert config.servers_for(SubsystemId.parse("DEMO/GOV/UNKNOWN/civilregistry")) == ()


def test_servers_for_a_member_without_servers() -> None:
    doc = document()
    doc["members"][2]["subsystems"] = ["payments"]
    config = GlobalConfiguration.from_json(doc)
    assert config.servers_for(SubsystemId.parse(f"{BANK}/payments")) == ()


def test_server_serving_only_some_subsystems_is_no_route_for_the_others() -> None:
    doc = document()
    doc["security_servers"][0]["subsystems"] = ["civilregistry"]
    config = GlobalConfiguration.from_json(doc)
    assert [str(s.id) for s in config.servers_for(SubsystemId.parse(f"{POPREG}/statistics"))] == [
        f"{POPREG}/ss2"
    ]
    assert [
        str(s.id) for s in config.servers_for(SubsystemId.parse(f"{POPREG}/civilregistry"))
    ] == [f"{POPREG}/ss1"]


def test_server_serving_a_subsystem_its_owner_does_not_have() -> None:
    doc = document()
    # TAX has "assessment" only; POPREG's subsystem is not TAX's.
    doc["security_servers"][2]["subsystems"] = ["assessment", "civilregistry"]
    message = invalid(doc)
    names_field(message, "security_servers[2].subsystems")
    assert f"{TAX}/civilregistry" in message


def test_server_subsystems_are_written_sorted() -> None:
    doc = document()
    doc["security_servers"][0]["subsystems"] = ["statistics", "civilregistry"]
    written = GlobalConfiguration.from_json(doc).to_json()
    assert written["security_servers"][0]["subsystems"] == ["civilregistry", "statistics"]


@pytest.mark.parametrize("value", ["statistics", [7], [None]], ids=["string", "number", "null"])
def test_server_subsystems_not_a_list_of_strings(value: object) -> None:
    doc = document()
    doc["security_servers"][1]["subsystems"] = value
    names_field(invalid(doc), "security_servers[1].subsystems")


@pytest.mark.parametrize("code", ["civil registry", "", "a/b"], ids=["space", "empty", "slash"])
def test_server_subsystem_code_malformed(code: str) -> None:
    # A malformed code is invalid configuration like any other, not an unexpected exception.
    doc = document()
    doc["security_servers"][1]["subsystems"] = ["statistics", code]
    assert invalid(doc).startswith("security_servers[1].subsystems")


# --- facts about services -----------------------------------------------------------------------


def test_service_facts_default() -> None:
    doc = document()
    for key in ("personal_data", "data_categories", "purposes", "consent_required", "legal_basis"):
        del doc["services"][1][key]
    service = GlobalConfiguration.from_json(doc).services[
        ServiceId.parse(f"{POPREG}/civilregistry/popreg.v1.Addresses")
    ]
    assert service.personal_data is False
    assert service.data_categories == ()
    assert service.purposes == ()
    assert service.consent_required is False
    assert service.legal_basis == ""
    assert GlobalConfiguration.from_json(doc).to_json() == document()


@pytest.mark.parametrize("key", ["personal_data", "consent_required"])
@pytest.mark.parametrize("value", [1, "true", None, 0], ids=["one", "string", "null", "zero"])
def test_service_flag_not_a_boolean(key: str, value: object) -> None:
    doc = document()
    doc["services"][0][key] = value
    names_field(invalid(doc), f"services[0].{key}")


def test_consent_required_without_personal_data() -> None:
    doc = document()
    doc["services"][2]["personal_data"] = False
    message = invalid(doc)
    names_field(message, "services[2].consent_required")
    assert "personal data" in message


@pytest.mark.parametrize("key", ["data_categories", "purposes"])
@pytest.mark.parametrize(
    "code",
    ["", "has space", "-lead", "trail-", "k\u00e4se", "a/b", "x" * 65],
    ids=["empty", "space", "leading_hyphen", "trailing_hyphen", "non_ascii", "slash", "too_long"],
)
def test_service_code_list_with_a_bad_code(key: str, code: str) -> None:
    doc = document()
    doc["services"][0][key] = ["good", code]
    message = invalid(doc)
    names_field(message, f"services[0].{key}")
    assert "is not a code" in message


@pytest.mark.parametrize("key", ["data_categories", "purposes"])
def test_service_code_of_64_characters_is_accepted(key: str) -> None:
    doc = document()
    doc["services"][0][key] = ["x" * 64, "a.b_c-d"]
    assert GlobalConfiguration.from_json(doc).to_json() == doc


@pytest.mark.parametrize("key", ["data_categories", "purposes"])
def test_service_code_listed_twice(key: str) -> None:
    doc = document()
    doc["services"][0][key] = ["identity", "identity"]
    message = invalid(doc)
    names_field(message, f"services[0].{key}")
    assert "twice" in message


@pytest.mark.parametrize("key", ["data_categories", "purposes"])
@pytest.mark.parametrize("value", ["identity", [1], {"a": 1}], ids=["string", "number", "object"])
def test_service_code_list_not_a_list_of_strings(key: str, value: object) -> None:
    doc = document()
    doc["services"][0][key] = value
    names_field(invalid(doc), f"services[0].{key}")


def test_legal_basis_of_500_characters_is_accepted() -> None:
    doc = document()
    doc["services"][0]["legal_basis"] = "\u00a7" * 500
    assert GlobalConfiguration.from_json(doc).to_json() == doc


@pytest.mark.parametrize(
    "legal_basis",
    ["x" * 501, "Act\nart. 5", "Act\x00", "Act\x7f", "Act\tart. 5"],
    ids=["501_characters", "newline", "nul", "delete", "tab"],
)
def test_legal_basis_beyond_its_limits(legal_basis: str) -> None:
    doc = document()
    doc["services"][0]["legal_basis"] = legal_basis
    message = invalid(doc)
    names_field(message, "services[0].legal_basis")
    assert "500" in message


@pytest.mark.parametrize("value", [None, 5, ["Act"]], ids=["null", "number", "list"])
def test_legal_basis_not_a_string(value: object) -> None:
    doc = document()
    doc["services"][0]["legal_basis"] = value
    names_field(invalid(doc), "services[0].legal_basis")


# --- descriptor files ---------------------------------------------------------------------------


def descriptor_file(
    name: str = "popreg/v1/popreg.proto",
    package: str = "popreg.v1",
    services: dict[str, list[str]] | None = None,
    dependencies: tuple[str, ...] = (),
) -> bytes:
    """A serialized ``FileDescriptorProto`` defining ``services`` (name: methods)."""
    services = {"CivilRegistry": ["GetPerson", "ListPeople"]} if services is None else services
    file = descriptor_pb2.FileDescriptorProto(
        name=name, package=package, syntax="proto3", dependency=list(dependencies)
    )
    file.message_type.add(name="Empty")
    for service_name, methods in services.items():
        service = file.service.add(name=service_name)
        for method in methods:
            service.method.add(
                name=method, input_type=f".{package}.Empty", output_type=f".{package}.Empty"
            )
    return file.SerializeToString()


def with_descriptor(
    config: GlobalConfiguration, files: tuple[bytes, ...], file_name: str = "popreg/v1/popreg.proto"
) -> GlobalConfiguration:
    """``config`` with CivilRegistry defined by ``file_name`` among ``files``."""
    services = [
        dataclasses.replace(s, descriptor_file=file_name)
        if s.id.service_name == "popreg.v1.CivilRegistry"
        else s
        for s in config.services.values()
    ]
    return rebuild(config, services=services, descriptor_files=files)


def test_service_defined_by_a_descriptor_file(config: GlobalConfiguration) -> None:
    files = (
        descriptor_file("common.proto", "common"),
        descriptor_file(dependencies=("common.proto",)),
    )
    built = with_descriptor(config, files)
    assert built.descriptor_files == files
    service = built.services[ServiceId.parse(f"{POPREG}/civilregistry/popreg.v1.CivilRegistry")]
    assert service.descriptor_file == "popreg/v1/popreg.proto"
    # Descriptor files are not part of the JSON document.
    assert built.to_json() == document()


def test_descriptor_file_not_among_the_files(config: GlobalConfiguration) -> None:
    with pytest.raises(
        GlobalConfigurationInvalid, match=r"^services\[0\]\.descriptor_file: .* not among"
    ):
        with_descriptor(config, (descriptor_file(),), "other.proto")


@pytest.mark.parametrize(
    "file",
    [
        descriptor_file(package="popreg.v2"),
        descriptor_file(services={"Addresses": ["GetPerson", "ListPeople"]}),
        descriptor_file(services={}),
    ],
    ids=["other_package", "other_service", "no_service"],
)
def test_descriptor_file_that_does_not_define_the_service(
    config: GlobalConfiguration, file: bytes
) -> None:
    with pytest.raises(
        GlobalConfigurationInvalid,
        match=r"^services\[0\]\.descriptor_file: .* does not define popreg\.v1\.CivilRegistry",
    ):
        with_descriptor(config, (file,))


def test_service_methods_not_all_in_its_descriptor(config: GlobalConfiguration) -> None:
    file = descriptor_file(services={"CivilRegistry": ["GetPerson"]})
    with pytest.raises(
        GlobalConfigurationInvalid,
        match=r"^services\[0\]\.methods: \w+(, \w+)* (is|are) not a method of ",
    ):
        with_descriptor(config, (file,))


def test_descriptor_file_that_is_not_a_descriptor(config: GlobalConfiguration) -> None:
    with pytest.raises(GlobalConfigurationInvalid, match=r"^descriptor_files\[1\]: "):
        with_descriptor(config, (descriptor_file(), b"\xff\xff\xff"))


def test_descriptor_file_without_a_name(config: GlobalConfiguration) -> None:
    with pytest.raises(GlobalConfigurationInvalid, match=r"^descriptor_files\[0\]: .*name"):
        with_descriptor(config, (descriptor_file(name=""),))


def test_descriptor_file_listed_twice(config: GlobalConfiguration) -> None:
    with pytest.raises(GlobalConfigurationInvalid, match=r"^descriptor_files\[1\]: .*unique"):
        with_descriptor(config, (descriptor_file(), descriptor_file()))


def test_descriptor_file_importing_a_missing_file(config: GlobalConfiguration) -> None:
    file = descriptor_file(dependencies=("common.proto",))
    with pytest.raises(
        GlobalConfigurationInvalid,
        match=r"^descriptor_files: popreg/v1/popreg\.proto imports common\.proto",
    ):
        with_descriptor(config, (file,))


# --- global groups ------------------------------------------------------------------------------


def test_groups_of_a_subsystem(config: GlobalConfiguration) -> None:
    assert config.groups_of(SubsystemId.parse(f"{POPREG}/civilregistry")) == {"registries"}
    assert config.groups_of(SubsystemId.parse(f"{POPREG}/statistics")) == frozenset()
    assert config.groups_of(SubsystemId.parse("DEMO/GOV/UNKNOWN/x")) == frozenset()


def test_subsystem_in_two_groups() -> None:
    doc = document()
    doc["global_groups"][1]["members"] = [f"{TAX}/assessment"]
    config = GlobalConfiguration.from_json(doc)
    assert config.groups_of(SubsystemId.parse(f"{TAX}/assessment")) == {"registries", "nobody"}


def test_group_members_are_written_sorted() -> None:
    doc = document()
    doc["global_groups"][0]["members"] = [f"{TAX}/assessment", f"{POPREG}/civilregistry"]
    assert GlobalConfiguration.from_json(doc).to_json() == document()


def test_group_description_is_optional() -> None:
    doc = document()
    del doc["global_groups"][1]["description"]
    del doc["global_groups"][1]["members"]
    assert GlobalConfiguration.from_json(doc).to_json() == document()


@pytest.mark.parametrize(
    "member",
    [f"{POPREG}/unknown", f"{BANK}/payments", "DEMO/GOV/UNKNOWN/civilregistry"],
    ids=["unknown_code", "member_without_subsystems", "unknown_member"],
)
def test_group_of_an_unknown_subsystem(member: str) -> None:
    doc = document()
    doc["global_groups"][0]["members"].append(member)
    message = invalid(doc)
    names_field(message, "global_groups[0].members")
    assert member in message


def test_group_of_an_unknown_subsystem_when_built(config: GlobalConfiguration) -> None:
    stray = GlobalGroup("stray", "", frozenset({SubsystemId.parse(f"{BANK}/payments")}))
    with pytest.raises(GlobalConfigurationInvalid, match=r"^global_groups\[2\]\.members: "):
        rebuild(config, groups=[*config.groups.values(), stray])


def test_group_member_malformed() -> None:
    # Like a subsystem code, the field is the list item itself.
    doc = document()
    doc["global_groups"][0]["members"] = [f"{POPREG}/civilregistry", f"{TAX}/assess ment"]
    names_field(invalid(doc), "global_groups[0].members[1]")


@pytest.mark.parametrize(
    "code",
    [None, "", "has space", "-x", "x" * 65, 5],
    ids=["missing", "empty", "space", "leading_hyphen", "too_long", "number"],
)
def test_group_code_malformed(code: object) -> None:
    doc = document()
    if code is None:
        del doc["global_groups"][0]["code"]
    else:
        doc["global_groups"][0]["code"] = code
    names_field(invalid(doc), "global_groups[0].code")


def test_duplicate_group() -> None:
    doc = document()
    doc["global_groups"][1]["code"] = "registries"
    message = invalid(doc)
    names_field(message, "global_groups[1].code")
    assert "listed twice" in message


def test_groups_not_a_list() -> None:
    doc = document()
    doc["global_groups"] = {"code": "registries"}
    names_field(invalid(doc), "global_groups")


def test_group_not_an_object() -> None:
    doc = document()
    doc["global_groups"][1] = "nobody"
    names_field(invalid(doc), "global_groups[1]")


@pytest.mark.parametrize("members", [f"{POPREG}/civilregistry", [1]], ids=["string", "number"])
def test_group_members_not_a_list_of_strings(members: object) -> None:
    doc = document()
    doc["global_groups"][0]["members"] = members
    names_field(invalid(doc), "global_groups[0].members")


@pytest.mark.parametrize("description", [None, 3], ids=["null", "number"])
def test_group_description_not_a_string(description: object) -> None:
    doc = document()
    doc["global_groups"][0]["description"] = description
    names_field(invalid(doc), "global_groups[0].description")


# --- expiry -------------------------------------------------------------------------------------

EXPIRY = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


def test_configuration_without_expiry_never_expires(config: GlobalConfiguration) -> None:
    assert not config.expired(dt.datetime(9999, 1, 1, tzinfo=dt.UTC))


def test_configuration_is_not_expired_before_its_expiry(config: GlobalConfiguration) -> None:
    expiring = rebuild(config, expires_at=EXPIRY)
    assert expiring.expires_at == EXPIRY
    assert not expiring.expired(EXPIRY - dt.timedelta(microseconds=1))


def test_configuration_is_expired_at_and_after_its_expiry(config: GlobalConfiguration) -> None:
    expiring = rebuild(config, expires_at=EXPIRY)
    assert expiring.expired(EXPIRY)
    assert expiring.expired(EXPIRY + dt.timedelta(days=1))
