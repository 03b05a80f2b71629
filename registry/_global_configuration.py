"""The global configuration: who the members are, their subsystems, servers and services.

Every gateway routes and authenticates from this document. The JSON form (``version`` 1)::

    {
      "version": 1,
      "instance": "DEMO",
      "members": [{"id": "DEMO/GOV/POPREG", "name": "Population Registry",
                   "subsystems": ["civilregistry"]}],
      "security_servers": [{"id": "DEMO/GOV/POPREG/ss1", "addresses": ["127.0.0.1:7101"],
                            "certificates_sha256": ["9f86d0..."]}],
      "services": [{"id": "DEMO/GOV/POPREG/civilregistry/popreg.v1.CivilRegistry",
                    "methods": ["GetPerson"], "description": "...",
                    "personal_data": true, "data_categories": ["identity", "address"],
                    "purposes": ["birth-support"], "consent_required": false,
                    "legal_basis": "Population Administration Act, art. 58"}],
      "global_groups": [{"code": "welfare-agencies", "description": "...",
                         "members": ["DEMO/GOV/WELFARE/birthsupport"]}]
    }

(a server may give one ``address`` instead of ``addresses``; every key but ``id`` is optional
in servers, services and groups). Security server and service owners must be listed members; a
service's provider and a group's members must be listed subsystems; a certificate belongs to one
server; every identifier is in its canonical form and belongs to ``instance``. This is the
operators' import format (``pintu registry import``); security servers receive the same content
as a signed snapshot (``registry._snapshot``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

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
    """A registered security server: where its peer listener is reached (the first address is
    preferred), the SHA-256 of the authentication certificates it may present, and the codes of
    the owner's subsystems it serves (empty: all of them)."""

    id: SecurityServerId
    addresses: tuple[str, ...]
    certificates: frozenset[bytes] = frozenset()
    subsystems: frozenset[str] = frozenset()

    @property
    def address(self) -> str:
        """The preferred address."""
        return self.addresses[0]


@dataclass(frozen=True, slots=True)
class Service:
    """A service a provider subsystem offers, with the facts policy and consent decide on."""

    id: ServiceId
    methods: tuple[str, ...]
    description: str
    personal_data: bool = False
    data_categories: tuple[str, ...] = ()
    purposes: tuple[str, ...] = ()
    consent_required: bool = False
    legal_basis: str = ""
    # The file among the configuration's descriptor files that defines the service.
    descriptor_file: str = ""


@dataclass(frozen=True, slots=True)
class GlobalGroup:
    """A federation-wide group of subsystems (e.g. "all municipalities"), named by a code."""

    code: str
    description: str
    members: frozenset[SubsystemId]


