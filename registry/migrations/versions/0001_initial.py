"""The registry's first schema.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "members",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
    )
    op.create_table(
        "subsystems",
        sa.Column(
            "member",
            sa.String(200),
            sa.ForeignKey("members.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("code", sa.String(64), primary_key=True),
    )
    op.create_table(
        "security_servers",
        sa.Column("id", sa.String(270), primary_key=True),
        sa.Column("owner", sa.String(200), sa.ForeignKey("members.id"), nullable=False),
        sa.Column("subsystems", sa.Text, nullable=False),
    )
    op.create_table(
        "server_addresses",
        sa.Column(
            "server",
            sa.String(270),
            sa.ForeignKey("security_servers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("address", sa.String(300), nullable=False),
    )
    op.create_table(
        "server_certificates",
        sa.Column("sha256", sa.LargeBinary(32), primary_key=True),
        sa.Column(
            "server",
            sa.String(270),
            sa.ForeignKey("security_servers.id", ondelete="CASCADE"),
            nullable=False,
        ),
    )
    op.create_index("ix_server_certificates_server", "server_certificates", ["server"])
    op.create_table(
        "services",
        sa.Column("id", sa.String(500), primary_key=True),
        sa.Column("provider", sa.String(270), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("methods", sa.Text, nullable=False),
        sa.Column("personal_data", sa.Boolean, nullable=False),
        sa.Column("data_categories", sa.Text, nullable=False),
        sa.Column("purposes", sa.Text, nullable=False),
        sa.Column("consent_required", sa.Boolean, nullable=False),
        sa.Column("legal_basis", sa.Text, nullable=False),
        sa.Column("descriptor_file", sa.String(500), nullable=False),
    )
    op.create_index("ix_services_provider", "services", ["provider"])
    op.create_table(
        "descriptor_files",
        sa.Column("name", sa.String(500), primary_key=True),
        sa.Column("content", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "global_groups",
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
    )
    op.create_table(
        "global_group_members",
        sa.Column(
            "code",
            sa.String(64),
            sa.ForeignKey("global_groups.code", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("subsystem", sa.String(270), primary_key=True),
    )
    op.create_table(
        "journal",
        sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("changes", sa.Text, nullable=False),
    )
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blob", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "snapshots",
        "journal",
        "global_group_members",
        "global_groups",
        "descriptor_files",
        "services",
        "server_certificates",
        "server_addresses",
        "security_servers",
        "subsystems",
        "members",
        "registry_state",
    ):
        op.drop_table(table)
