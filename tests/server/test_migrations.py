"""The schema comes only from the Alembic migrations, and they match the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from tests.server.conftest import PostgresDatabase, require_postgres

from pumpguard.server import make_engine, normalise_database_url, upgrade_database
from pumpguard.server.models import Base


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_empty_sqlite_upgrades_to_head_and_matches_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert inspect(engine).get_table_names() == []
    upgrade_database(engine)
    assert set(inspect(engine).get_table_names()) == {"alembic_version", *Base.metadata.tables}
    assert _diff(engine) == []
    upgrade_database(engine)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_a_model_change_without_a_migration_is_noticed(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    upgrade_database(engine)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE assets ADD COLUMN colour VARCHAR(10)"))
    assert _diff(engine) != []
    engine.dispose()


def test_empty_postgresql_upgrades_to_head_and_matches_models() -> None:
    database = PostgresDatabase(require_postgres())
    try:
        engine = make_engine(database.url)
        assert inspect(engine).get_table_names() == []
        upgrade_database(engine)
        assert set(inspect(engine).get_table_names()) == {"alembic_version", *Base.metadata.tables}
        assert _diff(engine) == []
        engine.dispose()
    finally:
        database.drop()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///x.db", "sqlite:///x.db"),
        ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
        (" postgres://u@h/d ", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
    ],
)
def test_database_urls_map_to_the_installed_driver(url: str, expected: str) -> None:
    assert normalise_database_url(url) == expected


def test_downgrade_to_base_and_back(tmp_path: Path) -> None:
    from alembic import command

    from pumpguard.server.db import alembic_config

    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    upgrade_database(engine)
    command.downgrade(alembic_config(engine), "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    upgrade_database(engine)
    assert _diff(engine) == []
    engine.dispose()
