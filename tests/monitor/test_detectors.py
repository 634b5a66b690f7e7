from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pumpguard.monitor import BolusAnomaly, CgmPlausibility, Cusum, DetectorError

MIN = 60_000


def test_a_jump_faster_than_four_mg_dl_per_minute_is_flagged() -> None:
    det = CgmPlausibility("CGM-1")
    assert det.reading(0, 120) == []
    assert det.reading(5 * MIN, 135) == []
    found = det.reading(10 * MIN, 60)
    assert [d.analytic_id for d in found] == ["PG-CGM-RATE"]
    assert "-15.0 mg/dL/min" in found[0].message
    assert found[0].technique == "T0856"


def test_a_jump_after_a_long_gap_is_not_a_rate() -> None:
    det = CgmPlausibility("CGM-1", max_gap_min=15)
    det.reading(0, 120)
    assert det.reading(60 * MIN, 300) == []


@given(
    st.lists(st.floats(-3.9, 3.9, allow_nan=False), min_size=1, max_size=100),
    st.floats(60, 300),
)
def test_physiological_traces_never_trip_the_rate_check(rates: list[float], start: float) -> None:
    det = CgmPlausibility("CGM-1")
    bg = start
    assert det.reading(0, bg) == []
    for i, rate in enumerate(rates, start=1):
        bg = max(40.0, min(400.0, bg + 5 * rate))
        assert [d for d in det.reading(i * 5 * MIN, bg) if d.analytic_id == "PG-CGM-RATE"] == []


def test_meter_disagreement_uses_the_icgm_band() -> None:
    det = CgmPlausibility("CGM-1")
    det.reading(0, 150)
    assert det.meter(2 * MIN, 130) == []
    assert [d.analytic_id for d in det.meter(2 * MIN, 100)] == ["PG-CGM-METER"]
    low = CgmPlausibility("CGM-2")
    low.reading(0, 60)
    assert low.meter(MIN, 79) == []
    assert len(low.meter(MIN, 85)) == 1
    assert CgmPlausibility("CGM-3").meter(0, 100) == []


def test_cusum_finds_a_sustained_bias_but_not_zero_mean_noise() -> None:
    rng = random.Random(7)
    noisy = Cusum(slack=10, limit=120)
    assert all(noisy.update(rng.gauss(0, 8)) == 0 for _ in range(2_000))
    biased = Cusum(slack=10, limit=120)
    alarms = [biased.update(30 + rng.gauss(0, 8)) for _ in range(20)]
    assert 1 in alarms
    assert alarms.index(1) < 10
    down = Cusum(slack=10, limit=120)
    assert -1 in [down.update(-30.0) for _ in range(10)]


def test_cgm_cusum_against_a_model() -> None:
    det = CgmPlausibility("CGM-1")
    found = []
    for i in range(30):
        found += det.reading(i * 5 * MIN, 110 + 35, predicted_mgdl=110)
    assert "PG-CGM-CUSUM" in {d.analytic_id for d in found}


@pytest.mark.parametrize("value", [math.nan, math.inf, -5.0, 0.0])
def test_impossible_glucose_is_refused(value: float) -> None:
    with pytest.raises(DetectorError):
        CgmPlausibility("CGM-1").reading(0, value)


def test_readings_out_of_order_are_refused() -> None:
    det = CgmPlausibility("CGM-1")
    det.reading(5 * MIN, 100)
    with pytest.raises(DetectorError, match="increasing time order"):
        det.reading(5 * MIN, 101)


def _usual_history(det: BolusAnomaly, days: int = 10) -> int:
    rng = random.Random(3)
    t = 0
    for day in range(days):
        for meal_hour in (7, 12, 19):
            t = (day * 24 + meal_hour) * 60 * MIN
            assert det.bolus(t, round(rng.uniform(3, 7), 2)) == []
    return t


def test_a_bolus_far_beyond_the_patients_habit_is_flagged() -> None:
    det = BolusAnomaly("PUMP-1")
    t = _usual_history(det)
    found = det.bolus(t + 3 * 60 * MIN, 25.0)
    assert [d.analytic_id for d in found] == ["PG-DOSE-SIZE"]


def test_a_burst_of_boluses_is_flagged_but_a_usual_one_is_not() -> None:
    det = BolusAnomaly("PUMP-1")
    t = _usual_history(det) + 3 * 60 * MIN
    assert det.bolus(t, 5.0) == []
    found = det.bolus(t + 10 * MIN, 4.0)
    assert [d.analytic_id for d in found] == ["PG-DOSE-FREQ"]


def test_no_judgement_before_enough_history() -> None:
    det = BolusAnomaly("PUMP-1", min_history=20)
    assert det.bolus(0, 5.0) == []
    assert det.bolus(MIN, 50.0) == []


def test_bad_boluses_are_refused() -> None:
    det = BolusAnomaly("PUMP-1")
    with pytest.raises(DetectorError, match="positive"):
        det.bolus(0, 0.0)
    det.bolus(10 * MIN, 1.0)
    with pytest.raises(DetectorError, match="time order"):
        det.bolus(0, 1.0)


def test_a_fast_but_gradual_post_meal_rise_is_plausible() -> None:
    """The cohort climbs at up to ~11 mg/dL/min after large meals, getting there gradually."""
    det = CgmPlausibility("CGM-1")
    bg, t = 100.0, 0
    assert det.reading(t, bg) == []
    for rate in (1, 3, 5, 7, 9, 11, 11, 9, 6, 3, 0, -2, -4, -5):
        t, bg = t + 5 * MIN, bg + 5 * rate
        assert det.reading(t, bg) == []


def test_a_step_on_a_steady_trace_is_flagged_and_so_is_its_end() -> None:
    det = CgmPlausibility("CGM-1")
    for i in range(5):
        assert det.reading(i * 5 * MIN, 120.0 + i) == []
    up = det.reading(25 * MIN, 245.0)
    assert [d.analytic_id for d in up] == ["PG-CGM-RATE"]
    assert "rate changed by" in up[0].message
    assert det.reading(30 * MIN, 246.0) == []
    assert [d.analytic_id for d in det.reading(35 * MIN, 127.0)] == ["PG-CGM-RATE"]


def test_a_fast_rate_right_after_a_gap_is_judged_on_the_rate_alone() -> None:
    det = CgmPlausibility("CGM-1", max_rate_change_mgdl_min=8)
    det.reading(0, 120)
    assert det.reading(60 * MIN, 200) == []
    assert [d.analytic_id for d in det.reading(65 * MIN, 300)] == ["PG-CGM-RATE"]
    calm = CgmPlausibility("CGM-2")
    calm.reading(0, 120)
    calm.reading(60 * MIN, 200)
    assert calm.reading(65 * MIN, 235) == []
