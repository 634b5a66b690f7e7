"""The catalogue through ``pumpguard attack ... --json``: both systems, one result shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from pumpguard.cli.app import app
from pumpguard.lab.attacks import HARM_KEYS, HOSPITAL_CATALOGUE, INSULIN_CATALOGUE

runner = CliRunner()

ISSUE_KEYS = {"name", "system", "reference", "profile", "succeeded", "blocked_by", "logged", "harm"}
INSULIN_HARM = {"extra_insulin_u", "min_bg_mgdl", "minutes_below_54"}
HOSPITAL_HARM = {"drug", "prescribed_ml", "delivered_ml", "overdose_factor"}


def _json(args: list[str]) -> Any:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _check_row(row: dict[str, Any], profile: str) -> None:
    assert set(row) >= ISSUE_KEYS and row["profile"] == profile
    assert tuple(row["harm"]) == HARM_KEYS
    insulin = row["system"] == "insulin"
    mine, other = (INSULIN_HARM, HOSPITAL_HARM) if insulin else (HOSPITAL_HARM, INSULIN_HARM)
    assert all(row["harm"][k] is not None for k in mine), row
    assert all(row["harm"][k] is None for k in other), row
    if profile == "secure" and not row["availability"]:
        assert not row["succeeded"] and row["blocked_by"], row


def test_list_shows_the_system_and_filters_on_it() -> None:
    rows = _json(["attack", "list", "--json", "--system", "hospital"])
    assert [r["name"] for r in rows] == [a.name for a in HOSPITAL_CATALOGUE]
    assert {r["system"] for r in rows} == {"hospital"}
    rows = _json(["attack", "list", "--json", "--system", "insulin"])
    assert [r["name"] for r in rows] == [a.name for a in INSULIN_CATALOGUE]
    table = runner.invoke(app, ["attack", "list"])
    assert table.exit_code == 0 and "hospital" in table.output and "insulin" in table.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["attack", "list", "--system", "ward"], "--system"),
        (["attack", "run", "--all", "--profile", "secure", "--system", "ward"], "--system"),
        (
            ["attack", "run", "order-replay", "--profile", "legacy", "--system", "insulin"],
            "hospital",
        ),
    ],
)
def test_bad_system_exits_2(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.output


@pytest.mark.parametrize("profile", ["legacy", "secure"])
def test_every_hospital_attack_through_the_cli(profile: str) -> None:
    rows = _json(["attack", "run", "--all", "--system", "hospital", "--profile", profile, "--json"])
    assert [r["name"] for r in rows] == [a.name for a in HOSPITAL_CATALOGUE]
    for row in rows:
        _check_row(row, profile)
        assert row["system"] == "hospital"
        if profile == "legacy" and row["name"] != "order-beyond-hard-limit":
            assert row["succeeded"] and row["harm"]["overdose_factor"] > 1.5, row
        if profile == "secure":
            assert row["logged"], row


def test_a_hospital_table_names_the_harm() -> None:
    result = runner.invoke(app, ["attack", "run", "order-wrong-patient", "--profile", "legacy"])
    assert result.exit_code == 0, result.output
    assert "order-wrong-patient" in result.output and "MRN-0815" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["legacy", "secure"])
def test_the_whole_catalogue_through_the_cli(profile: str) -> None:
    rows = _json(["attack", "run", "--all", "--profile", profile, "--json"])
    names = [a.name for a in (*INSULIN_CATALOGUE, *HOSPITAL_CATALOGUE)]
    assert [r["name"] for r in rows] == names
    assert {r["system"] for r in rows} == {"insulin", "hospital"}
    for row in rows:
        _check_row(row, profile)
