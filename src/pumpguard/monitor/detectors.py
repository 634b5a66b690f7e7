"""Anomaly detectors over what devices report, for attacks that no single event betrays.

A spoofed CGM sends well-formed, well-authenticated-looking readings; a stolen phone sends
valid boluses. What gives them away is physiology and habit:

* ``CgmPlausibility``: glucose is a smooth signal. A reading is implausible when glucose
  moves faster than about 4 mg/dL/min (the issue's bound) *and* its rate changed abruptly
  from the previous interval's (more than 8 mg/dL/min between two 5-minute intervals): after
  a large meal a body's glucose does climb at 5-11 mg/dL/min, but it gets there gradually,
  while a spoofed or tampered sensor jumps. A reading should also agree with a fingerstick
  meter taken at the same time within the iCGM 20 mg/dL / 20 % band, and a two-sided CUSUM
  over the residuals between the sensor and a glucose model flags a slow, sustained bias that
  neither check can see.
* ``BolusAnomaly``: a bolus much larger than this patient's own history (robust z-score on the
  median and MAD), or more boluses in two hours than the patient has ever given.

Detectors are pure state machines fed in time order; each returns the detections it makes.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass

from pumpguard.monitor.detections import Detection
from pumpguard.security_events import Severity

__all__ = [
    "BolusAnomaly",
    "CgmPlausibility",
    "Cusum",
    "DetectorError",
]

_MINUTE_MS = 60_000

MAX_RATE_CHANGE_MGDL_MIN = 8.0
"""Largest plausible change of the glucose rate between consecutive readings. Tuned on
``pumpguard lab detect`` seeds 1-3 (30 patient-runs of 3 days, random meals, AID, secure
link): the cohort's CGM rate never changed by more than 4.2 mg/dL/min from one 5-minute
interval to the next (its rate itself reached 7.6); 8 leaves a margin of about 2."""

CGM_RATE = "PG-CGM-RATE"
CGM_METER = "PG-CGM-METER"
CGM_CUSUM = "PG-CGM-CUSUM"
BOLUS_SIZE = "PG-DOSE-SIZE"
BOLUS_FREQUENCY = "PG-DOSE-FREQ"


class DetectorError(ValueError):
    """Input a detector cannot use: out of order, non-finite, impossible values."""


def _finite(name: str, value: float) -> float:
    if not math.isfinite(value):
        raise DetectorError(f"{name} must be a finite number, got {value!r}")
    return value


class Cusum:
    """Two-sided tabular CUSUM (Page 1954): alarms when the mean drifts by more than ``slack``.

    ``slack`` (k) is the shift ignored as noise, ``limit`` (h) the accumulated excess that
    alarms; both in the residual's unit. After an alarm both sums restart at zero.
    """

    def __init__(self, slack: float, limit: float) -> None:
        if slack < 0 or limit <= 0:
            raise DetectorError("CUSUM slack must be >= 0 and limit > 0")
        self.slack = slack
        self.limit = limit
        self.high = 0.0
        self.low = 0.0

    def update(self, residual: float) -> int:
        """+1 for an upward alarm, -1 for a downward one, 0 for none."""
        _finite("residual", residual)
        self.high = max(0.0, self.high + residual - self.slack)
        self.low = max(0.0, self.low - residual - self.slack)
        if self.high > self.limit:
            self.high = self.low = 0.0
            return 1
        if self.low > self.limit:
            self.high = self.low = 0.0
            return -1
        return 0


@dataclass(frozen=True, slots=True)
class _Reading:
    time_ms: int
    mgdl: float


class CgmPlausibility:
    """Flags CGM readings no body could produce, or that the meter and the model contradict."""

    def __init__(
        self,
        device_id: str,
        *,
        max_rate_mgdl_min: float = 4.0,
        max_rate_change_mgdl_min: float = MAX_RATE_CHANGE_MGDL_MIN,
        max_gap_min: float = 15.0,
        meter_window_min: float = 5.0,
        cusum_slack_mgdl: float = 10.0,
        cusum_limit_mgdl: float = 120.0,
    ) -> None:
        self.device_id = device_id
        self.max_rate = max_rate_mgdl_min
        self.max_rate_change = max_rate_change_mgdl_min
        self._rate: float | None = None
        self.max_gap_ms = int(max_gap_min * _MINUTE_MS)
        self.meter_window_ms = int(meter_window_min * _MINUTE_MS)
        self._cusum = Cusum(cusum_slack_mgdl, cusum_limit_mgdl)
        self._recent: deque[_Reading] = deque(maxlen=64)

    def reading(
        self, time_ms: int, mgdl: float, *, predicted_mgdl: float | None = None
    ) -> list[Detection]:
        """Feed one CGM reading (and, if a model runs, what it predicted for this time)."""
        _finite("glucose", mgdl)
        if mgdl <= 0:
            raise DetectorError(f"glucose must be positive, got {mgdl}")
        out: list[Detection] = []
        last = self._recent[-1] if self._recent else None
        if last is not None:
            if time_ms <= last.time_ms:
                raise DetectorError("CGM readings must be fed in increasing time order")
            gap = time_ms - last.time_ms
            rate = None
            if gap <= self.max_gap_ms:
                rate = (mgdl - last.mgdl) / (gap / _MINUTE_MS)
                change = rate - (self._rate or 0.0)
                if abs(rate) > self.max_rate and abs(change) > self.max_rate_change:
                    out.append(
                        self._detection(
                            CGM_RATE,
                            "CGM glucose jumps faster than physiology allows",
                            time_ms,
                            f"{last.mgdl:.0f} -> {mgdl:.0f} mg/dL in {gap / _MINUTE_MS:.1f} min "
                            f"({rate:+.1f} mg/dL/min, limit {self.max_rate}; rate changed by "
                            f"{change:+.1f}, limit {self.max_rate_change})",
                        )
                    )
            self._rate = rate
        self._recent.append(_Reading(time_ms, mgdl))
        if predicted_mgdl is not None:
            drift = self._cusum.update(mgdl - _finite("predicted glucose", predicted_mgdl))
            if drift:
                side = "above" if drift > 0 else "below"
                out.append(
                    self._detection(
                        CGM_CUSUM,
                        "CGM readings drift away from the glucose model",
                        time_ms,
                        f"sustained bias {side} the model (CUSUM limit {self._cusum.limit} mg/dL)",
                    )
                )
        return out

    def meter(self, time_ms: int, mgdl: float) -> list[Detection]:
        """Feed a fingerstick reading; compare it with the CGM reading closest in time."""
        _finite("meter glucose", mgdl)
        near = [r for r in self._recent if abs(r.time_ms - time_ms) <= self.meter_window_ms]
        if not near:
            return []
        cgm = min(near, key=lambda r: abs(r.time_ms - time_ms)).mgdl
        allowed = 20.0 if mgdl < 100.0 else 0.2 * mgdl
        if abs(cgm - mgdl) <= allowed:
            return []
        return [
            self._detection(
                CGM_METER,
                "CGM disagrees with the fingerstick meter",
                time_ms,
                f"CGM {cgm:.0f} mg/dL vs meter {mgdl:.0f} mg/dL (allowed {allowed:.0f})",
            )
        ]

    def _detection(self, analytic: str, title: str, time_ms: int, message: str) -> Detection:
        return Detection(
            analytic_id=analytic,
            title=title,
            time_ms=time_ms,
            severity=Severity.HIGH,
            message=message,
            device_id=self.device_id,
            technique="T0856",
        )


class BolusAnomaly:
    """Compares each bolus with this patient's own history, as a clinician reviewing a log would.

    Nothing is flagged until ``min_history`` boluses are known: a new patient has no habit yet,
    and a detector that cries wolf in week one is switched off by week two.
    """

    def __init__(
        self,
        device_id: str,
        *,
        min_history: int = 20,
        z_limit: float = 4.0,
        history_days: int = 14,
        frequency_window_min: int = 120,
    ) -> None:
        if min_history < 3:
            raise DetectorError("min_history must be at least 3")
        self.device_id = device_id
        self.min_history = min_history
        self.z_limit = z_limit
        self.history_ms = history_days * 24 * 60 * _MINUTE_MS
        self.window_ms = frequency_window_min * _MINUTE_MS
        self._boluses: deque[tuple[int, float]] = deque()
        self._max_in_window = 0

    def bolus(self, time_ms: int, units: float) -> list[Detection]:
        _finite("bolus", units)
        if units <= 0:
            raise DetectorError(f"a bolus must be positive, got {units}")
        if self._boluses and time_ms < self._boluses[-1][0]:
            raise DetectorError("boluses must be fed in time order")
        while self._boluses and time_ms - self._boluses[0][0] > self.history_ms:
            self._boluses.popleft()
        out: list[Detection] = []
        frequent = False
        sizes = [u for _, u in self._boluses]
        in_window = 1 + sum(1 for t, _ in self._boluses if time_ms - t <= self.window_ms)
        if len(sizes) >= self.min_history:
            median = statistics.median(sizes)
            mad = statistics.median(abs(s - median) for s in sizes) or 0.05 * median or 0.05
            z = 0.6745 * (units - median) / mad
            if z > self.z_limit:
                out.append(
                    self._detection(
                        BOLUS_SIZE,
                        "Bolus far larger than this patient's usual",
                        time_ms,
                        f"{units:.2f} U against a median of {median:.2f} U (robust z {z:.1f})",
                    )
                )
            if in_window > self._max_in_window:
                frequent = True
                out.append(
                    self._detection(
                        BOLUS_FREQUENCY,
                        "More boluses in two hours than this patient has ever given",
                        time_ms,
                        f"{in_window} boluses within {self.window_ms // _MINUTE_MS} min "
                        f"(previous most: {self._max_in_window})",
                    )
                )
        if not frequent:
            self._max_in_window = max(self._max_in_window, in_window)
        self._boluses.append((time_ms, units))
        return out

    def _detection(self, analytic: str, title: str, time_ms: int, message: str) -> Detection:
        return Detection(
            analytic_id=analytic,
            title=title,
            time_ms=time_ms,
            severity=Severity.HIGH,
            message=message,
            device_id=self.device_id,
            technique="T0855",
        )
