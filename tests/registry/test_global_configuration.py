"""The global configuration document: round trip, look-ups and one test per invalid input."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from proto import MemberId, SecurityServerId, ServiceId, SubsystemId
from registry import (
    GlobalConfiguration,
    GlobalConfigurationInvalid,
    RegistryError,
    SecurityServer,
    parse_address,
)

POPREG = "DEMO/GOV/POPREG"
TAX = "DEMO/GOV/TAX"
BANK = "DEMO/COM/BANK"


def document() -> dict[str, Any]:
    """A valid document in the form ``to_json`` writes (sorted subsystems, every field present)."""
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
            {"id": f"{POPREG}/ss1", "address": "127.0.0.1:7101"},
            {"id": f"{POPREG}/ss2", "address": "popreg-ss2.example.gov:7102"},
            {"id": f"{TAX}/ss1", "address": "[::1]:7201"},
        ],
        "services": [
            {
                "id": f"{POPREG}/civilregistry/popreg.v1.CivilRegistry",
                "methods": ["GetPerson", "ListPeople"],
                "description": "Who lives where",
            },
            {
                "id": f"{POPREG}/civilregistry/popreg.v1.Addresses",
                "methods": [],
                "description": "",
            },
            {
                "id": f"{TAX}/assessment/tax.v1.Assessment",
                "methods": ["Assess"],
                "description": "Tax assessments",
            },
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
    }


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
    service = config.services[ServiceId.parse(f"{TAX}/assessment/tax.v1.Assessment")]
    assert service.methods == ("Assess",)
    assert service.description == "Tax assessments"


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
    doc["members"][0]["subsystems"].append("injected")
    assert config.to_json() == document()


# --- look-ups -----------------------------------------------------------------------------------


def test_servers_of_a_member_in_document_order(config: GlobalConfiguration) -> None:
    servers = config.servers_of(MemberId.parse(POPREG))
    assert [str(s.id) for s in servers] == [f"{POPREG}/ss1", f"{POPREG}/ss2"]
    assert servers[0] == SecurityServer(SecurityServerId.parse(f"{POPREG}/ss1"), "127.0.0.1:7101")


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
        "missing",
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
    doc = document()
    if address is None:
        del doc["security_servers"][0]["address"]
    else:
        doc["security_servers"][0]["address"] = address
    names_field(invalid(doc), "security_servers[0].address")


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
