"""The cohort model: steady state, stepping semantics, independence of patients, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

import pumpguard.physiology.model as model_module
from pumpguard.physiology import (
    MINUTES_PER_DAY,
    STATE_SIZE,
    Cohort,
    InputError,
    StateIndex,
    UnknownPatientError,
    get_patient,
    patient_names,
)


@pytest.fixture(scope="module")
def everyone() -> Cohort:
    return Cohort(patient_names())


def test_basal_keeps_every_patient_at_its_steady_state(everyone: Cohort) -> None:
    start = everyone.reset()
    expected = np.array([get_patient(n).initial_bg_mgdl for n in everyone.names])
    assert start == pytest.approx(expected)
    bg = everyone.run(
        np.zeros(MINUTES_PER_DAY), np.repeat(everyone.basal_u_per_min[:, None], 1440, axis=1)
    )
    drift = np.abs(bg - start[:, None]).max(axis=1)
    # The shipped initial states are rounded steady states: a day of basal moves them by less
    # than 0.1 mg/dL (simglucose's own integration of the same states drifts the same way).
    assert drift.max() < 0.1, dict(zip(everyone.names, drift.round(4), strict=True))


def test_a_meal_raises_glucose_and_insulin_lowers_it() -> None:
    cohort = Cohort(["adult#001", "adult#001", "adult#001"])
    basal = cohort.basal_u_per_min
    carbs = np.zeros((3, 300))
    insulin = np.repeat(basal[:, None], 300, axis=1)
    carbs[1, 10] = 60.0
    insulin[2, 10] += 3.0
    bg = cohort.run(carbs, insulin)
    assert bg[1].max() > bg[0].max() + 40
    assert bg[2].min() < bg[0].min() - 20
    assert bg[0] == pytest.approx(bg[0, 0], abs=0.05)


def test_step_is_run_one_minute_at_a_time() -> None:
    names = ["child#003", "adolescent#007"]
    rng = np.random.default_rng(4)
    carbs = np.where(rng.random((2, 200)) < 0.03, rng.uniform(0, 30, (2, 200)), 0.0)
    a, b = Cohort(names), Cohort(names)
    insulin = a.basal_u_per_min[:, None] * rng.uniform(0, 3, (2, 200))
    together = a.run(carbs, insulin)
    one_by_one = np.stack([b.step(carbs[:, m], insulin[:, m]) for m in range(200)], axis=1)
    assert np.array_equal(together, one_by_one)
    assert a.minute == b.minute == 200
    assert np.array_equal(a.state, b.state)


def test_multi_minute_step_spreads_insulin_and_hands_carbs_over_at_once() -> None:
    a, b = Cohort(["adult#004"]), Cohort(["adult#004"])
    basal = a.basal_u_per_min
    end = a.step(20.0, basal * 5, minutes=5)
    b.step(20.0, basal)
    for _ in range(4):
        last = b.step(0.0, basal)
    assert np.array_equal(end, last)
    assert a.minute == 5


def test_patients_do_not_influence_each_other() -> None:
    carbs = np.zeros(600)
    carbs[30] = 70.0
    alone = Cohort(["child#007"])
    insulin = alone.basal_u_per_min[0] + np.where(np.arange(600) == 30, 2.0, 0.0)
    solo = alone.run(carbs, insulin)[0]
    crowd = Cohort(["adult#002", "child#007", "adolescent#005"])
    inputs_c = np.stack([np.zeros(600), carbs, carbs * 2])
    inputs_i = np.stack([crowd.basal_u_per_min[0] * np.ones(600), insulin, insulin * 3])
    assert np.array_equal(crowd.run(inputs_c, inputs_i)[1], solo)


def test_state_shape_order_and_reset() -> None:
    cohort = Cohort(["adult#001", "child#001"])
    state = cohort.state
    assert state.shape == (2, STATE_SIZE)
    assert state[0] == pytest.approx(get_patient("adult#001").initial_state)
    params = get_patient("adult#001").params
    assert cohort.bg_mgdl[0] == pytest.approx(state[0, StateIndex.G_S] / params["Vg"])
    cohort.step(50.0, 1.0)
    cohort.step(0.0, 0.0)
    assert cohort.minute == 2
    assert not np.allclose(cohort.state, state)
    cohort.reset()
    assert cohort.minute == 0 and np.array_equal(cohort.state, state)
    custom = state.copy()
    custom[:, StateIndex.G_P] *= 1.2
    cohort.reset(custom)
    assert np.array_equal(cohort.state, custom)


def test_meals_queue_at_five_grams_a_minute() -> None:
    """40 g handed over at once is eaten over 8 minutes, like 5 g handed over each minute."""
    at_once, spread = Cohort(["adult#005"]), Cohort(["adult#005"])
    carbs_a, carbs_b = np.zeros(120), np.zeros(120)
    carbs_a[10] = 40.0
    carbs_b[10:18] = 5.0
    insulin = at_once.basal_u_per_min[0] * np.ones(120)
    assert at_once.run(carbs_a, insulin) == pytest.approx(spread.run(carbs_b, insulin), abs=1e-9)


def test_sub_stepped_gut_agrees_between_float_and_array_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = patient_names()
    carbs = np.zeros((30, 240))
    carbs[:, 5] = 70.0
    insulin = Cohort(names).basal_u_per_min[:, None] * np.ones(240)
    floats = Cohort(names)
    bg_floats = floats.run(carbs, insulin)
    assert floats.substepped > 0
    monkeypatch.setattr(model_module, "_SCALAR_MAX", 0)
    arrays = Cohort(names)
    assert arrays.run(carbs, insulin) == pytest.approx(bg_floats, abs=1e-9)
    assert arrays.substepped == floats.substepped


def test_bad_inputs_are_refused_by_name() -> None:
    cohort = Cohort(["adult#001", "adult#002"])
    with pytest.raises(InputError, match="insulin_u must not be negative"):
        cohort.step(0.0, [-0.1, 0.0])
    with pytest.raises(InputError, match="carbs_g must be finite"):
        cohort.step(float("nan"), 0.0)
    with pytest.raises(InputError, match="carbs_g has shape"):
        cohort.step([1.0, 2.0, 3.0], 0.0)
    with pytest.raises(InputError, match="minutes"):
        cohort.step(0.0, 0.0, minutes=0)
    with pytest.raises(InputError, match="insulin_u"):
        cohort.run(np.zeros((2, 10)), np.zeros((2, 9)))
    with pytest.raises(InputError, match="state"):
        cohort.reset(np.zeros((3, STATE_SIZE)))
    assert cohort.minute == 0
    with pytest.raises(UnknownPatientError, match="adult#001"):
        Cohort(["adult#011"])
    with pytest.raises(ValueError, match="at least one"):
        Cohort([])
