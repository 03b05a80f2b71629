"""The global configuration: who the members are, their subsystems, servers and services.

Every gateway routes and authenticates from this document. The JSON form (``version`` 1)::

    {
      "version": 1,
      "instance": "DEMO",
      "members": [{"id": "DEMO/GOV/POPREG", "name": "Population Registry",
                   "subsystems": ["civilregistry"]}],
      "security_servers": [{"id": "DEMO/GOV/POPREG/ss1", "address": "127.0.0.1:7101"}],
      "services": [{"id": "DEMO/GOV/POPREG/civilregistry/popreg.v1.CivilRegistry",
                    "methods": ["GetPerson"], "description": "..."}]
    }

Security server and service owners must be listed members; a service's provider must be a listed
subsystem; every identifier is in its canonical form and belongs to ``instance``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from proto import IdentifierError, MemberId, SecurityServerId, ServiceId, SubsystemId
from registry._errors import GlobalConfigurationInvalid

_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
T = TypeVar("T")
_PORT = re.compile(r"[0-9]{1,5}")

_METHOD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")


def parse_address(text: object, where: str) -> tuple[str, int]:
    """Parse ``host:port`` (``[v6]:port`` for IPv6) into its host and port.

    Raises:
        GlobalConfigurationInvalid: naming ``where``.
    """
    if not isinstance(text, str):
        raise GlobalConfigurationInvalid(
            f"{where}: expected 'host:port', got {type(text).__name__}"
        )
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        valid_host = _is_ip(host, 6)
    else:
        # A name whose labels are all digits is a malformed IPv4 address, not a host name.
        valid_host = _is_ip(host, 4) or (
            bool(_HOSTNAME.fullmatch(host)) and not all(p.isdigit() for p in host.split("."))
        )
    if not sep or not valid_host:
        raise GlobalConfigurationInvalid(f"{where}: {text!r} is not 'host:port'")
    if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        raise GlobalConfigurationInvalid(f"{where}: port out of range in {text!r}")
    return host, int(port_text)


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Member:
    """A member (agency), its display name and its subsystems' codes."""

    id: MemberId
    name: str
    subsystems: frozenset[str]


@dataclass(frozen=True, slots=True)
class SecurityServer:
    """A registered security server and the address its peer listener is reached at."""

    id: SecurityServerId
    address: str


