"""EHR orders (IHE PCD PIV) and their path from receipt to the pump's answer.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op  # noqa: F401

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
