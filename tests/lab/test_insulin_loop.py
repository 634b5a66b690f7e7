"""The insulin loop runner and its ``pumpguard sim insulin`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pumpguard.cli import app
from pumpguard.lab.insulin_loop import (
    ControllerKind,
    LoopConfig,
    MealSyntaxError,
    parse_meals,
    run_loop,
    settings_for,
)
from pumpguard.physiology import Meal, RandomMealScenario, get_patient, patient_names

runner = CliRunner()


def test_parse_meals() -> None:
    scenario = parse_meals("07:00=45, 12:00=70,18:30=80")
    assert scenario.schedule == (Meal(420, 45.0), Meal(720, 70.0), Meal(1110, 80.0))


@pytest.mark.parametrize("text", ["", "7h=45", "07:00", "25:00=40", "07:61=40", "07:00=-5"])
def test_parse_meals_rejects_bad_syntax(text: str) -> None:
    with pytest.raises(MealSyntaxError):
        parse_meals(text)


def test_settings_for_every_patient_pass_the_guardrails() -> None:
    for name in patient_names():
        s = settings_for(get_patient(name))
        assert 10 <= s.isf_mgdl_per_u <= 500
        assert s.basal_u_h > 0


def test_settings_for_take_the_age_group_max_bolus_and_the_meal_rules() -> None:
    caps = {name: settings_for(get_patient(name)).max_bolus_u for name in patient_names()}
    assert {caps["child#001"], caps["adolescent#001"], caps["adult#001"]} == {5.0, 10.0, 15.0}
    assert all(caps[n] == 5.0 for n in patient_names() if n.startswith("child"))
    s = settings_for(get_patient("child#008"))
    assert s.correction_wait_min == 180.0 and s.carbs_when_low


def test_one_day_aid_loop_runs_and_beats_no_bolus() -> None:
    meals = parse_meals("07:00=45,12:00=70,18:30=80")
    results = {
        kind: run_loop(LoopConfig(("adult#001",), 1, meals, kind))
        for kind in (ControllerKind.NONE, ControllerKind.AID)
    }
    aid = results[ControllerKind.AID]
    none = results[ControllerKind.NONE]
    assert aid.bg.shape == (1, 1440)
    assert np.isfinite(aid.bg).all()
    assert not np.isnan(aid.cgm[0, 5:]).any()
    assert aid.metrics[0].tir_70_180_pct > none.metrics[0].tir_70_180_pct
    assert aid.metrics[0].tbr_54_pct == 0.0
    assert aid.insulin_u.sum() > none.insulin_u.sum()


def test_loop_is_deterministic() -> None:
    config = LoopConfig(("child#001",), 1, RandomMealScenario(3), ControllerKind.BASAL_BOLUS)
    assert np.array_equal(run_loop(config).bg, run_loop(config).bg)


def test_rescue_carbs_only_when_asked_for() -> None:
    """The "rule of 15": 15 g whenever the CGM shows below 70, at most every 15 minutes, not
    announced to the controller; off by default."""
    meals = parse_meals("07:00=80,12:00=80,18:00=80")
    plain, rescued = (
        run_loop(LoopConfig(("child#008",), 1, meals, ControllerKind.BASAL_BOLUS, rescue_carbs=r))
        for r in (False, True)
    )
    assert plain.rescues == 0 and plain.carbs_g.sum() == 240
    assert plain.cgm.min() < 70  # the plain day has a low the rescue option treats
    assert rescued.rescues > 0
    assert rescued.carbs_g.sum() == 240 + 15 * rescued.rescues
    extra = np.flatnonzero(rescued.carbs_g[0] != plain.carbs_g[0])
    assert (np.diff(extra) >= 15).all()
    assert rescued.bg.min() > plain.bg.min()


def test_cli_json_and_trace(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    result = runner.invoke(
        app,
        [
            "sim", "insulin", "--patient", "adolescent#001", "--days", "1",
            "--meals", "07:00=45,12:00=70", "--controller", "basal-bolus",
            "--trace", str(trace), "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    for key in ("tir_70_180_pct", "tbr_54_pct", "tbr_70_pct"):
        assert 0 <= doc["cohort"][key] <= 100
    assert set(doc["patients"]) == {"adolescent#001"}
    assert doc["rescue_carbs"] is False and doc["rescues"] == 0
    lines = trace.read_text().splitlines()
    assert lines[0] == "patient,minute,bg_mgdl,cgm_mgdl,insulin_u,carbs_g"
    assert len(lines) == 1441


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--patient", "adult#999", "--days", "1", "--meals", "07:00=45"], "adult#999"),
        (["--patient", "adult#001", "--days", "1", "--meals", "7am=45"], "--meals"),
        (["--patient", "adult#001", "--days", "-2", "--meals", "07:00=45"], "--days"),
        (["--patient", "adult#001", "--days", "1"], "--meals or --random-meals"),
        (["--patient", "adult#001", "--days", "1", "--random-meals"], "--seed"),
        (["--days", "1", "--meals", "07:00=45"], "--patient"),
        (["--patients", "some", "--days", "1", "--meals", "07:00=45"], "--patients"),
        (
            ["--patient", "adult#001", "--days", "1", "--meals", "07:00=45", "--controller", "pid"],
            "--controller",
        ),
    ],
)
def test_cli_bad_inputs_fail_clearly(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["sim", "insulin", *args])
    assert result.exit_code == 2
    assert "error:" in result.output
    assert message in result.output


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(ControllerKind))
def test_cohort_week_random_meals(kind: ControllerKind) -> None:
    result = run_loop(LoopConfig(patient_names(), 7, RandomMealScenario(1), kind, cgm_seed=1))
    cohort = result.cohort
    # The AID at the consensus targets (TIR >= 80 %, TBR54 < 1 %); basal-bolus as a regression
    # guard near its measured figures (docs/devices/insulin-system.md: 84.1 % and 1.51 %).
    if kind is ControllerKind.AID:
        assert cohort["tir_70_180_pct"] >= 80.0
        assert cohort["tbr_54_pct"] < 1.0
    elif kind is ControllerKind.BASAL_BOLUS:
        assert cohort["tir_70_180_pct"] > 80.0
        assert cohort["tbr_54_pct"] < 3.0
    else:
        assert cohort["tbr_70_pct"] == 0.0
        assert cohort["tir_70_180_pct"] < 30.0
