from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pumpguard.cli.app import app
from pumpguard.monitor.ruleset import DEFAULT_RULES

runner = CliRunner()


def test_rules_as_json_name_every_rule() -> None:
    result = runner.invoke(app, ["alerts", "rules", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["id"] for r in rows] == [r.rule_id for r in DEFAULT_RULES]
    assert all(r["rationale"] and r["codes"] for r in rows)


def test_sigma_export_writes_one_file_per_rule(tmp_path: Path) -> None:
    result = runner.invoke(app, ["alerts", "rules", "--sigma-dir", str(tmp_path / "sigma")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "sigma").glob("*.yml"))) == len(DEFAULT_RULES)


def test_sigma_export_to_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "not-a-dir"
    target.write_text("x")
    result = runner.invoke(app, ["alerts", "rules", "--sigma-dir", str(target)])
    assert result.exit_code == 2
    assert "not a directory" in result.output
