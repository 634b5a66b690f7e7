"""``pumpguard audit verify`` against a data directory a running ``Stack`` wrote: intact after
a clean stop, exit 3 once an entry is edited behind the server's back."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from tests.server.runtime.support import provision, run, running_stack
from typer.testing import CliRunner

from pumpguard.cli.app import app
from pumpguard.server import DATABASE_URL_ENV, normalise_database_url


def test_audit_verify_detects_an_edit_of_a_log_the_stack_wrote(
    tmp_path: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"

    async def scenario() -> None:
        async with running_stack(data_dir, database_url) as stack:
            await provision(stack, "PUMP-0001")
            await provision(stack, "PUMP-0002")

    run(scenario())
    if database_url is not None:
        monkeypatch.setenv(DATABASE_URL_ENV, database_url)
    else:
        monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    runner = CliRunner()
    intact = runner.invoke(app, ["audit", "verify", "--data-dir", str(data_dir)])
    assert intact.exit_code == 0, intact.output
    assert "intact" in intact.output

    url = database_url or f"sqlite:///{data_dir / 'pumpguard.db'}"
    engine = create_engine(normalise_database_url(url))
    with engine.begin() as conn:
        changed = conn.execute(
            text("UPDATE audit_entries SET actor = 'nobody' WHERE seq = 2")
        ).rowcount
    engine.dispose()
    assert changed == 1
    tampered = runner.invoke(app, ["audit", "verify", "--data-dir", str(data_dir)])
    assert tampered.exit_code == 3, tampered.output
