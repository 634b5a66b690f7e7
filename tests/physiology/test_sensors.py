"""CGM and meter error models: seeded, reproducible, and shaped as documented."""

from __future__ import annotations

import numpy as np
import pytest

from pumpguard.physiology import (
    ISO15197_REQUIRED_PCT,
    BgmMeter,
    BgmModel,
    CgmModel,
    CgmSensor,
    iso15197_within_pct,
)


def _truth(patients: int = 3, minutes: int = 600) -> np.ndarray:
    t = np.arange(minutes)
    return np.stack([140 + 60 * np.sin(t / 90 + k) for k in range(patients)])


def test_cgm_noise_is_reproducible_from_its_seed() -> None:
    truth = _truth()
    a = CgmSensor(CgmModel(), 3, seed=11).trace(truth)
    b = CgmSensor(CgmModel(), 3, seed=11).trace(truth)
    c = CgmSensor(CgmModel(), 3, seed=12).trace(truth)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_a_patients_sensor_does_not_depend_on_the_cohort() -> None:
    truth = _truth(5)
    small = CgmSensor(CgmModel(), 2, seed=3).trace(truth[:2])
    large = CgmSensor(CgmModel(), 5, seed=3).trace(truth)
    assert np.array_equal(small, large[:2])


def test_cgm_samples_every_five_minutes_and_holds() -> None:
    sensor = CgmSensor(CgmModel(), 1, seed=0)
    out = sensor.trace(_truth(1, 30))[0]
    for start in range(0, 30, 5):
        assert np.all(out[start : start + 5] == out[start])
    assert out[0] != out[5]
    assert np.all(out == np.round(out))


def test_cgm_error_has_the_published_size() -> None:
    truth = np.full((200, 1440), 150.0)
    err = CgmSensor(CgmModel(), 200, seed=5).trace(truth) - truth
    # Breton & Kovatchev's Johnson SU error: a few mg/dL of negative bias, SD around 10-20.
    assert -15.0 < err.mean() < 5.0
    assert 5.0 < err.std() < 25.0
    # Consecutive 5-minute samples are strongly correlated (AR(1) on a 15-minute grid).
    samples = err[:, ::5]
    lag1 = np.corrcoef(samples[:, :-1].ravel(), samples[:, 1:].ravel())[0, 1]
    assert lag1 > 0.8


def test_cgm_lag_range_and_ideal_sensor() -> None:
    step = np.concatenate((np.full(60, 100.0), np.full(120, 300.0)))[None, :]
    lagged = CgmSensor(CgmModel(noise=None, lag_minutes=10.0), 1, 0).trace(step)[0]
    assert lagged[60] < 130 and lagged[95] > 250
    assert lagged[179] == pytest.approx(300.0, abs=1.0)
    clipped = CgmSensor(CgmModel(noise=None), 1, 0).trace(np.array([[20.0, 500.0] * 5]))[0]
    assert clipped[0] == 40.0 and clipped[5] == 400.0
    ideal = CgmSensor(CgmModel.ideal(), 1, 0).trace(step)[0]
    assert np.array_equal(ideal, step[0])


def test_cgm_model_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="interval"):
        CgmModel(sample_minutes=0)
    with pytest.raises(ValueError, match="range"):
        CgmModel(low_mgdl=400, high_mgdl=40)


def test_meter_meets_iso_15197_and_is_seeded() -> None:
    truth = np.random.default_rng(0).uniform(40, 400, 5000)
    readings = BgmMeter(BgmModel(), seed=9).measure(truth)
    assert np.array_equal(readings, BgmMeter(BgmModel(), seed=9).measure(truth))
    share = iso15197_within_pct(readings, truth)
    assert share > 98.0 > ISO15197_REQUIRED_PCT
    biased = BgmMeter(BgmModel(bias_pct=12.0), seed=9).measure(truth)
    assert iso15197_within_pct(biased, truth) < ISO15197_REQUIRED_PCT
    with pytest.raises(ValueError, match="same size"):
        iso15197_within_pct([1.0], [1.0, 2.0])
