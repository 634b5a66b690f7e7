"""Meal scenarios, fixed and seeded random, and the open-loop therapy built on them."""

from __future__ import annotations

import numpy as np
import pytest

from pumpguard.physiology import (
    DEFAULT_MEAL_SLOTS,
    MINUTES_PER_DAY,
    FixedScenario,
    Meal,
    RandomMealScenario,
    carbs_array,
    get_patient,
    standard_therapy,
)


def test_fixed_scenario_repeats_every_day() -> None:
    scenario = FixedScenario.three_meals()
    carbs = scenario.carbs(2, 2 * MINUTES_PER_DAY)
    assert carbs.shape == (2, 2880)
    assert np.flatnonzero(carbs[0]).tolist() == [420, 720, 1080, 1860, 2160, 2520]
    assert carbs[0, 720] == 70.0 and carbs.sum() == 2 * 2 * 195.0
    once = FixedScenario((Meal(30, 10.0), Meal(30, 5.0)), daily=False)
    assert once.carbs(1, 3000)[0, 30] == 15.0 and once.carbs(1, 3000).sum() == 15.0


def test_meals_must_make_sense() -> None:
    with pytest.raises(ValueError, match="negative"):
        Meal(-1, 10.0)
    with pytest.raises(ValueError, match="carbs"):
        Meal(10, -5.0)


def test_random_meals_are_seeded_per_patient() -> None:
    a = RandomMealScenario(seed=7)
    assert a.meals(3, 2) == RandomMealScenario(seed=7).meals(3, 2)
    assert a.meals(3, 2) != RandomMealScenario(seed=8).meals(3, 2)
    assert a.meals(0, 1) != a.meals(1, 1)
    # Patient 2 eats the same whether the cohort has 3 or 50 patients.
    assert np.array_equal(a.carbs(3, 1440)[2], a.carbs(50, 1440)[2])


def test_random_meals_stay_in_their_windows() -> None:
    scenario = RandomMealScenario(seed=1)
    main = [s for s in DEFAULT_MEAL_SLOTS if s.probability > 0.9]
    counts = []
    for patient in range(40):
        meals = scenario.meals(patient, 3)
        counts.append(len(meals))
        for meal in meals:
            minute = meal.minute % MINUTES_PER_DAY
            assert any(s.earliest_min <= minute <= s.latest_min for s in DEFAULT_MEAL_SLOTS)
            assert meal.carbs_g == round(meal.carbs_g) and meal.carbs_g > 0
    assert 3 * len(main) * 0.8 < np.mean(counts) < 3 * len(DEFAULT_MEAL_SLOTS)


def test_carbs_array_adds_meals_and_drops_late_ones() -> None:
    carbs = carbs_array([[Meal(0, 5.0), Meal(0, 1.0), Meal(99, 3.0)], []], 10)
    assert carbs.tolist()[0][0] == 6.0 and carbs.sum() == 6.0


def test_standard_therapy_is_basal_plus_carb_ratio_bolus() -> None:
    names = ["adult#001", "child#002"]
    carbs = np.zeros(30)
    carbs[10] = 60.0
    insulin = standard_therapy(names, carbs)
    for i, name in enumerate(names):
        p = get_patient(name)
        assert insulin[i, 0] == pytest.approx(p.basal_u_per_min)
        assert insulin[i, 10] == pytest.approx(p.basal_u_per_min + 60.0 / p.carb_ratio_g_per_u)
    missed = standard_therapy(names, carbs, bolus_fraction=0.0)
    assert missed[:, 10] == pytest.approx(missed[:, 0])
    with pytest.raises(ValueError, match="shape"):
        standard_therapy(names, np.zeros((3, 30)))
