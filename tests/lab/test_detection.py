from __future__ import annotations

import itertools
import json
import random

import pytest
from typer.testing import CliRunner

from pumpguard.cli.app import app
from pumpguard.clock import MS_PER_MINUTE
from pumpguard.lab.attacks import HOSPITAL_CATALOGUE
from pumpguard.lab.detection import (
    ATTRIBUTION_WINDOW_MIN,
    DetectConfig,
    DetectError,
    PatientRun,
    PlannedAttack,
    RunAlerts,
    attribute,
    insulin_attacks,
    plan_attacks,
    run_detection,
    run_hospital,
    run_patient,
)
from pumpguard.link import LinkProfile
from pumpguard.physiology import MINUTES_PER_DAY

runner = CliRunner()
MIN = MS_PER_MINUTE


def _spoof(start_min: int = 600) -> PlannedAttack:
    return PlannedAttack("spoofed-cgm-sensor", "adult#001", start_min, 360)


def test_a_detection_inside_the_window_detects_the_attack_with_its_delay() -> None:
    attack = _spoof()
    run = RunAlerts(
        "adult#001",
        True,
        detections=((605 * MIN, "PG-CGM-RATE"), (640 * MIN, "PG-CGM-METER")),
        alerts=((605 * MIN, "PG-CGM-RATE"), (640 * MIN, "PG-CGM-METER")),
    )
    (outcome,), false = attribute([attack], run)
    assert outcome.detected
    assert outcome.time_to_detect_s == 300
    assert outcome.analytics == ("PG-CGM-RATE", "PG-CGM-METER")
    assert false == []


def test_detections_before_the_launch_or_after_the_window_do_not_count() -> None:
    attack = _spoof()
    after = attack.until_ms + 1
    assert after == (600 + 360 + ATTRIBUTION_WINDOW_MIN) * MIN + 1
    run = RunAlerts(
        "adult#001",
        True,
        detections=((599 * MIN, "PG-LINK-008"), (after, "PG-LINK-008")),
        alerts=((599 * MIN, "PG-LINK-008"), (after, "PG-LINK-008")),
    )
    (outcome,), false = attribute([attack], run)
    assert not outcome.detected and outcome.time_to_detect_s is None
    assert false == [(599 * MIN, "PG-LINK-008"), (after, "PG-LINK-008")]


def test_every_alert_of_an_attack_free_run_is_false() -> None:
    run = RunAlerts("adult#001", False, ((10 * MIN, "PG-CGM-RATE"),), ((10 * MIN, "PG-CGM-RATE"),))
    outcomes, false = attribute([], run)
    assert outcomes == () and false == [(10 * MIN, "PG-CGM-RATE")]


def test_an_alert_kept_open_into_a_window_detects_but_is_not_false_twice() -> None:
    """A detection merged into an alert opened earlier still detects the attack (the analyst
    sees the alert grow); the alert itself was opened outside the window, so it is false."""
    attack = _spoof()
    run = RunAlerts(
        "adult#001",
        True,
        detections=((590 * MIN, "PG-LINK-002"), (601 * MIN, "PG-LINK-002")),
        alerts=((590 * MIN, "PG-LINK-002"),),
    )
    (outcome,), false = attribute([attack], run)
    assert outcome.time_to_detect_s == 60
    assert false == [(590 * MIN, "PG-LINK-002")]


@pytest.mark.parametrize("days", [1, 2, 7])
def test_plans_fit_the_run_and_windows_never_overlap(days: int) -> None:
    names = [a.name for a in insulin_attacks()] * (days + 2)
    for seed in range(20):
        plan = plan_attacks("adult#001", days, random.Random(seed), names[seed : seed + days])
        assert 1 <= len(plan) <= days
        assert plan[0].start_min >= 120
        for a, b in itertools.pairwise(plan):
            assert b.start_min - 120 > a.until_ms // MIN
        assert plan[-1].until_ms <= days * MINUTES_PER_DAY * MIN


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(DetectError, match="days"):
        DetectConfig(0, 1)
    with pytest.raises(DetectError, match="patients"):
        DetectConfig(1, 0)


def test_a_sensor_spoof_in_an_otherwise_clean_day_is_detected_by_the_cgm_detector() -> None:
    """Real runs, real detectors: the same patient and day with and without the spoof."""
    plan = (_spoof(),)
    attacked = run_patient(PatientRun(LinkProfile.SECURE, "adult#001", 0, 11, 1, plan))
    clean = run_patient(PatientRun(LinkProfile.SECURE, "adult#001", 0, 11, 1, ()))
    (outcome,), _ = attribute(plan, attacked)
    assert outcome.detected
    assert "PG-CGM-RATE" in outcome.analytics
    assert outcome.time_to_detect_s is not None and outcome.time_to_detect_s <= 10 * 60
    assert not any(a == "PG-CGM-RATE" for _, a in clean.detections)
    _, false = attribute((), clean)
    assert len(false) == len(clean.alerts)


def test_a_small_evaluation_counts_what_the_runs_produced() -> None:
    config = DetectConfig(1, 2, seed=5, hospital=False)
    report = run_detection(config)
    doc = report.to_json()
    assert doc["config"] == {
        "days": 1,
        "patients": 2,
        "seed": 5,
        "profile": "secure",
        "patient_names": list(report.patients),
        "attribution_window_min": ATTRIBUTION_WINDOW_MIN,
        "systems": ["insulin"],
    }
    assert len(report.outcomes) == 2
    assert report.clean_patient_days == pytest.approx(
        4 - sum((o.attack.until_ms - o.attack.start_ms) / (1440 * MIN) for o in report.outcomes)
    )
    counted = report.counted
    detected = sum(o.detected for o in counted)
    assert doc["detection_rate"] == (round(detected / len(counted), 4) if counted else None)
    names = {s["name"] for s in doc["attacks"]} | {s["name"] for s in doc["undetectable"]}
    assert names == {o.attack.name for o in report.outcomes}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "0"], "--days"),
        (["--patients", "0"], "--patients"),
        (["--profile", "modern"], "--profile"),
        (["--workers", "0"], "workers"),
        (["--days", "seven"], "days"),
    ],
)
def test_bad_flags_exit_2_with_a_specific_error(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["lab", "detect", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_lab_detect_json_carries_the_figures_and_the_configuration() -> None:
    result = runner.invoke(
        app, ["lab", "detect", "--days", "1", "--patients", "1", "--seed", "7", "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    for key in (
        "detection_rate",
        "median_time_to_detect_s",
        "false_alerts_per_patient_day",
        "attacks",
        "undetectable",
        "wall_time_s",
    ):
        assert key in doc
    assert doc["config"]["seed"] == 7 and doc["config"]["profile"] == "secure"
    ward = doc["hospital"]
    assert ward["ward_pump_days"] == 10 and ward["instances"] == len(ward["attacks"]) > 0
    assert "ward_false_alerts_per_pump_day" in ward
    overall = doc["overall"]
    insulin = doc["attack_instances"]
    assert overall["attack_instances"] == insulin + ward["instances"]


def test_hospital_attacks_go_through_the_same_monitor() -> None:
    outcomes = run_hospital(LinkProfile.SECURE, 3)
    assert {o.name for o in outcomes} == {a.name for a in HOSPITAL_CATALOGUE}
    replay = next(o for o in outcomes if o.name == "order-replay")
    assert replay.detected and replay.analytics == ("PG-HL7-002",)
