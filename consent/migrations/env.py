"""Alembic environment: migrates the connection ``ConsentStore`` hands over (its own version
table, so the registry and the consent service may share a PostgreSQL database)."""

from __future__ import annotations

from alembic import context

from consent._schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    version_table="consent_alembic_version",
)
with context.begin_transaction():
    context.run_migrations()
