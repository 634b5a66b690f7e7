"""EHR orders (IHE PCD PIV) and their path from receipt to the pump's answer.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "ehr_orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("peer", sa.Text(), nullable=False),
        sa.Column("control_id", sa.Text(), nullable=False),
        sa.Column("sending_application", sa.Text(), nullable=False),
        sa.Column("sending_facility", sa.Text(), nullable=False),
        sa.Column("order_control", sa.String(length=8), nullable=False),
        sa.Column("placer_order_number", sa.Text(), nullable=False),
        sa.Column("placer_namespace", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.Text(), nullable=False),
        sa.Column("patient_name", sa.Text(), nullable=False),
        sa.Column("pump_id", sa.Text(), nullable=False),
        sa.Column("drug_code", sa.Text(), nullable=False),
        sa.Column("drug_name", sa.Text(), nullable=False),
        sa.Column("dose", sa.Text(), nullable=True),
        sa.Column("dose_unit", sa.Text(), nullable=True),
        sa.Column("rate_ml_h", sa.Text(), nullable=True),
        sa.Column("vtbi_ml", sa.Text(), nullable=True),
        sa.Column("weight_kg", sa.Text(), nullable=True),
        sa.Column("concentration", sa.Text(), nullable=True),
        sa.Column("care_area", sa.Text(), nullable=True),
        sa.Column("order_time_ms", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("app_error", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("ack_code", sa.String(length=2), nullable=True),
        sa.Column("command_id", sa.String(length=64), nullable=True),
        sa.Column("prefilled_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("decided_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("acknowledged_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ehr_orders")),
    )
    op.create_index(
        op.f("ix_ehr_orders_received_at_ms"), "ehr_orders", ["received_at_ms"], unique=False
    )
    op.create_index("ix_ehr_orders_pump_status", "ehr_orders", ["pump_id", "status"], unique=False)
    op.create_table(
        "ehr_order_keys",
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["ehr_orders.id"],
            name=op.f("fk_ehr_order_keys_order_id_ehr_orders"),
        ),
        sa.PrimaryKeyConstraint("key_hash", name=op.f("pk_ehr_order_keys")),
    )
    op.create_index(
        op.f("ix_ehr_order_keys_order_id"), "ehr_order_keys", ["order_id"], unique=False
    )
    op.create_table(
        "ehr_order_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["ehr_orders.id"],
            name=op.f("fk_ehr_order_steps_order_id_ehr_orders"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ehr_order_steps")),
    )
    op.create_index(
        op.f("ix_ehr_order_steps_order_id"), "ehr_order_steps", ["order_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_ehr_order_steps_order_id"), table_name="ehr_order_steps")
    op.drop_table("ehr_order_steps")
    op.drop_index(op.f("ix_ehr_order_keys_order_id"), table_name="ehr_order_keys")
    op.drop_table("ehr_order_keys")
    op.drop_index("ix_ehr_orders_pump_status", table_name="ehr_orders")
    op.drop_index(op.f("ix_ehr_orders_received_at_ms"), table_name="ehr_orders")
    op.drop_table("ehr_orders")
