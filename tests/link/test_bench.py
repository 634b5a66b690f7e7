"""``pumpguard bench link`` and the figures behind it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pumpguard.cli import app
from pumpguard.link import LinkPolicy
from pumpguard.link.bench import measure_link

runner = CliRunner()


def test_bench_link_json_reports_every_figure() -> None:
    result = runner.invoke(app, ["bench", "link", "--json", "--hours", "1", "--flood-rate", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    for key in (
        "overhead_bytes",
        "battery_days_legacy",
        "battery_days_secure",
        "pairing_mj_pump",
        "battery_days_flood_secure",
    ):
        assert key in report
    assert report["overhead_bytes"] <= 16
    assert report["pairing_mj_pump"] > report["session_mj_pump"] > 0
    secure, legacy = report["profiles"]["secure"], report["profiles"]["legacy"]
    assert secure["commands_answered"] == secure["commands_sent"] > 0
    assert legacy["commands_answered"] == legacy["commands_sent"] > 0
    # the secure link costs something, but less than 5 %
    assert 0 < report["battery_cost_percent"] <= 5
    assert report["radio_cost_percent"] > 0


def test_bench_link_refuses_bad_options() -> None:
    result = runner.invoke(app, ["bench", "link", "--hours", "0"])
    assert result.exit_code == 2


def test_a_flood_costs_the_pump_and_the_secure_pump_bounds_it() -> None:
    bench = measure_link(
        hours=1, flood_rate_per_s=2, policy=LinkPolicy(wakeup_budget_ms_per_hour=1_000)
    )
    legacy, secure = bench.legacy, bench.secure
    assert legacy.link_ma_flood > legacy.link_ma_normal
    assert secure.link_ma_flood > secure.link_ma_normal
    # every legacy flood frame woke the pump; the secure pump stopped waking once over budget
    assert legacy.pump_wakes_flood_hour >= legacy.flood_frames
    assert secure.pump_wakes_flood_hour < secure.flood_frames
    assert secure.commands_answered_flood == secure.commands_sent_flood > 0
    assert secure.link_ma_flood < legacy.link_ma_flood
    assert bench.radio_cost_percent > 0


@pytest.mark.slow
def test_the_issue_targets_hold_at_the_default_settings() -> None:
    bench = measure_link()
    assert bench.overhead_bytes <= 16
    assert bench.battery_cost_percent <= 5
    assert bench.secure.flood_kept_percent >= 90
