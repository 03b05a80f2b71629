"""The consent service's tables (SQLAlchemy Core). Migrations in ``consent/migrations`` create
them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# One row: the position of the latest change. Every write locks it, so positions are committed
# in order and a watcher reading "after position N" never misses a change committed later.
state = Table(
    "consent_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("position", BigInteger, nullable=False),
)

consents = Table(
    "consents",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("subject", String(128), nullable=False, index=True),
    Column("provider_member", String(200), nullable=False),
    Column("detail", Text, nullable=False),
    Column("receipt", Text, nullable=False),
    Column("request_id", String(128), unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("valid_until", DateTime(timezone=True), nullable=False),
    # The position of the consent's latest change, and its latest recorded status.
    Column("position", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Index("consents_by_provider", "provider_member", "position"),
)

events = Table(
    "consent_events",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("consent_id", String(36), ForeignKey("consents.id"), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("request_id", String(128), unique=True),
)
