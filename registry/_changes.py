"""Operators' changes to the registry, applied to a configuration (pure: no storage, no time).

Each ``pintu.v1.RegistryChange`` either puts (creates or replaces) or removes one part. A batch
is applied as a whole: the result must pass every check of a global configuration, or the whole
batch is refused with :class:`ChangeRefused`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from proto import IdentifierError, MemberId, SecurityServerId, ServiceId, SubsystemId
from proto.pintu.v1 import registry_pb2
from registry._errors import ChangeRefused, GlobalConfigurationInvalid
from registry._global_configuration import (
    GlobalConfiguration,
    GlobalGroup,
    Member,
    SecurityServer,
    Service,
)


class _Draft:
    """A configuration being changed: plain dictionaries, rebuilt and checked at the end."""

    def __init__(self, configuration: GlobalConfiguration) -> None:
        self.instance = configuration.instance
        self.members = dict(configuration.members)
        self.servers = dict(configuration.security_servers)
        self.services = dict(configuration.services)
        self.groups = dict(configuration.groups)
        self.files: dict[str, bytes] = {}
        for raw in configuration.descriptor_files:
            self.files[descriptor_pb2.FileDescriptorProto.FromString(raw).name] = raw

    def build(self) -> GlobalConfiguration:
        used = _needed_files(
            {s.descriptor_file for s in self.services.values() if s.descriptor_file}, self.files
        )
        return GlobalConfiguration.build(
            self.instance,
            list(self.members.values()),
            list(self.servers.values()),
            list(self.services.values()),
            list(self.groups.values()),
            descriptor_files=tuple(self.files[name] for name in sorted(used)),
        )


def _needed_files(roots: set[str], files: dict[str, bytes]) -> set[str]:
    needed: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in needed or name not in files:
            continue
        needed.add(name)
        pending.extend(descriptor_pb2.FileDescriptorProto.FromString(files[name]).dependency)
    return needed


def certificate_fingerprint(der: bytes) -> bytes:
    """SHA-256 of a DER certificate: how the registry names a server's certificate."""
    return hashlib.sha256(der).digest()


def _service(registration: registry_pb2.ServiceRegistration, draft: _Draft) -> Service:
    message = registration.service
    service_id = ServiceId.from_proto(message.id)
    descriptor_file = ""
    methods = tuple(message.methods)
    if registration.HasField("descriptors"):
        for file in registration.descriptors.file:
            raw = file.SerializeToString(deterministic=True)
            known = draft.files.get(file.name)
            if (
                known is not None
                and known != raw
                and any(
                    s.descriptor_file == file.name and s.id != service_id
                    for s in draft.services.values()
                )
            ):
                raise ChangeRefused(
                    f"descriptor file {file.name} differs from the one other services use"
                )
            draft.files[file.name] = raw
        package, _, name = service_id.service_name.rpartition(".")
        defining = [
            f
            for f in registration.descriptors.file
            if f.package == package and any(s.name == name for s in f.service)
        ]
        if len(defining) != 1:
            raise ChangeRefused(
                f"the descriptors must define {service_id.service_name} exactly once"
            )
        descriptor_file = defining[0].name
        if not methods:
            methods = tuple(m.name for s in defining[0].service if s.name == name for m in s.method)
    return Service(
        service_id,
        methods,
        message.description,
        personal_data=message.personal_data,
        data_categories=tuple(message.data_categories),
        purposes=tuple(message.purposes),
        consent_required=message.consent_required,
        legal_basis=message.legal_basis,
        descriptor_file=descriptor_file,
    )


