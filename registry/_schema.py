"""The registry's tables (SQLAlchemy Core). Migrations in ``registry/migrations`` create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

state = Table(
    "registry_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("instance", String(64), nullable=False),
    Column("version", BigInteger, nullable=False),
)

members = Table(
    "members",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("name", Text, nullable=False),
)

subsystems = Table(
    "subsystems",
    metadata,
    Column("member", String(200), ForeignKey("members.id", ondelete="CASCADE"), primary_key=True),
    Column("code", String(64), primary_key=True),
)

servers = Table(
    "security_servers",
    metadata,
    Column("id", String(270), primary_key=True),
    Column("owner", String(200), ForeignKey("members.id"), nullable=False),
    # Codes of the owner's subsystems it serves, space-separated; empty: all of them.
    Column("subsystems", Text, nullable=False),
)

addresses = Table(
    "server_addresses",
    metadata,
    Column(
        "server",
        String(270),
        ForeignKey("security_servers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", Integer, primary_key=True),
    Column("address", String(300), nullable=False),
)

certificates = Table(
    "server_certificates",
    metadata,
    Column("sha256", LargeBinary(32), primary_key=True),
    Column(
        "server",
        String(270),
        ForeignKey("security_servers.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
)

services = Table(
    "services",
    metadata,
    Column("id", String(500), primary_key=True),
    Column("provider", String(270), nullable=False, index=True),
    Column("description", Text, nullable=False),
    Column("methods", Text, nullable=False),
    Column("personal_data", Boolean, nullable=False),
    Column("data_categories", Text, nullable=False),
    Column("purposes", Text, nullable=False),
    Column("consent_required", Boolean, nullable=False),
    Column("legal_basis", Text, nullable=False),
    Column("descriptor_file", String(500), nullable=False),
)

descriptor_files = Table(
    "descriptor_files",
    metadata,
    Column("name", String(500), primary_key=True),
    Column("content", LargeBinary, nullable=False),
)

groups = Table(
    "global_groups",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("description", Text, nullable=False),
)

group_members = Table(
    "global_group_members",
    metadata,
    Column(
        "code", String(64), ForeignKey("global_groups.code", ondelete="CASCADE"), primary_key=True
    ),
    Column("subsystem", String(270), primary_key=True),
)

journal = Table(
    "journal",
    metadata,
    Column("version", BigInteger, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("changes", Text, nullable=False),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("built_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("blob", LargeBinary, nullable=False),
)
