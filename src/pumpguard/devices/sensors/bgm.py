"""A blood glucose (fingerstick) meter as a deterministic device.

Each measurement goes through the physiology package's meter error model
(``physiology.BgmMeter``, sized for ISO 15197:2013 accuracy) with the meter's own seeded
generator, is stamped with the ``Clock``'s time and kept in the meter's memory. The meter
reports values in its measuring range (20-600 mg/dL by default) and refuses to measure with no
test strips left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pumpguard.clock import Clock
from pumpguard.physiology import BgmMeter, BgmModel

__all__ = ["BgmReading", "FingerstickMeter", "MeterError"]


class MeterError(RuntimeError):
    """The meter cannot measure (no strips, impossible input)."""


@dataclass(frozen=True, slots=True)
class BgmReading:
    time_ms: int
    glucose_mgdl: float


class FingerstickMeter:
    """One patient's meter with ``strips`` test strips."""

    def __init__(
        self, clock: Clock, *, seed: int, model: BgmModel | None = None, strips: int = 50
    ) -> None:
        if strips < 0:
            raise ValueError("strips must not be negative")
        self.model = model or BgmModel()
        self._clock = clock
        self._meter = BgmMeter(self.model, seed)
        self._strips = strips
        self._memory: list[BgmReading] = []

    @property
    def strips(self) -> int:
        return self._strips

    @property
    def memory(self) -> tuple[BgmReading, ...]:
        return tuple(self._memory)

    def measure(self, true_bg_mgdl: float) -> BgmReading:
        """Use one strip on blood with ``true_bg_mgdl``; return and remember the reading."""
        if not np.isfinite(true_bg_mgdl) or true_bg_mgdl < 0:
            raise MeterError("blood glucose must be a finite number, not negative")
        if self._strips == 0:
            raise MeterError("no test strips left")
        self._strips -= 1
        value = float(self._meter.measure(np.array([true_bg_mgdl]))[0])
        reading = BgmReading(self._clock.now_ms(), value)
        self._memory.append(reading)
        return reading
