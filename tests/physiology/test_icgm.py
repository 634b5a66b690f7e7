"""The iCGM criteria checker on constructed pairs that pass or fail specific criteria."""

from __future__ import annotations

import numpy as np
import pytest

from pumpguard.physiology import Outcome, check_icgm, clopper_pearson


def _reference(ramps: int = 100) -> np.ndarray:
    """A true trace every 5 minutes: ramps between 40 and 400 mg/dL at +-3 mg/dL/min."""
    up = 40.0 + 15.0 * np.arange(24)
    one = np.concatenate((up, up[::-1] + 15.0))
    return np.tile(one, ramps // 2)


def test_perfect_sensor_passes_everything() -> None:
    ref = _reference()
    report = check_icgm(ref, ref)
    assert report.passed, report
    assert {r.code for r in report.results} == set("ABCDEFGHIJK")


def test_relative_bias_fails_the_15_and_20_percent_criteria_only() -> None:
    ref = _reference()
    sensor = ref * 1.25
    report = check_icgm(sensor, ref)
    outcome = {r.code: r.outcome for r in report.results}
    assert outcome["B"] is Outcome.FAIL and outcome["C"] is Outcome.FAIL
    assert outcome["G"] is Outcome.FAIL
    assert outcome["E"] is Outcome.PASS and outcome["F"] is Outcome.PASS
    # Below 70 the trace reads 40 and 55 mg/dL: +25 % stays within +-15 mg/dL (A and D pass).
    assert outcome["A"] is Outcome.PASS and outcome["D"] is Outcome.PASS
    assert check_icgm(ref + 16.0, ref).by_code("A").outcome is Outcome.FAIL


def test_a_single_dangerous_pair_fails_h_or_i() -> None:
    ref = _reference()
    sensor = ref.copy()
    high = np.flatnonzero(ref > 300)[0]
    sensor[high] = 65.0  # reads low while truly high
    report = check_icgm(sensor, ref)
    assert report.by_code("H").outcome is Outcome.FAIL
    assert report.by_code("H").hits == 1
    assert report.by_code("I").outcome is Outcome.PASS
    low = np.flatnonzero(ref < 60)[0]
    sensor = ref.copy()
    sensor[low] = 190.0
    assert check_icgm(sensor, ref).by_code("I").outcome is Outcome.FAIL


def test_confidence_bound_decides_a_borderline_share() -> None:
    # B needs more than 70 % within +-15 %: 72 of 100 passes as a point estimate, but the lower
    # one-sided 95 % bound (about 63.7 %) does not.
    ref = np.full(100, 120.0)
    sensor = ref.copy()
    sensor[72:] = 150.0  # 25 % off
    b_point = check_icgm(sensor, ref, confidence=False).by_code("B")
    b_bound = check_icgm(sensor, ref, confidence=True).by_code("B")
    assert b_point.outcome is Outcome.PASS and b_point.share_pct == pytest.approx(72.0)
    assert b_bound.outcome is Outcome.FAIL
    assert b_bound.bound_pct == pytest.approx(100 * clopper_pearson(72, 100)[0])
    assert 60.0 < (b_bound.bound_pct or 0) < 70.0


def test_ranges_without_pairs_are_not_evaluated() -> None:
    ref = np.linspace(100.0, 150.0, 50)
    report = check_icgm(ref, ref)
    assert report.by_code("A").outcome is Outcome.NOT_EVALUATED
    assert report.by_code("A").pairs == 0
    assert not report.passed  # cannot claim iCGM accuracy without low readings


def test_rate_of_change_in_the_wrong_direction_fails_j_and_k() -> None:
    # Two series sampled every 5 minutes: one falling, one rising at 3 mg/dL/min.
    steps = 200
    truth = np.stack((400.0 - 15.0 * np.arange(steps + 1), 40.0 + 15.0 * np.arange(steps + 1)))
    j = check_icgm(truth, truth, confidence=False).by_code("J")
    assert j.pairs == steps and j.hits == 0 and j.outcome is Outcome.PASS
    wrong = truth.copy()
    for k in range(1, 21, 2):  # 10 jumps up (by 10 mg/dL in 5 min) where the truth falls
        wrong[0, k] = truth[0, k - 1] + 10.0
    report = check_icgm(wrong, truth, confidence=False)
    assert report.by_code("J").outcome is Outcome.FAIL
    assert report.by_code("J").hits == 10
    assert report.by_code("K").outcome is Outcome.PASS
    # One wrong-way reading in 200 rising steps: 0.5 % passes as a point estimate, but its
    # upper one-sided 95 % bound (about 2.4 %) is above 1 %.
    flipped = truth.copy()
    flipped[1, 5] = truth[1, 4] - 10.0
    k_point = check_icgm(flipped, truth, confidence=False).by_code("K")
    assert k_point.hits == 1 and k_point.share_pct == pytest.approx(0.5)
    assert k_point.outcome is Outcome.PASS
    assert check_icgm(flipped, truth, confidence=True).by_code("K").outcome is Outcome.FAIL
    # A gentle wrong-way drift (0.5 mg/dL/min) is tolerated unless wrong_way is lowered to 0.
    drift = truth.copy()
    drift[0, 1] = truth[0, 0] + 2.5
    assert check_icgm(drift, truth, confidence=False).by_code("J").hits == 0
    assert check_icgm(drift, truth, confidence=False, wrong_way=0.0).by_code("J").hits == 1


def test_missing_pairs_and_bad_shapes() -> None:
    ref = np.array([100.0, np.nan, 120.0])
    report = check_icgm(np.array([100.0, 110.0, np.nan]), ref, confidence=False)
    assert report.by_code("G").pairs == 1
    with pytest.raises(ValueError, match="shape"):
        check_icgm([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="increase"):
        check_icgm([1.0, 2.0], [1.0, 2.0], minutes=[5.0, 5.0])


def test_clopper_pearson_edges() -> None:
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    low, high = clopper_pearson(0, 299)
    assert low == 0.0 and high == pytest.approx(0.01, abs=2e-4)
    low, high = clopper_pearson(50, 50)
    assert high == 1.0 and low == pytest.approx(0.05 ** (1 / 50))
