"""The bolus calculator ("bolus wizard"): carbs, correction, insulin on board.

    carb_u       = carbs_g / carb_ratio
    correction_u = (BG - target_high) / ISF   when BG is above the correction range
                 = (BG - target_low) / ISF    when BG is below it (negative)
                 = 0                          inside the range
    total        = carb_u + correction_u - max(IOB, 0), at least 0,
                   rounded down to the pump's bolus step, at most max bolus

Below the suspend threshold the calculator recommends nothing (treat the low first). Inputs out
of any plausible range are refused with ``BolusInputError`` rather than guessed at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from pumpguard.devices.controller.settings import TherapySettings

__all__ = ["BolusCalculator", "BolusInputError", "BolusRecommendation"]

MAX_CARBS_G = 250.0
GLUCOSE_RANGE_MGDL = (20.0, 600.0)


class BolusInputError(ValueError):
    """An input the calculator will not compute with."""


@dataclass(frozen=True, slots=True)
class BolusRecommendation:
    carb_u: float
    correction_u: float
    iob_u: float
    unrounded_u: float
    amount_u: Decimal
    """What to deliver: rounded down to the bolus step and capped at max bolus."""
    capped: bool
    note: str = ""


class BolusCalculator:
    def __init__(self, settings: TherapySettings, *, step_u: Decimal = Decimal("0.05")) -> None:
        if step_u <= 0:
            raise ValueError("the bolus step must be positive")
        self.settings = settings
        self.step_u = step_u

    def recommend(
        self,
        carbs_g: float,
        glucose_mgdl: float | None,
        iob_u: float = 0.0,
        *,
        correct_high: bool = True,
    ) -> BolusRecommendation:
        """``correct_high=False`` leaves out a correction above range (a bolus was given too
        recently: its insulin is still acting); a correction below range always applies."""
        s = self.settings
        if not _number(carbs_g) or not 0 <= carbs_g <= MAX_CARBS_G:
            raise BolusInputError(f"carbs must be a number from 0 to {MAX_CARBS_G:g} g")
        if not _number(iob_u):
            raise BolusInputError("insulin on board must be a finite number")
        low, high = GLUCOSE_RANGE_MGDL
        if glucose_mgdl is not None and (
            not _number(glucose_mgdl) or not low <= glucose_mgdl <= high
        ):
            raise BolusInputError(f"glucose must be a number from {low:g} to {high:g} mg/dL")
        carb_u = carbs_g / s.carb_ratio_g_per_u
        correction_u = 0.0
        note = ""
        if glucose_mgdl is None:
            note = "no glucose value: carbs only, no correction"
        elif glucose_mgdl < s.suspend_threshold_mgdl and not (s.carbs_when_low and carbs_g > 0):
            return BolusRecommendation(
                carb_u,
                0.0,
                iob_u,
                0.0,
                Decimal(0),
                False,
                f"glucose {glucose_mgdl:g} mg/dL is below the suspend threshold: treat the low",
            )
        elif glucose_mgdl > s.target_high_mgdl:
            if not correct_high:
                note = "a bolus was given recently: no correction above range"
            else:
                correction_u = (glucose_mgdl - s.target_high_mgdl) / s.isf_mgdl_per_u
        elif glucose_mgdl < s.target_low_mgdl:
            correction_u = (glucose_mgdl - s.target_low_mgdl) / s.isf_mgdl_per_u
        unrounded = max(0.0, carb_u + correction_u - max(iob_u, 0.0))
        steps = math.floor(unrounded / float(self.step_u) + 1e-9)
        amount = Decimal(steps) * self.step_u
        cap = Decimal(str(s.max_bolus_u))
        capped = amount > cap
        if capped:
            amount = (cap / self.step_u).to_integral_value(rounding="ROUND_DOWN") * self.step_u
            note = f"capped at max bolus {s.max_bolus_u:g} U"
        return BolusRecommendation(carb_u, correction_u, iob_u, unrounded, amount, capped, note)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
