"""Fingersticks when the CGM cannot be used: a rule that may only take insulin away.

One rule, used in two places: the controller app while its CGM is lost or distrusted
(``devices.controller.AidController``), and the pump itself while it runs its limited mode with
the link to the controller lost (values entered on the pump's keypad, ``MeterGlucose``). A meter
value every 30 minutes is too sparse to dose on, but enough to stop insulin before a low that a
flat fallback basal would otherwise run into, which is all the rule does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pumpguard.clock import MS_PER_MINUTE

__all__ = [
    "METER_HORIZON_MIN",
    "METER_MAX_AGE_MIN",
    "METER_RANGE_MGDL",
    "MeterReading",
    "MeterSuspendRule",
]

METER_MAX_AGE_MIN = 40
"""A fingerstick counts for the rule for 40 minutes: the user is asked for one every 30, plus a
margin to do it. Older, it says nothing."""
METER_HORIZON_MIN = 30
"""The rule looks 30 minutes ahead (oref0's ``BG + 3 delta`` horizon over 5-minute deltas is 15;
fingersticks come every 30 minutes, so the prediction must cover the gap)."""
METER_RANGE_MGDL = (20, 600)
"""What a blood glucose meter reports (ISO 15197 meters show "LO"/"HI" outside about 20-600)."""


@dataclass(frozen=True, slots=True)
class MeterReading:
    """A fingerstick (blood glucose meter) value."""

    time_ms: int
    glucose_mgdl: float


@dataclass(frozen=True, slots=True)
class MeterSuspendRule:
    """When fingersticks call for a zero basal: the last one below ``threshold_mgdl``, or the
    straight line through the last two below ``floor_mgdl`` ``METER_HORIZON_MIN`` after the last
    (the last at most ``METER_MAX_AGE_MIN`` old, the two at most that apart). The floor is the
    bottom of the correction range, not the threshold: fingersticks come 30 minutes apart, so a
    fall seen late must be stopped earlier than a CGM would stop it."""

    threshold_mgdl: float = 70.0
    floor_mgdl: float = 100.0

    def reason(self, readings: Sequence[MeterReading], now_ms: int) -> str | None:
        """Why the readings call for a suspend, or None."""
        max_age = METER_MAX_AGE_MIN * MS_PER_MINUTE
        if not readings:
            return None
        last = readings[-1]
        if not 0 <= now_ms - last.time_ms <= max_age:
            return None
        if last.glucose_mgdl < self.threshold_mgdl:
            return (
                f"meter {last.glucose_mgdl:.0f} < {self.threshold_mgdl:.0f} mg/dL: "
                "suspend (zero temp)"
            )
        earlier = [m for m in readings[-2:-1] if 0 < last.time_ms - m.time_ms <= max_age]
        if earlier:
            prev = earlier[0]
            slope = (last.glucose_mgdl - prev.glucose_mgdl) / (last.time_ms - prev.time_ms)
            predicted = last.glucose_mgdl + slope * METER_HORIZON_MIN * MS_PER_MINUTE
            if predicted < self.floor_mgdl:
                return (
                    f"meter predicts {predicted:.0f} < {self.floor_mgdl:.0f} mg/dL in "
                    f"{METER_HORIZON_MIN} min: suspend (zero temp)"
                )
        return None

    def hold_until_ms(self, readings: Sequence[MeterReading]) -> int | None:
        """Until when a suspend called for by ``readings`` holds without a new value."""
        if not readings:
            return None
        return readings[-1].time_ms + METER_MAX_AGE_MIN * MS_PER_MINUTE
