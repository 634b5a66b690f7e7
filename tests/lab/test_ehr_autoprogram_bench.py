"""``pumpguard bench autoprogram``: bad flags are usage errors; a small run (slow: a stack, a
fleet and an EHR process) accounts for every order and measures pre-fill at the pump. No timed
assertions: the figures are the bench's to report, not the test's to judge."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pumpguard.cli.app import app
from pumpguard.lab.autoprogram_bench import DEFINITIONS, STAGES, AutoprogramBenchConfig

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--orders", "0"], "--orders must be at least 1"),
        (["--pumps", "2"], "--pumps must be at least 4"),
        (["--rate", "0"], "--rate must be a positive"),
        (["--rate", "fast"], "--rate"),
        (["--confirm-after", "-1"], "--confirm-after cannot be negative"),
        (["--status-interval", "0"], "--status-interval must be positive"),
    ],
)
def test_bad_flags_are_usage_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["bench", "autoprogram", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_config_collects_every_problem() -> None:
    with pytest.raises(ValueError, match=r"--orders.*--rate"):
        AutoprogramBenchConfig(orders=0, rate_per_s=-1)


@pytest.mark.slow
def test_a_small_run_accounts_for_every_order() -> None:
    result = runner.invoke(
        app, ["bench", "autoprogram", "--orders", "16", "--pumps", "8", "--rate", "4", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["orders"] == 16
    assert report["no_ack"] == 0 and report["rrg_missing"] == 0
    assert report["rrg_received"] == 16
    refused = sum(int(n) for n in report["refused"].values())
    assert report["accepted"] + refused == 16
    # Every accepted order was seen pre-filled by the pump firmware itself.
    assert report["prefill_measured"] >= report["accepted"] > 0
    assert report["prefill_p50_ms"] is not None and report["prefill_p50_ms"] > 0
    assert report["prefill_p99_ms"] >= report["prefill_p50_ms"]
    assert report["rrg_p99_ms"] >= report["rrg_p50_ms"] > 0
    assert report["as_expected"] + report["not_as_expected"] == 16
    assert set(DEFINITIONS) <= set(report["definitions"])
    assert isinstance(report["target_met"], bool)
    # The breakdown comes from the server's trail, for every order the pump pre-filled.
    assert [name for name, _ in STAGES] == list(report["stages"])
    for figures in report["stages"].values():
        assert figures["orders"] == report["prefill_measured"]
        assert figures["p50_ms"] is not None and figures["p99_ms"] >= figures["p50_ms"]
    assert report["stages"]["ehr_to_received"]["p50_ms"] > 0