def _apply(change: registry_pb2.RegistryChange, draft: _Draft) -> None:
    kind = change.WhichOneof("change")
    if kind == "put_member":
        member = MemberId.from_proto(change.put_member.id)
        subsystems = frozenset(change.put_member.subsystems)
        known = draft.members.get(member)
        if not subsystems and known is not None:
            # A rename: the member keeps its subsystems (like a server put keeps its
            # certificates); `remove_subsystem` takes them away.
            subsystems = known.subsystems
        draft.members[member] = Member(member, change.put_member.name, subsystems)
    elif kind == "remove_member":
        member = MemberId.from_proto(change.remove_member)
        if member not in draft.members:
            raise ChangeRefused(f"{member} is not a member")
        if any(s.owner == member for s in draft.servers):
            raise ChangeRefused(f"{member} still has security servers: remove them first")
        if any(s.provider.member == member for s in draft.services):
            raise ChangeRefused(f"{member} still provides services: remove them first")
        del draft.members[member]
    elif kind in ("add_subsystem", "remove_subsystem"):
        subsystem = SubsystemId.from_proto(getattr(change, kind))
        owner = draft.members.get(subsystem.member)
        if owner is None:
            raise ChangeRefused(f"{subsystem.member} is not a member")
        codes = set(owner.subsystems)
        if kind == "add_subsystem":
            codes.add(subsystem.subsystem_code)
        elif subsystem.subsystem_code not in codes:
            raise ChangeRefused(f"{subsystem} is not a subsystem")
        else:
            codes.discard(subsystem.subsystem_code)
        draft.members[owner.id] = Member(owner.id, owner.name, frozenset(codes))
    elif kind == "put_security_server":
        server = SecurityServerId.from_proto(change.put_security_server.id)
        existing = draft.servers.get(server)
        certificates = frozenset(bytes(c) for c in change.put_security_server.certificate_sha256)
        if not certificates and existing is not None:
            certificates = existing.certificates
        draft.servers[server] = SecurityServer(
            server,
            tuple(change.put_security_server.addresses),
            certificates,
            frozenset(change.put_security_server.subsystems),
        )
    elif kind == "remove_security_server":
        server = SecurityServerId.from_proto(change.remove_security_server)
        if draft.servers.pop(server, None) is None:
            raise ChangeRefused(f"{server} is not a registered security server")
    elif kind in ("add_certificate", "remove_certificate"):
        certificate_change = getattr(change, kind)
        server = SecurityServerId.from_proto(certificate_change.server)
        existing = draft.servers.get(server)
        if existing is None:
            raise ChangeRefused(f"{server} is not a registered security server")
        if kind == "add_certificate":
            fingerprint = certificate_fingerprint(certificate_change.certificate)
            fingerprints = existing.certificates | {fingerprint}
        else:
            fingerprint = bytes(certificate_change.sha256)
            if fingerprint not in existing.certificates:
                raise ChangeRefused(f"{server} has no certificate {fingerprint.hex()}")
            fingerprints = existing.certificates - {fingerprint}
        draft.servers[server] = SecurityServer(
            server, existing.addresses, fingerprints, existing.subsystems
        )
    elif kind == "put_service":
        service = _service(change.put_service, draft)
        draft.services[service.id] = service
    elif kind == "remove_service":
        service_id = ServiceId.from_proto(change.remove_service)
        if draft.services.pop(service_id, None) is None:
            raise ChangeRefused(f"{service_id} is not a registered service")
    elif kind == "put_global_group":
        group = change.put_global_group
        draft.groups[group.code] = GlobalGroup(
            group.code,
            group.description,
            frozenset(SubsystemId.from_proto(m) for m in group.members),
        )
    elif kind == "remove_global_group":
        if draft.groups.pop(change.remove_global_group, None) is None:
            raise ChangeRefused(f"{change.remove_global_group} is not a global group")
    else:
        raise ChangeRefused("an empty change")


def apply_changes(
    configuration: GlobalConfiguration, changes: Iterable[registry_pb2.RegistryChange]
) -> GlobalConfiguration:
    """The configuration after ``changes``, checked as a whole.

    Raises:
        ChangeRefused: a change names unknown parts, a malformed identifier, or the result
            would be inconsistent (the message says why).
    """
    draft = _Draft(configuration)
    for index, change in enumerate(changes):
        try:
            _apply(change, draft)
        except IdentifierError as error:
            raise ChangeRefused(f"change {index + 1}: {error}") from None
        except ChangeRefused as error:
            raise ChangeRefused(f"change {index + 1}: {error}") from None
    try:
        return draft.build()
    except GlobalConfigurationInvalid as error:
        raise ChangeRefused(f"the registry would be inconsistent: {error}") from None