_NO_GROUPS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class GlobalConfiguration:
    """An immutable, validated global configuration with O(1) look-ups for the exchange path.

    ``version``, ``built_at`` and ``expires_at`` come from the registry's signed snapshot; a
    configuration built otherwise (tests, imports) has version 0 and never expires.
    """

    instance: str
    members: Mapping[MemberId, Member]
    security_servers: Mapping[SecurityServerId, SecurityServer]
    services: Mapping[ServiceId, Service]
    groups: Mapping[str, GlobalGroup]
    descriptor_files: tuple[bytes, ...]
    version: int
    built_at: dt.datetime | None
    expires_at: dt.datetime | None
    _servers_by_owner: Mapping[MemberId, tuple[SecurityServer, ...]] = field(repr=False)
    _servers_by_subsystem: Mapping[SubsystemId, tuple[SecurityServer, ...]] = field(repr=False)
    _services_by_provider: Mapping[SubsystemId, tuple[Service, ...]] = field(repr=False)
    _groups_of: Mapping[SubsystemId, frozenset[str]] = field(repr=False)
    _certificate_owners: Mapping[bytes, SecurityServerId] = field(repr=False)

    @staticmethod
    def build(
        instance: str,
        members: list[Member],
        security_servers: list[SecurityServer],
        services: list[Service],
        groups: list[GlobalGroup] | tuple[GlobalGroup, ...] = (),
        *,
        descriptor_files: tuple[bytes, ...] = (),
        version: int = 0,
        built_at: dt.datetime | None = None,
        expires_at: dt.datetime | None = None,
    ) -> GlobalConfiguration:
        """Check the parts against each other and index them.

        Raises:
            GlobalConfigurationInvalid: duplicates, unknown owners or providers, other instance,
                a certificate registered for two servers, groups of unknown subsystems.
        """
        member_map: dict[MemberId, Member] = {}
        for index, member in enumerate(members):
            where = f"members[{index}]"
            if member.id.instance != instance:
                raise GlobalConfigurationInvalid(f"{where}.id: {member.id} is not in {instance}")
            if member.id in member_map:
                raise GlobalConfigurationInvalid(f"{where}.id: {member.id} is listed twice")
            member_map[member.id] = member

        def registered(subsystem: SubsystemId) -> bool:
            owner = member_map.get(subsystem.member)
            return owner is not None and subsystem.subsystem_code in owner.subsystems

        server_map: dict[SecurityServerId, SecurityServer] = {}
        by_owner: dict[MemberId, list[SecurityServer]] = {}
        owners: dict[bytes, SecurityServerId] = {}
        by_subsystem: dict[SubsystemId, list[SecurityServer]] = {}
        for index, server in enumerate(security_servers):
            where = f"security_servers[{index}]"
            if server.id.owner not in member_map:
                raise GlobalConfigurationInvalid(
                    f"{where}.id: owner {server.id.owner} is not a member"
                )
            if server.id in server_map:
                raise GlobalConfigurationInvalid(f"{where}.id: {server.id} is listed twice")
            if not server.addresses:
                raise GlobalConfigurationInvalid(f"{where}.addresses: at least one is needed")
            for position, address in enumerate(server.addresses):
                parse_address(address, f"{where}.addresses[{position}]")
            for fingerprint in server.certificates:
                if len(fingerprint) != 32:
                    raise GlobalConfigurationInvalid(
                        f"{where}.certificates: a SHA-256 fingerprint has 32 bytes"
                    )
                other = owners.get(fingerprint)
                if other is not None:
                    raise GlobalConfigurationInvalid(
                        f"{where}.certificates: certificate {fingerprint.hex()[:16]}... is "
                        f"registered for {other} already"
                    )
                owners[fingerprint] = server.id
            served = server.subsystems or member_map[server.id.owner].subsystems
            for code in sorted(served):
                try:
                    subsystem = server.id.owner.subsystem(code)
                except IdentifierError as error:
                    raise GlobalConfigurationInvalid(f"{where}.subsystems: {error}") from None
                if not registered(subsystem):
                    raise GlobalConfigurationInvalid(
                        f"{where}.subsystems: {subsystem} is not a registered subsystem"
                    )
                by_subsystem.setdefault(subsystem, []).append(server)
            server_map[server.id] = server
            by_owner.setdefault(server.id.owner, []).append(server)
        files = _descriptor_names(descriptor_files)
        service_map: dict[ServiceId, Service] = {}
        by_provider: dict[SubsystemId, list[Service]] = {}
        for index, service in enumerate(services):
            where = f"services[{index}]"
            provider = service.id.provider
            if not registered(provider):
                raise GlobalConfigurationInvalid(
                    f"{where}.id: provider {provider} is not a subsystem"
                )
            if service.id in service_map:
                raise GlobalConfigurationInvalid(f"{where}.id: {service.id} is listed twice")
            _check_service(service, files, where)
            service_map[service.id] = service
            by_provider.setdefault(provider, []).append(service)
        group_map: dict[str, GlobalGroup] = {}
        groups_of: dict[SubsystemId, set[str]] = {}
        for index, group in enumerate(groups):
            where = f"global_groups[{index}]"
            if not _TOKEN.fullmatch(group.code):
                raise GlobalConfigurationInvalid(f"{where}.code: {group.code!r} is not a code")
            if group.code in group_map:
                raise GlobalConfigurationInvalid(f"{where}.code: {group.code} is listed twice")
            for subsystem in sorted(group.members, key=str):
                if not registered(subsystem):
                    raise GlobalConfigurationInvalid(
                        f"{where}.members: {subsystem} is not a registered subsystem"
                    )
                groups_of.setdefault(subsystem, set()).add(group.code)
            group_map[group.code] = group
        return GlobalConfiguration(
            instance,
            MappingProxyType(member_map),
            MappingProxyType(server_map),
            MappingProxyType(service_map),
            MappingProxyType(group_map),
            tuple(descriptor_files),
            version,
            built_at,
            expires_at,
            MappingProxyType({k: tuple(v) for k, v in by_owner.items()}),
            MappingProxyType({k: tuple(v) for k, v in by_subsystem.items()}),
            MappingProxyType({k: tuple(v) for k, v in by_provider.items()}),
            MappingProxyType({k: frozenset(v) for k, v in groups_of.items()}),
            MappingProxyType(owners),
        )

    def has_subsystem(self, subsystem: SubsystemId) -> bool:
        """Whether ``subsystem`` is registered."""
        member = self.members.get(subsystem.member)
        return member is not None and subsystem.subsystem_code in member.subsystems

    def servers_of(self, member: MemberId) -> tuple[SecurityServer, ...]:
        """The security servers ``member`` owns, in document order."""
        return self._servers_by_owner.get(member, ())

    def servers_for(self, subsystem: SubsystemId) -> tuple[SecurityServer, ...]:
        """The security servers that serve ``subsystem``, in document order."""
        return self._servers_by_subsystem.get(subsystem, ())

    def services_of(self, provider: SubsystemId) -> tuple[Service, ...]:
        """The services ``provider`` offers, in document order."""
        return self._services_by_provider.get(provider, ())

    def groups_of(self, subsystem: SubsystemId) -> frozenset[str]:
        """The codes of the global groups ``subsystem`` belongs to."""
        return self._groups_of.get(subsystem, _NO_GROUPS)

    def server_with_certificate(self, sha256: bytes) -> SecurityServerId | None:
        """The security server an authentication certificate (its SHA-256) is registered for."""
        return self._certificate_owners.get(sha256)

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

    def expired(self, now: dt.datetime) -> bool:
        """Whether the configuration must no longer be used."""
        return self.expires_at is not None and now >= self.expires_at

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
        servers = [
            _server_from_json(item, f"security_servers[{i}]")
            for i, item in enumerate(_objects(root, "security_servers"))
        ]
        services = [
            _service_from_json(item, f"services[{i}]")
            for i, item in enumerate(_objects(root, "services"))
        ]
        groups = [
            GlobalGroup(
                _string(item, "code", f"global_groups[{i}]"),
                _optional_string(item, "description", f"global_groups[{i}]"),
                frozenset(
                    _member_of_group(m, f"global_groups[{i}].members[{j}]")
                    for j, m in enumerate(_strings(item, "members", f"global_groups[{i}]"))
                ),
            )
            for i, item in enumerate(_objects(root, "global_groups"))
        ]
        return GlobalConfiguration.build(instance, members, servers, services, groups)

    def to_json(self) -> dict[str, Any]:
        """The JSON document :meth:`from_json` reads (descriptor files are not part of it)."""
        return {
            "version": 1,
            "instance": self.instance,
            "members": [
                {"id": str(m.id), "name": m.name, "subsystems": sorted(m.subsystems)}
                for m in self.members.values()
            ],
            "security_servers": [
                {
                    "id": str(s.id),
                    "addresses": list(s.addresses),
                    "certificates_sha256": sorted(c.hex() for c in s.certificates),
                    "subsystems": sorted(s.subsystems),
                }
                for s in self.security_servers.values()
            ],
            "services": [
                {
                    "id": str(s.id),
                    "methods": list(s.methods),
                    "description": s.description,
                    "personal_data": s.personal_data,
                    "data_categories": list(s.data_categories),
                    "purposes": list(s.purposes),
                    "consent_required": s.consent_required,
                    "legal_basis": s.legal_basis,
                }
                for s in self.services.values()
            ],
            "global_groups": [
                {
                    "code": g.code,
                    "description": g.description,
                    "members": sorted(str(m) for m in g.members),
                }
                for g in self.groups.values()
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


_TOKEN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")
_LEGAL_BASIS = re.compile(r"[^\x00-\x1f\x7f]{0,500}")


def _descriptor_names(files: tuple[bytes, ...]) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    named: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for index, raw in enumerate(files):
        parsed = descriptor_pb2.FileDescriptorProto()
        try:
            parsed.ParseFromString(raw)
        except DecodeError as error:
            raise GlobalConfigurationInvalid(f"descriptor_files[{index}]: {error}") from None
        if not parsed.name or parsed.name in named:
            raise GlobalConfigurationInvalid(
                f"descriptor_files[{index}]: a file needs a name, unique in the configuration"
            )
        named[parsed.name] = parsed
    for name, parsed in named.items():
        missing = [dependency for dependency in parsed.dependency if dependency not in named]
        if missing:
            raise GlobalConfigurationInvalid(
                f"descriptor_files: {name} imports {', '.join(missing)}, which is not among them"
            )
    return named


def _check_service(
    service: Service, files: dict[str, descriptor_pb2.FileDescriptorProto], where: str
) -> None:
    methods = service.methods
    if not all(_METHOD.fullmatch(m) for m in methods):
        raise GlobalConfigurationInvalid(f"{where}.methods: expected method names")
    if len(set(methods)) != len(methods):
        raise GlobalConfigurationInvalid(f"{where}.methods: a method is listed twice")
    for key, values in (
        ("data_categories", service.data_categories),
        ("purposes", service.purposes),
    ):
        bad = next((v for v in values if not _TOKEN.fullmatch(v)), None)
        if bad is not None:
            raise GlobalConfigurationInvalid(f"{where}.{key}: {bad!r} is not a code")
        if len(set(values)) != len(values):
            raise GlobalConfigurationInvalid(f"{where}.{key}: a code is listed twice")
    if not _LEGAL_BASIS.fullmatch(service.legal_basis):
        raise GlobalConfigurationInvalid(f"{where}.legal_basis: at most 500 printable characters")
    if service.consent_required and not service.personal_data:
        raise GlobalConfigurationInvalid(
            f"{where}.consent_required: only a service handling personal data asks for consent"
        )
    if service.descriptor_file:
        descriptor = files.get(service.descriptor_file)
        if descriptor is None:
            raise GlobalConfigurationInvalid(
                f"{where}.descriptor_file: {service.descriptor_file} is not among the files"
            )
        package, _, name = service.id.service_name.rpartition(".")
        defined = next((s for s in descriptor.service if s.name == name), None)
        if descriptor.package != package or defined is None:
            raise GlobalConfigurationInvalid(
                f"{where}.descriptor_file: {service.descriptor_file} does not define "
                f"{service.id.service_name}"
            )
        unknown = sorted(set(methods) - {m.name for m in defined.method})
        if unknown:
            raise GlobalConfigurationInvalid(
                f"{where}.methods: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'}"
                f" not a method of {service.id.service_name}"
            )


def _server_from_json(item: dict[str, Any], where: str) -> SecurityServer:
    if "address" in item and "addresses" in item:
        raise GlobalConfigurationInvalid(f"{where}: give address or addresses, not both")
    addresses = [item.get("address")] if "address" in item else item.get("addresses")
    if not isinstance(addresses, list) or not addresses:
        raise GlobalConfigurationInvalid(f"{where}.addresses: expected a list of host:port")
    for position, address in enumerate(addresses):
        parse_address(address, f"{where}.addresses[{position}]")
    fingerprints = []
    for position, text in enumerate(_strings(item, "certificates_sha256", where)):
        try:
            fingerprint = bytes.fromhex(text)
        except ValueError:
            raise GlobalConfigurationInvalid(
                f"{where}.certificates_sha256[{position}]: not hex"
            ) from None
        fingerprints.append(fingerprint)
    return SecurityServer(
        _identifier(SecurityServerId.parse, item, "id", where),
        tuple(addresses),
        frozenset(fingerprints),
        frozenset(_strings(item, "subsystems", where)),
    )


def _service_from_json(item: dict[str, Any], where: str) -> Service:
    methods = item.get("methods", [])
    if not isinstance(methods, list) or not all(
        isinstance(m, str) and _METHOD.fullmatch(m) for m in methods
    ):
        raise GlobalConfigurationInvalid(f"{where}.methods: expected a list of method names")
    if len(set(methods)) != len(methods):
        raise GlobalConfigurationInvalid(f"{where}.methods: a method is listed twice")
    return Service(
        _identifier(ServiceId.parse, item, "id", where),
        tuple(methods),
        _optional_string(item, "description", where),
        personal_data=_flag(item, "personal_data", where),
        data_categories=tuple(_strings(item, "data_categories", where)),
        purposes=tuple(_strings(item, "purposes", where)),
        consent_required=_flag(item, "consent_required", where),
        legal_basis=_optional_string(item, "legal_basis", where),
    )


def _optional_string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key, "")
    if not isinstance(value, str):
        raise GlobalConfigurationInvalid(f"{where}.{key}: expected a string")
    return value


def _flag(item: dict[str, Any], key: str, where: str) -> bool:
    value = item.get(key, False)
    if not isinstance(value, bool):
        raise GlobalConfigurationInvalid(f"{where}.{key}: expected true or false")
    return value


def _strings(item: dict[str, Any], key: str, where: str) -> list[str]:
    values = item.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise GlobalConfigurationInvalid(f"{where}.{key}: expected a list of strings")
    return values


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


def _member_of_group(text: str, where: str) -> SubsystemId:
    try:
        return SubsystemId.parse(text)
    except IdentifierError as error:
        raise GlobalConfigurationInvalid(f"{where}: {error}") from error


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
