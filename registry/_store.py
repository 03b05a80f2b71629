"""The registry's storage: SQLite by default, PostgreSQL for a highly available registry.

One database (an SQLAlchemy URL: ``sqlite:///path`` or ``postgresql+psycopg://...``) holds the
current registry, the journal of every change (one version per change batch), and the signed
snapshots. The schema is created and upgraded by Alembic when the store opens. Several registry
processes may share a PostgreSQL database: each change batch locks the state row, so versions
stay strictly increasing and no change is lost.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from google.protobuf import descriptor_pb2
from sqlalchemy import Connection, Engine, create_engine, delete, event, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from proto import MemberId, SecurityServerId, ServiceId, SubsystemId
from proto.pintu.v1 import registry_pb2
from registry import _schema as t
from registry._changes import apply_changes, describe
from registry._errors import ChangeRefused, RegistryError, RegistryUnavailable
from registry._global_configuration import (
    GlobalConfiguration,
    GlobalGroup,
    Member,
    SecurityServer,
    Service,
)


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One applied change batch."""

    version: int
    at: dt.datetime
    actor: str
    reason: str
    changes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    """The latest signed snapshot."""

    version: int
    built_at: dt.datetime
    expires_at: dt.datetime
    blob: bytes


def _aware(moment: dt.datetime) -> dt.datetime:
    # SQLite keeps no time zone: everything stored is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration."""
    # Imported here: only a registry process opens its database, and Alembic takes a quarter of
    # a second to import (every `pintu` command would pay it).
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("registry") / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class RegistryStore:
    """The registry's database (see the module docstring)."""

    def __init__(self, url: str, instance: str) -> None:
        self._latest: tuple[int, GlobalConfiguration] | None = None
        try:
            self._engine = create_engine(url)
            if self._engine.dialect.name == "sqlite":
                event.listen(self._engine, "connect", _sqlite_pragmas)
            migrate(self._engine)
            with self._engine.begin() as connection:
                row = connection.execute(select(t.state)).first()
                if row is None:
                    connection.execute(insert(t.state).values(id=1, instance=instance, version=0))
                elif row.instance != instance:
                    raise RegistryUnavailable(
                        f"the database holds the registry of {row.instance}, not {instance}"
                    )
        except (SQLAlchemyError, RegistryError) as error:
            if hasattr(self, "_engine"):
                self._engine.dispose()
            if isinstance(error, RegistryError):
                raise
            raise RegistryUnavailable(f"registry database: {error}") from error
        self.instance = instance

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    # -- reading -------------------------------------------------------------------------------

    def version(self) -> int:
        """The current version (0 before the first change)."""
        try:
            with self._engine.connect() as connection:
                return int(connection.execute(select(t.state.c.version)).scalar_one())
        except SQLAlchemyError as error:
            raise RegistryUnavailable(f"registry database: {error}") from error

    def load(self) -> tuple[int, GlobalConfiguration]:
        """The current version and content."""
        try:
            with self._engine.connect() as connection:
                loaded = self._load(connection)
        except SQLAlchemyError as error:
            raise RegistryUnavailable(f"registry database: {error}") from error
        self._latest = loaded
        return loaded

    def _load(self, connection: Connection) -> tuple[int, GlobalConfiguration]:
        version = int(connection.execute(select(t.state.c.version)).scalar_one())
        codes: dict[str, set[str]] = {}
        for row in connection.execute(select(t.subsystems)):
            codes.setdefault(row.member, set()).add(row.code)
        members = [
            Member(MemberId.parse(row.id), row.name, frozenset(codes.get(row.id, ())))
            for row in connection.execute(select(t.members).order_by(t.members.c.id))
        ]
        addresses: dict[str, list[tuple[int, str]]] = {}
        for row in connection.execute(select(t.addresses)):
            addresses.setdefault(row.server, []).append((row.position, row.address))
        fingerprints: dict[str, set[bytes]] = {}
        for row in connection.execute(select(t.certificates)):
            fingerprints.setdefault(row.server, set()).add(bytes(row.sha256))
        servers = [
            SecurityServer(
                SecurityServerId.parse(row.id),
                tuple(a for _, a in sorted(addresses.get(row.id, []))),
                frozenset(fingerprints.get(row.id, ())),
                frozenset(row.subsystems.split()),
            )
            for row in connection.execute(select(t.servers).order_by(t.servers.c.id))
        ]
        services = [
            Service(
                ServiceId.parse(row.id),
                tuple(json.loads(row.methods)),
                row.description,
                personal_data=row.personal_data,
                data_categories=tuple(json.loads(row.data_categories)),
                purposes=tuple(json.loads(row.purposes)),
                consent_required=row.consent_required,
                legal_basis=row.legal_basis,
                descriptor_file=row.descriptor_file,
            )
            for row in connection.execute(select(t.services).order_by(t.services.c.id))
        ]
        group_members: dict[str, set[SubsystemId]] = {}
        for row in connection.execute(select(t.group_members)):
            group_members.setdefault(row.code, set()).add(SubsystemId.parse(row.subsystem))
        groups = [
            GlobalGroup(row.code, row.description, frozenset(group_members.get(row.code, ())))
            for row in connection.execute(select(t.groups).order_by(t.groups.c.code))
        ]
        files = tuple(
            bytes(row.content)
            for row in connection.execute(
                select(t.descriptor_files).order_by(t.descriptor_files.c.name)
            )
        )
        configuration = GlobalConfiguration.build(
            self.instance,
            members,
            servers,
            services,
            groups,
            descriptor_files=files,
            version=version,
        )
        return version, configuration

    def journal(self, after: int = 0) -> list[JournalRecord]:
        """The change batches after version ``after``, oldest first."""
        try:
            with self._engine.connect() as connection:
                rows = connection.execute(
                    select(t.journal)
                    .where(t.journal.c.version > after)
                    .order_by(t.journal.c.version)
                ).all()
        except SQLAlchemyError as error:
            raise RegistryUnavailable(f"registry database: {error}") from error
        return [
            JournalRecord(
                row.version, _aware(row.at), row.actor, row.reason, tuple(json.loads(row.changes))
            )
            for row in rows
        ]

    # -- changing ------------------------------------------------------------------------------

    def apply(
        self,
        changes: list[registry_pb2.RegistryChange],
        *,
        actor: str,
        reason: str,
        now: dt.datetime,
    ) -> tuple[int, GlobalConfiguration]:
        """Apply a batch of changes as one new version, journaled with who and why.

        Raises:
            ChangeRefused: the batch is inconsistent with the registry.
            RegistryUnavailable: the database failed.
        """
        if not changes:
            raise ChangeRefused("no change given")
        try:
            with self._engine.begin() as connection:
                version = int(
                    connection.execute(select(t.state.c.version).with_for_update()).scalar_one()
                )
                # The content this process last read or wrote is the database's as long as the
                # version has not moved (the row is locked): a change then costs no reload.
                latest = self._latest
                if latest is not None and latest[0] == version:
                    current = latest[1]
                else:
                    _, current = self._load(connection)
                changed = apply_changes(current, changes)
                _write(connection, current, changed)
                version += 1
                connection.execute(update(t.state).values(version=version))
                connection.execute(
                    insert(t.journal).values(
                        version=version,
                        at=now.astimezone(dt.UTC),
                        actor=actor,
                        reason=reason,
                        changes=json.dumps([describe(c) for c in changes]),
                    )
                )
        except SQLAlchemyError as error:
            raise RegistryUnavailable(f"registry database: {error}") from error
        result = version, dataclasses.replace(changed, version=version)
        self._latest = result
        return result

    # -- snapshots -----------------------------------------------------------------------------

    def save_snapshot(
        self, version: int, blob: bytes, *, built_at: dt.datetime, expires_at: dt.datetime
    ) -> None:
        """Keep the latest signed snapshot (one row: older ones are not served)."""
        try:
            with self._engine.begin() as connection:
                connection.execute(delete(t.snapshots))
                connection.execute(
                    insert(t.snapshots).values(
                        id=1,
                        version=version,
                        built_at=built_at.astimezone(dt.UTC),
                        expires_at=expires_at.astimezone(dt.UTC),
                        blob=blob,
                    )
                )
        except SQLAlchemyError as error:
            raise RegistryUnavailable(f"registry database: {error}") from error

    def latest_snapshot(self) -> StoredSnapshot | None:
        """The latest signed snapshot, if one was saved."""
        try:
            with self._engine.connect() as connection:
                row = connection.execute(select(t.snapshots)).first()
        except SQLAlchemyError as error:
            raise RegistryUnavailable(f"registry database: {error}") from error
        if row is None:
            return None
        return StoredSnapshot(
            row.version, _aware(row.built_at), _aware(row.expires_at), bytes(row.blob)
        )


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _write(connection: Connection, old: GlobalConfiguration, new: GlobalConfiguration) -> None:
    """Write the differences between two configurations."""
    # Members and their subsystems.
    for member_id in old.members.keys() - new.members.keys():
        connection.execute(delete(t.members).where(t.members.c.id == str(member_id)))
    for member_id, member in new.members.items():
        before = old.members.get(member_id)
        if before == member:
            continue
        key = str(member_id)
        if before is None:
            connection.execute(insert(t.members).values(id=key, name=member.name))
        else:
            connection.execute(
                update(t.members).where(t.members.c.id == key).values(name=member.name)
            )
        gone = (before.subsystems if before else frozenset()) - member.subsystems
        for code in gone:
            connection.execute(
                delete(t.subsystems).where(
                    (t.subsystems.c.member == key) & (t.subsystems.c.code == code)
                )
            )
        for code in member.subsystems - (before.subsystems if before else frozenset()):
            connection.execute(insert(t.subsystems).values(member=key, code=code))
    # Security servers, their addresses and certificates.
    for server_id in old.security_servers.keys() - new.security_servers.keys():
        connection.execute(delete(t.servers).where(t.servers.c.id == str(server_id)))
    added: list[tuple[bytes, str]] = []
    for server_id, server in new.security_servers.items():
        before_server = old.security_servers.get(server_id)
        if before_server == server:
            continue
        key = str(server_id)
        served = " ".join(sorted(server.subsystems))
        if before_server is None:
            connection.execute(
                insert(t.servers).values(id=key, owner=str(server_id.owner), subsystems=served)
            )
        else:
            connection.execute(
                update(t.servers).where(t.servers.c.id == key).values(subsystems=served)
            )
        connection.execute(delete(t.addresses).where(t.addresses.c.server == key))
        for position, address in enumerate(server.addresses):
            connection.execute(
                insert(t.addresses).values(server=key, position=position, address=address)
            )
        earlier = before_server.certificates if before_server else frozenset()
        for fingerprint in earlier - server.certificates:
            connection.execute(delete(t.certificates).where(t.certificates.c.sha256 == fingerprint))
        added.extend((fingerprint, key) for fingerprint in server.certificates - earlier)
    # Only once every certificate that left a server is gone: one may move between servers.
    for fingerprint, key in added:
        connection.execute(insert(t.certificates).values(sha256=fingerprint, server=key))
    # Services.
    for service_id in old.services.keys() - new.services.keys():
        connection.execute(delete(t.services).where(t.services.c.id == str(service_id)))
    for service_id, service in new.services.items():
        before_service = old.services.get(service_id)
        if before_service == service:
            continue
        values = {
            "provider": str(service_id.provider),
            "description": service.description,
            "methods": json.dumps(list(service.methods)),
            "personal_data": service.personal_data,
            "data_categories": json.dumps(list(service.data_categories)),
            "purposes": json.dumps(list(service.purposes)),
            "consent_required": service.consent_required,
            "legal_basis": service.legal_basis,
            "descriptor_file": service.descriptor_file,
        }
        if before_service is None:
            connection.execute(insert(t.services).values(id=str(service_id), **values))
        else:
            connection.execute(
                update(t.services).where(t.services.c.id == str(service_id)).values(**values)
            )

    # Descriptor files (kept only while a service needs them).
    def named(files: tuple[bytes, ...]) -> dict[str, bytes]:
        return {descriptor_pb2.FileDescriptorProto.FromString(f).name: f for f in files}

    old_files, new_files = named(old.descriptor_files), named(new.descriptor_files)
    for name in old_files.keys() - new_files.keys():
        connection.execute(delete(t.descriptor_files).where(t.descriptor_files.c.name == name))
    for name, content in new_files.items():
        if old_files.get(name) == content:
            continue
        connection.execute(delete(t.descriptor_files).where(t.descriptor_files.c.name == name))
        connection.execute(insert(t.descriptor_files).values(name=name, content=content))
    # Global groups.
    for code in old.groups.keys() - new.groups.keys():
        connection.execute(delete(t.groups).where(t.groups.c.code == code))
    for code, group in new.groups.items():
        before_group = old.groups.get(code)
        if before_group == group:
            continue
        if before_group is None:
            connection.execute(insert(t.groups).values(code=code, description=group.description))
        else:
            connection.execute(
                update(t.groups)
                .where(t.groups.c.code == code)
                .values(description=group.description)
            )
        connection.execute(delete(t.group_members).where(t.group_members.c.code == code))
        for subsystem in group.members:
            connection.execute(insert(t.group_members).values(code=code, subsystem=str(subsystem)))
