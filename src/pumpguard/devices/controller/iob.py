"""Net insulin on board and insulin activity, rebuilt from the pump's own history.

A controller does not trust its memory of what it asked for: it reads the pump's log (every
change to delivery is an entry with the delivery state after it) and rebuilds the delivered
rate as a step function of time. Net IOB counts delivery relative to the scheduled basal (as
oref0 does), so a patient on their scheduled basal has zero net IOB; a zero temp basal makes it
negative.

The curve is ``clinical.insulin.InsulinCurve`` (exponential, Loop/oref0). Its exact ``Decimal``
integrals are tabulated once per curve at whole minutes and interpolated linearly in floats:
controllers run every five minutes for thirty patients and only need a few significant digits.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from pumpguard.clinical import InsulinCurve
from pumpguard.clock import MS_PER_MINUTE
from pumpguard.devices.insulin import LogEntry

__all__ = ["InsulinHistory"]

FloatArray = npt.NDArray[np.float64]


@functools.lru_cache(maxsize=8)
def _tables(curve: InsulinCurve) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Minutes grid; integral of IOB fraction (U min per U/min); 1 - IOB fraction."""
    total = curve.delay_min + curve.action_min
    grid = np.arange(total + 1, dtype=np.float64)
    integral = np.array([float(curve.iob_minutes(m)) for m in range(total + 1)])
    acted = np.array([1.0 - float(curve.iob_fraction(m)) for m in range(total + 1)])
    return grid, integral, acted


class InsulinHistory:
    """Delivered-minus-scheduled rate as segments ``(start_ms, net U/h)``; IOB and activity."""

    def __init__(self, curve: InsulinCurve, start_ms: int) -> None:
        self.curve = curve
        self._grid, self._integral, self._acted = _tables(curve)
        self._total_ms = (curve.delay_min + curve.action_min) * MS_PER_MINUTE
        self._starts: list[int] = [start_ms]
        self._rates: list[float] = [0.0]
        self._extra: list[tuple[int, float]] = []

    def ingest(self, entries: Iterable[LogEntry]) -> None:
        """Take log entries (in order); each delivery snapshot starts a new segment."""
        for entry in entries:
            after = entry.after
            if after is None:
                continue
            net = float(after.total_u_h) - float(after.scheduled_u_h)
            if entry.time_ms == self._starts[-1]:
                self._rates[-1] = net
            elif net != self._rates[-1]:
                self._starts.append(entry.time_ms)
                self._rates.append(net)

    def assume_delivered(self, time_ms: int, units: float) -> None:
        """Count a dose of unknown fate as delivered in full at ``time_ms`` (conservative)."""
        self._extra.append((time_ms, units))

    def _prune(self, now_ms: int) -> None:
        cutoff = now_ms - self._total_ms
        i = 0
        while i + 1 < len(self._starts) and self._starts[i + 1] <= cutoff:
            i += 1
        if i:
            del self._starts[:i], self._rates[:i]
        self._extra = [(t, u) for t, u in self._extra if t > cutoff]

    def _ages(self, now_ms: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        self._prune(now_ms)
        starts = np.array(self._starts, dtype=np.float64)
        ends = np.append(starts[1:], float(now_ms))
        ends = np.minimum(ends, float(now_ms))
        age_start = (now_ms - starts) / MS_PER_MINUTE
        age_end = (now_ms - ends) / MS_PER_MINUTE
        rates = np.array(self._rates) / 60.0
        return rates, age_start, age_end

    def iob_u(self, now_ms: int) -> float:
        """Net insulin on board (U) at ``now_ms``."""
        rates, a0, a1 = self._ages(now_ms)
        f = np.interp(a0, self._grid, self._integral) - np.interp(a1, self._grid, self._integral)
        total = float(np.dot(rates, f))
        for t, units in self._extra:
            age = (now_ms - t) / MS_PER_MINUTE
            total += units * (1.0 - float(np.interp(age, self._grid, self._acted)))
        return total

    def iob_and_activity(self, now_ms: int) -> tuple[float, float]:
        """``iob_u`` and ``activity_u_per_min`` together (one pass over the history)."""
        rates, a0, a1 = self._ages(now_ms)
        grid = self._grid
        f = np.interp(a0, grid, self._integral) - np.interp(a1, grid, self._integral)
        da = np.interp(a0, grid, self._acted) - np.interp(a1, grid, self._acted)
        iob = float(np.dot(rates, f))
        acting = float(np.dot(rates, da))
        for t, units in self._extra:
            age = (now_ms - t) / MS_PER_MINUTE
            iob += units * (1.0 - float(np.interp(age, grid, self._acted)))
            acting += units * (
                float(np.interp(age + 0.5, grid, self._acted))
                - float(np.interp(max(age - 0.5, 0.0), grid, self._acted))
            )
        return iob, acting

    def activity_u_per_min(self, now_ms: int) -> float:
        """Net insulin acting per minute now (U/min)."""
        rates, a0, a1 = self._ages(now_ms)
        # Integral of activity over the segment = acted(age_start) - acted(age_end), per
        # minute of infusion; the derivative of that integral is what acts per minute.
        da = np.interp(a0, self._grid, self._acted) - np.interp(a1, self._grid, self._acted)
        acting = float(np.dot(rates, da))
        for t, units in self._extra:
            age = (now_ms - t) / MS_PER_MINUTE
            acting += units * (
                float(np.interp(age + 0.5, self._grid, self._acted))
                - float(np.interp(max(age - 0.5, 0.0), self._grid, self._acted))
            )
        return acting
