"""Glycemic metrics on traces small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pumpguard.physiology import (
    coefficient_of_variation,
    gmi,
    hbgi,
    lbgi,
    mean_glucose,
    risk_function,
    summarise,
    time_above,
    time_below,
    time_in_range,
)

# Ten readings: 2 below 54, 1 more below 70, 4 in range (70 and 180 included), 1 in
# 180-250, 2 above 250.
TRACE = [40.0, 50.0, 60.0, 70.0, 100.0, 150.0, 180.0, 200.0, 260.0, 300.0]


def test_time_shares_follow_the_consensus_boundaries() -> None:
    assert float(time_in_range(TRACE)) == pytest.approx(40.0)
    assert float(time_below(TRACE, 70.0)) == pytest.approx(30.0)
    assert float(time_below(TRACE, 54.0)) == pytest.approx(20.0)
    assert float(time_above(TRACE, 180.0)) == pytest.approx(30.0)
    assert float(time_above(TRACE, 250.0)) == pytest.approx(20.0)


def test_mean_cv_and_gmi() -> None:
    mean = sum(TRACE) / len(TRACE)
    sd = math.sqrt(sum((x - mean) ** 2 for x in TRACE) / (len(TRACE) - 1))
    assert float(mean_glucose(TRACE)) == pytest.approx(mean)
    assert float(coefficient_of_variation(TRACE)) == pytest.approx(100.0 * sd / mean)
    # Bergenstal 2018: a mean of 154 mg/dL corresponds to a GMI of 6.99 %.
    assert float(gmi([154.0, 154.0])) == pytest.approx(3.31 + 0.02392 * 154.0)
    assert float(gmi([154.0, 154.0])) == pytest.approx(6.99, abs=0.005)


def _f(bg: float) -> float:
    return 1.509 * (math.log(bg) ** 1.084 - 5.381)


def test_risk_function_matches_kovatchev() -> None:
    # The scale is symmetric around 112.5 mg/dL and reaches risk ~100 at 20 and 600 mg/dL.
    assert abs(_f(112.5)) < 0.01
    assert float(risk_function(112.5)) == pytest.approx(_f(112.5))
    assert 10 * _f(20.0) ** 2 == pytest.approx(100.0, rel=0.01)
    assert 10 * _f(600.0) ** 2 == pytest.approx(100.0, rel=0.01)
    # Hand value: ln 50 = 3.91202, ^1.084 = 4.38695, f = 1.509 (4.38695 - 5.381) = -1.50001
    assert float(risk_function(50.0)) == pytest.approx(-1.50001, abs=1e-4)


def test_lbgi_and_hbgi_average_over_all_readings() -> None:
    trace = [50.0, 112.5, 250.0, 100.0]
    low = [10 * _f(x) ** 2 if _f(x) < 0 else 0.0 for x in trace]
    high = [10 * _f(x) ** 2 if _f(x) > 0 else 0.0 for x in trace]
    assert float(lbgi(trace)) == pytest.approx(sum(low) / 4)
    assert float(hbgi(trace)) == pytest.approx(sum(high) / 4)
    # 50 mg/dL alone: r = 10 x 1.50001^2 = 22.500
    assert float(lbgi([50.0])) == pytest.approx(22.500, abs=0.001)
    assert float(hbgi([50.0])) == 0.0
    assert float(lbgi([250.0])) == 0.0


def test_metrics_are_per_series_and_skip_missing_readings() -> None:
    bg = np.array([[100.0, 200.0, np.nan], [60.0, 60.0, 60.0]])
    assert time_in_range(bg).tolist() == pytest.approx([50.0, 0.0])
    assert mean_glucose(bg).tolist() == pytest.approx([150.0, 60.0])
    rows = summarise(bg)
    assert [r.readings for r in rows] == [2, 3]
    assert rows[1].tbr_70_pct == pytest.approx(100.0)
    assert rows[1].cv_pct == pytest.approx(0.0)
    assert set(rows[0].as_dict()) >= {"tir_70_180_pct", "lbgi", "hbgi", "gmi_pct"}


def test_glucose_at_or_below_zero_still_scores() -> None:
    assert math.isfinite(float(lbgi([0.0, -1e-9, 80.0])))
    with pytest.raises(ValueError, match="series"):
        time_in_range(100.0)
