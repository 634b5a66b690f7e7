"""Meal scenarios (fixed or seeded random) and the open-loop therapy that goes with them.

A scenario says when each virtual patient is handed carbohydrate; the model then eats it at up
to 5 g/min (``EAT_RATE_G_PER_MIN``). Scenarios produce plain per-minute arrays, the same shape
``Cohort.run`` and ``pumpguard sim replay`` take, so any experiment can be written down as a
CSV file and replayed elsewhere, against simglucose for instance.

The random day follows the usual in-silico trial shape (breakfast, lunch and dinner almost
always; three optional snacks), with the slot table simglucose's random scenario uses, so
results are comparable; the generator is our own and seeded per patient, so a patient's meals
do not change when the cohort around it does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import truncnorm  # type: ignore[import-untyped]

from pumpguard.physiology.patients import VirtualPatient, get_patients

__all__ = [
    "DEFAULT_MEAL_SLOTS",
    "MINUTES_PER_DAY",
    "FixedScenario",
    "Meal",
    "MealSlot",
    "RandomMealScenario",
    "Scenario",
    "carbs_array",
    "standard_therapy",
]

FloatArray = npt.NDArray[np.float64]

MINUTES_PER_DAY = 1440


@dataclass(frozen=True, order=True)
class Meal:
    """Carbohydrate handed to a patient at one minute of the simulation."""

    minute: int
    carbs_g: float

    def __post_init__(self) -> None:
        if self.minute < 0:
            raise ValueError(f"meal minute must not be negative, got {self.minute}")
        if not np.isfinite(self.carbs_g) or self.carbs_g < 0:
            raise ValueError(f"meal carbs must be a non-negative number, got {self.carbs_g}")


class Scenario(ABC):
    """What each patient is handed, and when. Subclasses implement ``meals``."""

    @abstractmethod
    def meals(self, patient: int, days: int) -> tuple[Meal, ...]:
        """Meals of the patient at position ``patient`` in the cohort over ``days`` days."""

    def carbs(self, patients: int, minutes: int) -> FloatArray:
        """The per-minute carbohydrate array, shape (patients, minutes)."""
        days = -(-minutes // MINUTES_PER_DAY)
        return carbs_array([self.meals(i, days) for i in range(patients)], minutes)


@dataclass(frozen=True)
class FixedScenario(Scenario):
    """The same meals for every patient, repeated every day when ``daily`` is set."""

    schedule: tuple[Meal, ...]
    daily: bool = True

    def meals(self, patient: int, days: int) -> tuple[Meal, ...]:
        if not self.daily:
            return self.schedule
        return tuple(
            Meal(day * MINUTES_PER_DAY + m.minute, m.carbs_g)
            for day in range(days)
            for m in self.schedule
            if m.minute < MINUTES_PER_DAY
        )

    @classmethod
    def three_meals(cls) -> FixedScenario:
        """Breakfast 45 g at 07:00, lunch 70 g at 12:00, dinner 80 g at 18:00, every day."""
        return cls((Meal(420, 45.0), Meal(720, 70.0), Meal(1080, 80.0)))


@dataclass(frozen=True)
class MealSlot:
    """One possible meal of the day: how likely, when (truncated normal), how big (normal)."""

    probability: float
    earliest_min: int
    latest_min: int
    mean_min: float
    sd_min: float
    mean_g: float
    sd_g: float


DEFAULT_MEAL_SLOTS = (
    MealSlot(0.95, 300, 540, 420.0, 60.0, 45.0, 10.0),  # breakfast
    MealSlot(0.30, 540, 600, 570.0, 30.0, 10.0, 5.0),  # morning snack
    MealSlot(0.95, 600, 840, 720.0, 60.0, 70.0, 10.0),  # lunch
    MealSlot(0.30, 840, 960, 900.0, 30.0, 10.0, 5.0),  # afternoon snack
    MealSlot(0.95, 960, 1200, 1080.0, 60.0, 80.0, 10.0),  # dinner
    MealSlot(0.30, 1200, 1380, 1290.0, 30.0, 10.0, 5.0),  # late snack
)
"""The slot table of simglucose's random scenario (probabilities, windows, sizes)."""


@dataclass(frozen=True)
class RandomMealScenario(Scenario):
    """Seeded random meals: each patient draws its own days from its own stream.

    Patient ``i`` of a scenario with seed ``s`` always gets the same meals, whatever the cohort
    size: its generator is seeded from ``(s, i)``. Amounts are rounded to whole grams.
    """

    seed: int
    slots: tuple[MealSlot, ...] = DEFAULT_MEAL_SLOTS

    def meals(self, patient: int, days: int) -> tuple[Meal, ...]:
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(patient,)))
        out: list[Meal] = []
        for day in range(days):
            for slot in self.slots:
                if rng.random() >= slot.probability:
                    continue
                low = (slot.earliest_min - slot.mean_min) / slot.sd_min
                high = (slot.latest_min - slot.mean_min) / slot.sd_min
                when = truncnorm.rvs(low, high, slot.mean_min, slot.sd_min, random_state=rng)
                grams = max(round(rng.normal(slot.mean_g, slot.sd_g)), 0)
                if grams > 0:
                    out.append(Meal(day * MINUTES_PER_DAY + round(float(when)), float(grams)))
        return tuple(sorted(out))


def carbs_array(meals: Sequence[Iterable[Meal]], minutes: int) -> FloatArray:
    """Per-minute carbohydrate, shape (patients, minutes), from each patient's meals.

    Meals at the same minute add up; meals at or after ``minutes`` are left out.
    """
    out = np.zeros((len(meals), minutes))
    for i, patient_meals in enumerate(meals):
        for meal in patient_meals:
            if meal.minute < minutes:
                out[i, meal.minute] += meal.carbs_g
    return out


def standard_therapy(
    patients: Iterable[str | VirtualPatient],
    carbs: npt.ArrayLike,
    *,
    bolus_fraction: float = 1.0,
    basal_fraction: float = 1.0,
) -> FloatArray:
    """Open-loop insulin: each patient's steady basal every minute, plus a meal bolus.

    The bolus covers the carbohydrate handed over in a minute with the patient's carb ratio
    (``CR``), delivered in that same minute (so ``bolus_fraction=0`` is a missed bolus and 1.5
    an overdose). Returns units per minute, shape (patients, minutes), like ``carbs``.
    """
    ps = get_patients(patients)
    carbs_a = np.asarray(carbs, dtype=np.float64)
    if carbs_a.ndim == 1:
        carbs_a = np.broadcast_to(carbs_a, (len(ps), carbs_a.shape[0]))
    if carbs_a.ndim != 2 or carbs_a.shape[0] != len(ps):
        raise ValueError("carbs must have shape (minutes,) or (patients, minutes)")
    basal = np.array([p.basal_u_per_min for p in ps])[:, None] * basal_fraction
    ratio = np.array([p.carb_ratio_g_per_u for p in ps])[:, None]
    return np.asarray(basal + bolus_fraction * carbs_a / ratio)