def describe(change: registry_pb2.RegistryChange) -> str:
    """One line of text for the journal."""
    kind = change.WhichOneof("change")
    if kind == "put_member":
        return f"put_member {MemberId.from_proto(change.put_member.id)} {change.put_member.name!r}"
    if kind == "remove_member":
        return f"remove_member {MemberId.from_proto(change.remove_member)}"
    if kind in ("add_subsystem", "remove_subsystem"):
        return f"{kind} {SubsystemId.from_proto(getattr(change, kind))}"
    if kind == "put_security_server":
        registered = change.put_security_server
        return (
            f"put_security_server {SecurityServerId.from_proto(registered.id)} "
            f"{','.join(registered.addresses)}"
            + (
                f" serving {','.join(sorted(registered.subsystems))}"
                if registered.subsystems
                else ""
            )
            + "".join(f" certificate {c.hex()[:16]}" for c in sorted(registered.certificate_sha256))
        )
    if kind == "remove_security_server":
        return (
            f"remove_security_server {SecurityServerId.from_proto(change.remove_security_server)}"
        )
    if kind in ("add_certificate", "remove_certificate"):
        certificate_change = getattr(change, kind)
        fingerprint = (
            certificate_fingerprint(certificate_change.certificate)
            if kind == "add_certificate"
            else bytes(certificate_change.sha256)
        )
        server = SecurityServerId.from_proto(certificate_change.server)
        return f"{kind} {server} {fingerprint.hex()}"
    if kind == "put_service":
        return f"put_service {ServiceId.from_proto(change.put_service.service.id)}"
    if kind == "remove_service":
        return f"remove_service {ServiceId.from_proto(change.remove_service)}"
    if kind == "put_global_group":
        return f"put_global_group {change.put_global_group.code}"
    if kind == "remove_global_group":
        return f"remove_global_group {change.remove_global_group}"
    return "nothing"


def descriptor_set(*files: FileDescriptor) -> descriptor_pb2.FileDescriptorSet:
    """The files (generated modules' ``DESCRIPTOR``) with every file they import, dependencies
    first: what a service registration carries."""
    ordered: list[FileDescriptor] = []
    seen: set[str] = set()

    def visit(file: FileDescriptor) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dependency in file.dependencies:
            visit(dependency)
        ordered.append(file)

    for file in files:
        visit(file)
    result = descriptor_pb2.FileDescriptorSet()
    for file in ordered:
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        result.file.append(proto)
    return result


def import_changes(configuration: GlobalConfiguration) -> list[registry_pb2.RegistryChange]:
    """The changes that put every part of ``configuration`` into a registry (members, servers
    with their certificates, services with their descriptor files, global groups).

    A server listed without certificates keeps those the registry has for it.
    """
    files = {
        descriptor_pb2.FileDescriptorProto.FromString(raw).name: raw
        for raw in configuration.descriptor_files
    }
    changes = [
        registry_pb2.RegistryChange(
            put_member=registry_pb2.RegisteredMember(
                id=member.id.to_proto(), name=member.name, subsystems=sorted(member.subsystems)
            )
        )
        for member in configuration.members.values()
    ]
    changes += [
        registry_pb2.RegistryChange(
            put_security_server=registry_pb2.RegisteredServer(
                id=server.id.to_proto(),
                addresses=list(server.addresses),
                certificate_sha256=sorted(server.certificates),
                subsystems=sorted(server.subsystems),
            )
        )
        for server in configuration.security_servers.values()
    ]
    for service in configuration.services.values():
        registration = registry_pb2.ServiceRegistration(
            service=registry_pb2.RegisteredService(
                id=service.id.to_proto(),
                description=service.description,
                methods=list(service.methods),
                personal_data=service.personal_data,
                data_categories=list(service.data_categories),
                purposes=list(service.purposes),
                consent_required=service.consent_required,
                legal_basis=service.legal_basis,
            )
        )
        if service.descriptor_file:
            needed = _needed_files({service.descriptor_file}, files)
            registration.descriptors.file.extend(
                descriptor_pb2.FileDescriptorProto.FromString(files[name])
                for name in sorted(needed)
            )
        changes.append(registry_pb2.RegistryChange(put_service=registration))
    changes += [
        registry_pb2.RegistryChange(
            put_global_group=registry_pb2.GlobalGroup(
                code=group.code,
                description=group.description,
                members=[m.to_proto() for m in sorted(group.members, key=str)],
            )
        )
        for group in configuration.groups.values()
    ]
    return changes
