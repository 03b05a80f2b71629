"""The consent service's tables (SQLAlchemy Core). Migrations in ``consent/migrations`` create
them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
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

# The citizens' access history, as providers' security servers report it from their audit logs:
# one row per record, keyed by the log (the reporting server) and the record's number in it, so
# a redelivered event is recognised. The citizen is named by pseudonym only.
access = Table(
    "access_events",
    metadata,
    Column("log", String(300), nullable=False),
    Column("seq", BigInteger, nullable=False, autoincrement=False),
    Column("subject", String(64), nullable=False),
    Column("consumer", String(300), nullable=False),
    Column("consumer_server", String(300), nullable=False),
    Column("provider", String(300), nullable=False),
    Column("method", String(320), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("allowed", Boolean, nullable=False),
    Column("code", String(64), nullable=False),
    Column("message_id", String(32), nullable=False),
    Column("checkpoint_size", BigInteger, nullable=False),
    Column("checkpoint_root", String(64), nullable=False),
    PrimaryKeyConstraint("log", "seq", name="access_events_pkey"),
    Index("access_events_by_subject", "subject", "at"),
)