@dataclass(frozen=True, slots=True)
class Service:
    """A service a provider subsystem offers."""

    id: ServiceId
    methods: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class GlobalConfiguration:
    """An immutable, validated global configuration with O(1) look-ups for the exchange path."""

    instance: str
    members: Mapping[MemberId, Member]
    security_servers: Mapping[SecurityServerId, SecurityServer]
    services: Mapping[ServiceId, Service]
    _servers_by_owner: Mapping[MemberId, tuple[SecurityServer, ...]] = field(repr=False)
    _services_by_provider: Mapping[SubsystemId, tuple[Service, ...]] = field(repr=False)

    @staticmethod
    def build(
        instance: str,
        members: list[Member],
        security_servers: list[SecurityServer],
        services: list[Service],
    ) -> GlobalConfiguration:
        """Check the parts against each other and index them.

        Raises:
            GlobalConfigurationInvalid: duplicates, unknown owners or providers, other instance.
        """
        member_map: dict[MemberId, Member] = {}
        for index, member in enumerate(members):
            where = f"members[{index}]"
            if member.id.instance != instance:
                raise GlobalConfigurationInvalid(f"{where}.id: {member.id} is not in {instance}")
            if member.id in member_map:
                raise GlobalConfigurationInvalid(f"{where}.id: {member.id} is listed twice")
            member_map[member.id] = member
        server_map: dict[SecurityServerId, SecurityServer] = {}
        by_owner: dict[MemberId, list[SecurityServer]] = {}
        for index, server in enumerate(security_servers):
            where = f"security_servers[{index}].id"
            if server.id.owner not in member_map:
                raise GlobalConfigurationInvalid(
                    f"{where}: owner {server.id.owner} is not a member"
                )
            if server.id in server_map:
                raise GlobalConfigurationInvalid(f"{where}: {server.id} is listed twice")
            server_map[server.id] = server
            by_owner.setdefault(server.id.owner, []).append(server)
        service_map: dict[ServiceId, Service] = {}
        by_provider: dict[SubsystemId, list[Service]] = {}
        for index, service in enumerate(services):
            where = f"services[{index}].id"
            provider = service.id.provider
            owner = member_map.get(provider.member)
            if owner is None or provider.subsystem_code not in owner.subsystems:
                raise GlobalConfigurationInvalid(f"{where}: provider {provider} is not a subsystem")
            if service.id in service_map:
                raise GlobalConfigurationInvalid(f"{where}: {service.id} is listed twice")
            service_map[service.id] = service
            by_provider.setdefault(provider, []).append(service)
        return GlobalConfiguration(
            instance,
            MappingProxyType(member_map),
            MappingProxyType(server_map),
            MappingProxyType(service_map),
            MappingProxyType({k: tuple(v) for k, v in by_owner.items()}),
            MappingProxyType({k: tuple(v) for k, v in by_provider.items()}),
        )

    def has_subsystem(self, subsystem: SubsystemId) -> bool:
        """Whether ``subsystem`` is registered."""
        member = self.members.get(subsystem.member)
        return member is not None and subsystem.subsystem_code in member.subsystems

    def servers_of(self, member: MemberId) -> tuple[SecurityServer, ...]:
        """The security servers ``member`` owns, in document order."""
        return self._servers_by_owner.get(member, ())

    def services_of(self, provider: SubsystemId) -> tuple[Service, ...]:
        """The services ``provider`` offers, in document order."""
        return self._services_by_provider.get(provider, ())

    def subsystems(self) -> list[SubsystemId]:
        """Every registered subsystem, ordered by canonical form."""
        return sorted(
            (
                member.id.subsystem(code)
                for member in self.members.values()
                for code in member.subsystems
            ),
            key=str,
        )

    @staticmethod
    def from_json(document: object) -> GlobalConfiguration:
        """Validate a parsed JSON document (see the module docstring).

        Raises:
            GlobalConfigurationInvalid: naming the first offending field.
        """
        root = _object(document, "global configuration")
        version = root.get("version")
        if type(version) is not int or version != 1:
            raise GlobalConfigurationInvalid("version: expected 1")
        instance = _string(root, "instance", "")
        try:
            MemberId(instance, "X", "X")
        except IdentifierError as error:
            raise GlobalConfigurationInvalid(f"instance: {error}") from None
        members = [
            Member(
                _identifier(MemberId.parse, item, "id", f"members[{i}]"),
                _string(item, "name", f"members[{i}]"),
                frozenset(_subsystem_codes(item, f"members[{i}]")),
            )
            for i, item in enumerate(_objects(root, "members"))
        ]
        servers = []
        for i, item in enumerate(_objects(root, "security_servers")):
            where = f"security_servers[{i}]"
            address = item.get("address")
            parse_address(address, f"{where}.address")
            assert isinstance(address, str)
            servers.append(
                SecurityServer(_identifier(SecurityServerId.parse, item, "id", where), address)
            )
        services = []
        for i, item in enumerate(_objects(root, "services")):
            where = f"services[{i}]"
            methods = item.get("methods", [])
            if not isinstance(methods, list) or not all(
                isinstance(m, str) and _METHOD.fullmatch(m) for m in methods
            ):
                raise GlobalConfigurationInvalid(
                    f"{where}.methods: expected a list of method names"
                )
            if len(set(methods)) != len(methods):
                raise GlobalConfigurationInvalid(f"{where}.methods: a method is listed twice")
            description = item.get("description", "")
            if not isinstance(description, str):
                raise GlobalConfigurationInvalid(f"{where}.description: expected a string")
            services.append(
                Service(
                    _identifier(ServiceId.parse, item, "id", where), tuple(methods), description
                )
            )
        return GlobalConfiguration.build(instance, members, servers, services)

    def to_json(self) -> dict[str, Any]:
        """The JSON document :meth:`from_json` reads."""
        return {
            "version": 1,
            "instance": self.instance,
            "members": [
                {"id": str(m.id), "name": m.name, "subsystems": sorted(m.subsystems)}
                for m in self.members.values()
            ],
            "security_servers": [
                {"id": str(s.id), "address": s.address} for s in self.security_servers.values()
            ],
            "services": [
                {"id": str(s.id), "methods": list(s.methods), "description": s.description}
                for s in self.services.values()
            ],
        }

    @staticmethod
    def load(path: Path) -> GlobalConfiguration:
        """Read and validate a JSON file.

        Raises:
            GlobalConfigurationInvalid: unreadable, not JSON, or invalid.
        """
        try:
            document = json.loads(path.read_bytes())
        except OSError as error:
            raise GlobalConfigurationInvalid(f"{path}: {error.strerror}") from error
        except (ValueError, RecursionError) as error:
            raise GlobalConfigurationInvalid(f"{path}: not JSON: {error}") from None
        return GlobalConfiguration.from_json(document)


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GlobalConfigurationInvalid(f"{where}: expected an object")
    return value


def _objects(root: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = root.get(key, [])
    if not isinstance(items, list):
        raise GlobalConfigurationInvalid(f"{key}: expected a list")
    return [_object(item, f"{key}[{i}]") for i, item in enumerate(items)]


def _string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        name = f"{where}.{key}" if where else key
        raise GlobalConfigurationInvalid(f"{name}: expected a non-empty string")
    return value


def _identifier(parse: Callable[[object], T], item: dict[str, Any], key: str, where: str) -> T:
    try:
        parsed = parse(item.get(key))
    except IdentifierError as error:
        raise GlobalConfigurationInvalid(f"{where}.{key}: {error}") from error
    return parsed


def _subsystem_codes(item: dict[str, Any], where: str) -> list[str]:
    codes = item.get("subsystems", [])
    if not isinstance(codes, list):
        raise GlobalConfigurationInvalid(f"{where}.subsystems: expected a list")
    member = item.get("id")
    for i, code in enumerate(codes):
        name = f"{where}.subsystems[{i}]"
        if not isinstance(code, str):
            raise GlobalConfigurationInvalid(f"{name}: expected a string")
        try:
            SubsystemId.parse(f"{member}/{code}")
        except IdentifierError as error:
            raise GlobalConfigurationInvalid(f"{name}: {error}") from None
        if code in codes[:i]:
            raise GlobalConfigurationInvalid(f"{name}: {code} is listed twice")
    return codes
