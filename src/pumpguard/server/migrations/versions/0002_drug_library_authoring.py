"""Drug library authoring: drafts, entries and the two-person approval record.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "library_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("library_id", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("institution", sa.Text(), nullable=True),
        sa.Column("sources", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("submitted_by", sa.String(length=64), nullable=True),
        sa.Column("submitted_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=True),
        sa.Column("canonical", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_versions")),
        sa.UniqueConstraint("version", name=op.f("uq_library_versions_version")),
    )
    op.create_index(op.f("ix_library_versions_state"), "library_versions", ["state"], unique=False)
    op.create_table(
        "library_care_areas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("name_key", sa.Text(), nullable=False),
        sa.Column("max_rate_ml_h", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["library_versions.id"],
            name=op.f("fk_library_care_areas_version_id_library_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_care_areas")),
        sa.UniqueConstraint(
            "version_id", "name_key", name=op.f("uq_library_care_areas_version_id")
        ),
    )
    op.create_table(
        "library_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("care_area_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["care_area_id"],
            ["library_care_areas.id"],
            name=op.f("fk_library_entries_care_area_id_library_care_areas"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_entries")),
    )
    op.create_index(
        op.f("ix_library_entries_care_area_id"),
        "library_entries",
        ["care_area_id"],
        unique=False,
    )
    op.create_table(
        "library_contributions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_library_contributions_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["library_versions.id"],
            name=op.f("fk_library_contributions_version_id_library_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_library_contributions")),
    )
    op.create_index(
        op.f("ix_library_contributions_version_id"),
        "library_contributions",
        ["version_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_library_contributions_version_id"), table_name="library_contributions")
    op.drop_table("library_contributions")
    op.drop_index(op.f("ix_library_entries_care_area_id"), table_name="library_entries")
    op.drop_table("library_entries")
    op.drop_table("library_care_areas")
    op.drop_index(op.f("ix_library_versions_state"), table_name="library_versions")
    op.drop_table("library_versions")
