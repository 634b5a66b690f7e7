"""Alembic environment: always runs on the engine the caller hands over (see ``db.py``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from pumpguard.server.models import Base

_engine = context.config.attributes.get("engine")
if not isinstance(_engine, Engine):
    raise RuntimeError("run pumpguard migrations through pumpguard.server.upgrade_database")

with _engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()
