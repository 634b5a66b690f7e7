"""A CGM transmitter as a deterministic state machine.

The transmitter samples the patient's glucose through the physiology package's CGM error model
(``physiology.CgmSensor``: Breton-Kovatchev noise, optional lag, 40-400 mg/dL reportable range,
whole mg/dL) and publishes a reading every ``model.sample_minutes`` (5 by default). A session
has a warm-up (no readings, 2 h by default, as for Dexcom G6/G7-class sensors) and a lifetime
(10 days by default) after which it expires and publishes nothing. Time comes from the
``Clock``; the transmitter never reads the system time, sleeps or spawns threads.

``sense(bg)`` is called by whoever drives the simulation with the patient's true glucose; the
transmitter feeds its error model once per elapsed whole minute (the model is minute-based) and
returns the reading published at this instant, if any.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from pumpguard.clock import MS_PER_MINUTE, Clock
from pumpguard.physiology import CgmModel, CgmSensor

__all__ = ["CgmReading", "CgmSessionState", "CgmTransmitter"]


class CgmSessionState(StrEnum):
    WARMUP = "warm-up"
    ACTIVE = "active"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class CgmReading:
    """One published reading: when, the value (mg/dL), and its sequence number."""

    time_ms: int
    glucose_mgdl: float
    seq: int


class CgmTransmitter:
    """One patient's CGM. Seeded: the same seed and glucose give the same readings."""

    def __init__(
        self,
        clock: Clock,
        *,
        seed: int,
        model: CgmModel | None = None,
        warmup_min: int = 120,
        lifetime_days: int = 10,
        serial: str = "CGM-0001",
    ) -> None:
        if warmup_min < 0 or lifetime_days < 1:
            raise ValueError("warm-up must not be negative and the lifetime at least one day")
        self.model = model or CgmModel()
        self.serial = serial
        self._clock = clock
        self._start_ms = clock.now_ms()
        self._minutes_fed = 0
        self._sensor = CgmSensor(self.model, 1, seed)
        self._warmup_ms = warmup_min * MS_PER_MINUTE
        self._lifetime_ms = lifetime_days * 1440 * MS_PER_MINUTE
        self._readings: list[CgmReading] = []
        self._seq = 0

    @property
    def state(self) -> CgmSessionState:
        age = self._clock.now_ms() - self._start_ms
        if age >= self._lifetime_ms:
            return CgmSessionState.EXPIRED
        if age < self._warmup_ms:
            return CgmSessionState.WARMUP
        return CgmSessionState.ACTIVE

    @property
    def latest(self) -> CgmReading | None:
        return self._readings[-1] if self._readings else None

    @property
    def readings(self) -> tuple[CgmReading, ...]:
        return tuple(self._readings)

    def recent(self, count: int) -> list[CgmReading]:
        """The last ``count`` readings, oldest first."""
        return self._readings[-count:]

    def sense(self, bg_mgdl: float) -> CgmReading | None:
        """Feed the true glucose now; return the newest reading this call published, if any.

        Each whole minute since the session started is fed to the error model once (a caller
        stepping in larger strides feeds the same glucose for the minutes in between); calling
        again within the same minute publishes nothing new.
        """
        if not np.isfinite(bg_mgdl):
            raise ValueError("glucose must be a finite number")
        elapsed = (self._clock.now_ms() - self._start_ms) // MS_PER_MINUTE
        published: CgmReading | None = None
        while self._minutes_fed <= elapsed:
            minute = self._minutes_fed
            value = float(self._sensor.observe(np.array([bg_mgdl]))[0])
            self._minutes_fed += 1
            at_ms = self._start_ms + minute * MS_PER_MINUTE
            age = at_ms - self._start_ms
            if not self._sensor.fresh or age < self._warmup_ms or age >= self._lifetime_ms:
                continue
            self._seq += 1
            published = CgmReading(at_ms, value, self._seq)
            self._readings.append(published)
            if len(self._readings) > 512:
                del self._readings[:256]
        return published
