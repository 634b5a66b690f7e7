"""``pumpguard lab run``: the matrix, results.json, the HTML report, CSF credit and the CLI.

One full run (whole catalogue, both profiles, a one-patient one-day fleet) is shared by the
module; the rest use a filtered subset."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pumpguard.cli.app import app
from pumpguard.lab.attacks import CATALOGUE, run_trial
from pumpguard.lab.charts import glucose_chart, grouped_bar_chart
from pumpguard.lab.evaluation import (
    SCHEMA,
    LabConfig,
    LabError,
    LabResults,
    csf_coverage,
    parse_profiles,
    run_lab,
)
from pumpguard.lab.evaluation_report import render_html, write_report
from pumpguard.link import LinkProfile
from pumpguard.risk.controls import load_controls
from pumpguard.risk.threat_model import load_threat_model

runner = CliRunner()


@pytest.fixture(scope="module")
def full() -> LabResults:
    return run_lab(LabConfig(fleet_patients=1, fleet_days=1, workers=2))


@pytest.fixture(scope="module")
def full_json(full: LabResults) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(full.to_json()))
    return document


def test_the_matrix_covers_the_whole_catalogue_on_each_profile(
    full_json: dict[str, Any],
) -> None:
    matrix = full_json["matrix"]
    assert isinstance(matrix, list)
    cells = {(row["name"], row["profile"]) for row in matrix}
    expected = {(a.name, str(p)) for a in CATALOGUE for p in LinkProfile}
    assert cells == expected
    assert len(matrix) == len(expected)
    assert [c["name"] for c in full_json["catalogue"]] == [a.name for a in CATALOGUE]


def test_results_json_has_the_documented_keys(full_json: dict[str, Any]) -> None:
    assert full_json["schema"] == SCHEMA
    assert {"pumpguard", "python", "numpy", "platform"} <= set(full_json["versions"])
    assert full_json["config"]["seed"] == 1
    assert full_json["timings"]["wall_time_s"] > 0
    row = full_json["matrix"][0]
    for key in (
        "succeeded",
        "blocked_by",
        "logged",
        "harm",
        "outcome",
        "detected",
        "time_to_detect_s",
        "rules_fired",
        "glucose_trace",
    ):
        assert key in row
    summaries = {s["profile"]: s for s in full_json["summary"]}
    assert set(summaries) == {"legacy", "secure"}
    assert len(full_json["fleet"]) == 2
    assert full_json["fleet"][0]["hospital"] is not None


def test_insulin_rows_carry_a_glucose_trace_and_hospital_rows_none(full: LabResults) -> None:
    for row in full.rows:
        if row.result.system == "insulin":
            assert row.trace is not None
            assert row.trace.start_min < 0 < row.trace.minutes[-1]
            assert len(row.trace.attacked_mgdl) == len(row.trace.twin_mgdl)
            assert all(math.isfinite(v) for v in row.trace.twin_mgdl)
        else:
            assert row.trace is None


@pytest.mark.parametrize(
    ("name", "profile"),
    [
        ("forged-bolus", LinkProfile.LEGACY),
        ("forged-bolus", LinkProfile.SECURE),
        ("spoofed-cgm-sensor", LinkProfile.SECURE),
        ("tampered-library", LinkProfile.LEGACY),
        ("order-replay", LinkProfile.SECURE),
    ],
)
def test_outcomes_agree_with_run_trial(full: LabResults, name: str, profile: LinkProfile) -> None:
    row = full.row(name, profile)
    trial = run_trial(name, profile, seed=row.result.seed)
    assert row.result.succeeded == trial.result.succeeded
    assert row.result.blocked_by == trial.result.blocked_by
    assert row.result.events == trial.result.events
    assert row.result.harm == trial.result.harm


def test_the_secure_profile_detects_what_it_blocks_on_the_radio(full: LabResults) -> None:
    row = full.row("forged-bolus", LinkProfile.SECURE)
    assert not row.result.succeeded
    assert row.detected
    assert row.rules_fired
    assert row.time_to_detect_s is not None and row.time_to_detect_s >= 0
    passive = full.row("eavesdrop", LinkProfile.SECURE)
    assert not passive.detected


def test_csf_credit_comes_from_the_threat_model_and_control_data(full: LabResults) -> None:
    model, controls = load_threat_model(), load_controls()
    by_id = {c.id: c for c in controls}
    assert full.csf
    for use in full.controls:
        assert by_id[use.control_id].implemented
        assert use.csf == tuple(by_id[use.control_id].csf)
        for name in use.attacks:
            secure = full.row(name, LinkProfile.SECURE)
            assert not secure.result.succeeded or secure.detected
            assert any(name in t.attacks and use.control_id in t.controls for t in model.threats)
    credited = {sub for use in full.controls for sub in use.csf}
    assert {c.subcategory for c in full.csf} == credited


def test_no_credit_without_an_exercised_attack() -> None:
    uses, coverage = csf_coverage([], load_threat_model(), load_controls())
    assert uses == () and coverage == ()


def test_the_html_is_self_contained_parses_and_names_every_attack(full: LabResults) -> None:
    html = render_html(full)
    assert "<script" not in html.lower()
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", html, re.IGNORECASE)
    assert "http://" not in html and "https://" not in html
    assert "@import" not in html and "url(" not in html

    class Collect(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[str] = []
            self.svgs_titled = 0
            self.svgs = 0

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append(tag)
            if tag == "svg":
                self.svgs += 1
                self.svgs_titled += any(k == "aria-label" and v for k, v in attrs)

    parser = Collect()
    parser.feed(html)
    parser.close()
    assert parser.tags.count("table") == parser.tags.count("caption")
    assert parser.svgs > len([a for a in CATALOGUE if a.system == "insulin"])
    assert parser.svgs_titled == parser.svgs
    for attack in CATALOGUE:
        assert f"<code>{attack.name}</code>" in html


def test_a_subset_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    config = LabConfig(
        (LinkProfile.SECURE,), seed=3, attacks=("order-replay", "replay-bolus"), fleet=False
    )
    first: dict[str, Any] = run_lab(config).to_json()
    second: dict[str, Any] = run_lab(config).to_json()
    for document in (first, second):
        document.pop("generated_at")
        document.pop("timings")
        for row in document["matrix"]:
            row.pop("wall_time_s")
    assert first == second
    assert [r["name"] for r in first["matrix"]] == ["replay-bolus", "order-replay"]
    assert first["fleet"] == []


def test_write_report_writes_both_files(tmp_path: Path) -> None:
    results = run_lab(
        LabConfig((LinkProfile.LEGACY,), attacks=("order-wrong-patient",), fleet=False)
    )
    html, data = write_report(results, tmp_path / "out")
    assert html.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert json.loads(data.read_text(encoding="utf-8"))["csf"]["subcategories"] == []


def test_config_errors_are_named() -> None:
    with pytest.raises(LabError, match="legacy, secure or both"):
        parse_profiles("insecure")
    assert parse_profiles(" Both ") == (LinkProfile.LEGACY, LinkProfile.SECURE)
    with pytest.raises(LabError, match="unknown attack 'nope'"):
        LabConfig(attacks=("nope",))
    with pytest.raises(LabError, match="seed"):
        LabConfig(seed=-1)
    with pytest.raises(LabError, match="workers"):
        LabConfig(workers=0)


def test_charts_escape_text_and_label_themselves() -> None:
    svg = glucose_chart("a <b>", [-10, 0, 10], [100, 50, math.nan], [100, 100, 100])
    assert "<b>" not in svg and "a &lt;b&gt;" in svg
    assert 'aria-label="a &lt;b&gt;"' in svg and "<title>" in svg
    assert svg.count("<polyline") == 2
    bars = grouped_bar_chart("t", [("x", [1.0, None])], ["p", "q"], unit="mL")
    assert "n/a" in bars and "1 mL" in bars


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "insecure"], "--profile"),
        (["--attack", "nope"], "unknown attack"),
        (["--seed", "-4"], "seed"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_cli_bad_input_exits_2_with_a_message(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["lab", "run", "--out", str(tmp_path / "r"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_refuses_an_out_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    result = runner.invoke(
        app, ["lab", "run", "--out", str(target), "--attack", "order-replay", "--workers", "1"]
    )
    assert result.exit_code == 2
    assert "not a directory" in result.output


def test_cli_json_prints_results_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["lab", "run", "--profile", "secure", "--attack", "order-replay", "--no-fleet"]
    result = runner.invoke(app, [*args, "--workers", "1", "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [(r["name"], r["profile"], r["outcome"]) for r in document["matrix"]] == [
        ("order-replay", "secure", "blocked")
    ]
    assert (out / "report.html").is_file()
    assert json.loads((out / "results.json").read_text())["matrix"] == document["matrix"]
