"""Alerts and incidents kept by the server, with their life cycle.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "alert_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_alert", sa.BigInteger(), nullable=False),
        sa.Column("last_incident", sa.BigInteger(), nullable=False),
        sa.Column("last_change", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_head")),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.String(length=16), nullable=False),
        sa.Column("analytic_id", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("first_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_ms", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("incident_id", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("peer", sa.String(length=255), nullable=True),
        sa.Column("technique", sa.String(length=16), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("alert_id", name=op.f("uq_alerts_alert_id")),
    )
    for column in ("analytic_id", "change_seq", "device_id", "incident_id", "last_ms", "state"):
        op.create_index(op.f(f"ix_alerts_{column}"), "alerts", [column], unique=False)
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("first_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        sa.UniqueConstraint("incident_id", name=op.f("uq_incidents_incident_id")),
    )
    op.create_index(op.f("ix_incidents_last_ms"), "incidents", ["last_ms"], unique=False)
    op.create_table(
        "alert_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_row_id", sa.Integer(), nullable=False),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_row_id"], ["alerts.id"], name=op.f("fk_alert_changes_alert_row_id_alerts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_changes")),
    )
    op.create_index(
        op.f("ix_alert_changes_alert_row_id"), "alert_changes", ["alert_row_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_alert_changes_alert_row_id"), table_name="alert_changes")
    op.drop_table("alert_changes")
    op.drop_index(op.f("ix_incidents_last_ms"), table_name="incidents")
    op.drop_table("incidents")
    for column in ("state", "last_ms", "incident_id", "device_id", "change_seq", "analytic_id"):
        op.drop_index(op.f(f"ix_alerts_{column}"), table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("alert_head")
