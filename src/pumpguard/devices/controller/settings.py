"""Therapy settings a controller runs on, and the guardrails that refuse unsafe ones.

Allowed ranges are Loop's guardrails (LoopKit/Loop, ``Guardrail`` definitions, as summarised in
docs/devices/insulin-system.md): suspend threshold 67-110 mg/dL, correction range 87-180 mg/dL,
insulin sensitivity 10-500 mg/dL/U, carb ratio 2-150 g/U, scheduled basal 0-30 U/h, maximum
bolus at most 30 U. Maximum basal and maximum IOB are capped by AndroidAPS's largest hard
limits (resistant adult: 12 U/h basal, 30 U IOB). A settings object that breaks any rule
cannot be built: ``GuardrailError`` lists every problem at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["GUARDRAILS", "Guardrail", "GuardrailError", "TherapySettings"]


class GuardrailError(ValueError):
    """Therapy settings outside the allowed ranges; ``problems`` names each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("unsafe therapy settings: " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Guardrail:
    name: str
    low: float
    high: float
    unit: str
    low_inclusive: bool = True


GUARDRAILS = {
    "suspend_threshold_mgdl": Guardrail("suspend threshold", 67, 110, "mg/dL"),
    "target_low_mgdl": Guardrail("correction range low", 87, 180, "mg/dL"),
    "target_high_mgdl": Guardrail("correction range high", 87, 180, "mg/dL"),
    "isf_mgdl_per_u": Guardrail("insulin sensitivity", 10, 500, "mg/dL/U"),
    "carb_ratio_g_per_u": Guardrail("carb ratio", 2, 150, "g/U"),
    "basal_u_h": Guardrail("scheduled basal", 0, 30, "U/h"),
    "max_bolus_u": Guardrail("max bolus", 0, 30, "U", low_inclusive=False),
    "max_basal_u_h": Guardrail("max basal", 0, 12, "U/h", low_inclusive=False),
    "max_iob_u": Guardrail("max IOB", 0, 30, "U"),
}
"""Allowed range of each setting (see the module notes for sources)."""


@dataclass(frozen=True, slots=True)
class TherapySettings:
    """One patient's settings (a flat scheduled basal; glucose in mg/dL)."""

    carb_ratio_g_per_u: float
    isf_mgdl_per_u: float
    basal_u_h: float
    target_low_mgdl: float = 100.0
    target_high_mgdl: float = 110.0
    suspend_threshold_mgdl: float = 70.0
    max_bolus_u: float = 10.0
    max_basal_u_h: float = 4.0
    max_iob_u: float = 5.0
    smb: bool = False
    correction_wait_min: float = 0.0
    carbs_when_low: bool = False
    """Below the suspend threshold, still cover announced carbs (less the correction below
    range) rather than recommend nothing: the meal treats the low, and a meal without insulin
    ends far above range."""
    """No correction above range within this many minutes of the last bolus (stacking rule);
    0 corrects at every bolus. A correction below range (a smaller bolus) always applies."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        for field, rail in GUARDRAILS.items():
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"{rail.name} must be a number")
                continue
            if not math.isfinite(value):
                problems.append(f"{rail.name} must be a finite number")
                continue
            above_low = value >= rail.low if rail.low_inclusive else value > rail.low
            if not (above_low and value <= rail.high):
                bracket = "[" if rail.low_inclusive else "("
                problems.append(
                    f"{rail.name} {value:g} {rail.unit} is outside the allowed range "
                    f"{bracket}{rail.low:g}, {rail.high:g}]"
                )
        wait = self.correction_wait_min
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= 1440:
            problems.append("correction wait must be 0 to 1440 min")
        if not problems:
            if self.target_low_mgdl > self.target_high_mgdl:
                problems.append("correction range low is above correction range high")
            if self.suspend_threshold_mgdl > self.target_low_mgdl:
                problems.append("suspend threshold is above the correction range")
            if self.basal_u_h > self.max_basal_u_h:
                problems.append(
                    f"scheduled basal {self.basal_u_h:g} U/h is above max basal "
                    f"{self.max_basal_u_h:g} U/h"
                )
        if problems:
            raise GuardrailError(problems)

    @property
    def target_mgdl(self) -> float:
        """The middle of the correction range: what corrections aim for."""
        return (self.target_low_mgdl + self.target_high_mgdl) / 2.0

    @property
    def max_safe_basal_u_h(self) -> float:
        """oref0: min(max basal, 3 x max daily basal, 4 x current basal) (flat schedule)."""
        return min(self.max_basal_u_h, 3.0 * self.basal_u_h, 4.0 * self.basal_u_h)

    @property
    def low_threshold_mgdl(self) -> float:
        """Predictive suspend threshold: oref0's min_bg - 0.5 (min_bg - 40), never below the
        user's suspend threshold."""
        oref0 = self.target_low_mgdl - 0.5 * (self.target_low_mgdl - 40.0)
        return max(oref0, self.suspend_threshold_mgdl)
