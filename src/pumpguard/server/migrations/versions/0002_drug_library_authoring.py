"""Drug library authoring: drafts, entries and the two-person approval record.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op  # noqa: F401

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
