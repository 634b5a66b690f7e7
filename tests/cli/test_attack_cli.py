from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pumpguard.cli.app import app
from pumpguard.lab.attacks import attack_names

runner = CliRunner()


def test_list_json_names_every_attack_with_a_reference() -> None:
    result = runner.invoke(app, ["attack", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == list(attack_names())
    assert all(r["reference"] for r in rows)
    assert {r["system"] for r in rows} == {"insulin", "hospital"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["attack", "run", "nope", "--profile", "legacy"], "unknown attack"),
        (["attack", "run", "jamming", "--profile", "modern"], "--profile"),
        (["attack", "run", "jamming", "--profile", "secure", "--patient", "x"], "patient"),
        (["attack", "run", "--profile", "secure"], "NAME or --all"),
        (["attack", "run", "jamming", "--all", "--profile", "secure"], "NAME or --all"),
    ],
)
def test_bad_input_exits_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_run_one_attack_as_json() -> None:
    result = runner.invoke(app, ["attack", "run", "pairing-mitm", "--profile", "secure", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["name"] == "pairing-mitm" and row["profile"] == "secure"
    assert row["succeeded"] is False and row["logged"] is True
    assert row["blocked_by"] == "numeric-comparison"
    assert row["harm"]["minutes_below_54"] == 0


def test_run_all_shows_a_table_of_every_attack(monkeypatch: pytest.MonkeyPatch) -> None:
    from pumpguard.cli import attack as attack_cli
    from pumpguard.lab.attacks import Jamming, PairingMitmAttack

    monkeypatch.setattr(attack_cli, "CATALOGUE", (PairingMitmAttack, Jamming))
    result = runner.invoke(
        app, ["attack", "run", "--all", "--profile", "legacy", "--patient", "child#002"]
    )
    assert result.exit_code == 0, result.output
    assert "pairing-mitm" in result.output and "jamming" in result.output
    assert "frame receptions jammed" in result.output
