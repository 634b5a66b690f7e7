"""How glucose is measured: CGM and blood glucose meter error models, seeded and vectorised.

A controller never sees the model's glucose, only what a sensor reports; these models put the
published error structure between the two so that a closed loop is tested against realistic
readings, and so that spoofed readings (an attack) can be told from noisy ones.

CGM (``CgmSensor``): the noise model of Breton and Kovatchev, "Analysis, modeling, and
simulation of the accuracy of continuous glucose sensors", J Diabetes Sci Technol
2008;2(5):853-62: a first-order autoregressive process on a 15-minute grid,
``e(n) = 0.7 (e(n-1) + v(n))`` with ``v ~ N(0, 1)``, mapped through a Johnson SU transform
``xi + lambda sinh((e - gamma) / delta)`` with their fitted parameters (xi = -5.47,
lambda = 15.9574, gamma = -0.5444, delta = 1.6898; simglucose uses the same numbers), and
interpolated to the minute with a Catmull-Rom cubic. To that we add, as simple parametrised
elements: a first-order lag (time constant ``lag_minutes``; 0 by default because the model's
``Gs`` already lags plasma glucose by 1/ksc, 7 to 20 minutes), sampling every
``sample_minutes`` with the last value held in between, clipping to the reportable range
(40-400 mg/dL) and rounding to whole mg/dL.

BGM (``BgmMeter``): a simple parametrised model, not a published one: Gaussian error with a
constant SD below 100 mg/dL and an SD proportional to glucose above, sized so that an unbiased
meter puts about 99 % of its readings inside the ISO 15197:2013 limits (+-15 mg/dL below
100 mg/dL, +-15 % from 100 mg/dL; the standard asks for at least 95 %).

Randomness is seeded per patient (``SeedSequence(seed, spawn_key=(patient,))``): a patient's
sensor reads the same whatever the size of the cohort around it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "BRETON_KOVATCHEV_2008",
    "ISO15197_REQUIRED_PCT",
    "BgmMeter",
    "BgmModel",
    "CgmModel",
    "CgmSensor",
    "JohnsonSU",
    "iso15197_within_pct",
]

FloatArray = npt.NDArray[np.float64]

ISO15197_REQUIRED_PCT = 95.0
"""ISO 15197:2013: at least this share of meter readings within +-15 mg/dL / +-15 %."""


@dataclass(frozen=True)
class JohnsonSU:
    """A Johnson SU transform of a standard normal variable: skewed, heavy-tailed errors."""

    xi: float
    lam: float
    gamma: float
    delta: float

    def transform(self, e: FloatArray) -> FloatArray:
        return np.asarray(self.xi + self.lam * np.sinh((e - self.gamma) / self.delta))


BRETON_KOVATCHEV_2008 = JohnsonSU(xi=-5.47, lam=15.9574, gamma=-0.5444, delta=1.6898)
"""CGM error distribution fitted by Breton and Kovatchev (JDST 2008), in mg/dL."""


@dataclass(frozen=True)
class CgmModel:
    """A CGM's error model; ``CgmModel()`` is a typical 5-minute factory-calibrated sensor."""

    sample_minutes: int = 5
    lag_minutes: float = 0.0
    noise: JohnsonSU | None = BRETON_KOVATCHEV_2008
    noise_ar: float = 0.7
    noise_knot_minutes: int = 15
    low_mgdl: float = 40.0
    high_mgdl: float = 400.0
    resolution_mgdl: float = 1.0

    def __post_init__(self) -> None:
        if self.sample_minutes < 1 or self.noise_knot_minutes < 1:
            raise ValueError("sample and noise intervals must be at least one minute")
        if self.lag_minutes < 0 or self.resolution_mgdl < 0:
            raise ValueError("lag and resolution must not be negative")
        if not 0 <= self.noise_ar < 1:
            raise ValueError("noise_ar must be in [0, 1)")
        if self.low_mgdl >= self.high_mgdl:
            raise ValueError("the reportable range must not be empty")

    @classmethod
    def ideal(cls) -> CgmModel:
        """A perfect sensor: every minute, no noise, no lag, no rounding, no range limits."""
        return cls(
            sample_minutes=1,
            noise=None,
            low_mgdl=-np.inf,
            high_mgdl=np.inf,
            resolution_mgdl=0.0,
        )


_KNOT_BLOCK = 96
"""Noise knots drawn per patient at a time (one day on the 15-minute grid)."""


class CgmSensor:
    """One CGM per patient, fed the true glucose every minute (``observe``).

    The sensor reports a new value every ``sample_minutes`` (``fresh`` says whether this minute
    did) and holds it in between, like a receiver display.
    """

    def __init__(self, model: CgmModel, patients: int, seed: int) -> None:
        if patients < 1:
            raise ValueError("a sensor bank needs at least one patient")
        self.model = model
        self.patients = patients
        self.seed = seed
        self._rngs = [
            np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
            for i in range(patients)
        ]
        self._alpha = 1.0 if model.lag_minutes == 0 else -np.expm1(-1.0 / model.lag_minutes)
        # Noise knots; column j is knot j - 1 (the first interval needs a knot before it).
        self._knots = np.empty((patients, 0))
        self._e = np.zeros(patients)
        self._minute = 0
        self._lagged: FloatArray | None = None
        self._reading = np.full(patients, np.nan)
        self.fresh = False

    @property
    def minute(self) -> int:
        """Minutes observed so far."""
        return self._minute

    @property
    def reading(self) -> FloatArray:
        """The value on display (NaN before the first sample)."""
        return self._reading.copy()

    def _grow(self, needed: int) -> None:
        while self._knots.shape[1] < needed:
            first = self._knots.shape[1] == 0
            v = np.stack([rng.standard_normal(_KNOT_BLOCK) for rng in self._rngs])
            block = np.empty_like(v)
            e = self._e
            for j in range(_KNOT_BLOCK):
                e = v[:, j] if first and j == 0 else self.model.noise_ar * (e + v[:, j])
                block[:, j] = e
            self._e = e
            self._knots = np.concatenate((self._knots, block), axis=1)

    def noise_at(self, minute: int) -> FloatArray:
        """The additive noise (mg/dL) each patient's sensor carries at ``minute``."""
        noise = self.model.noise
        if noise is None:
            return np.zeros(self.patients)
        k, rem = divmod(minute, self.model.noise_knot_minutes)
        self._grow(k + 4)
        p0, p1, p2, p3 = (noise.transform(self._knots[:, k + i]) for i in range(4))
        u = rem / self.model.noise_knot_minutes
        return np.asarray(
            0.5
            * (
                2.0 * p1
                + (p2 - p0) * u
                + (2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3) * u * u
                + (3.0 * (p1 - p2) + p3 - p0) * u * u * u
            )
        )

    def observe(self, bg: npt.ArrayLike) -> FloatArray:
        """Feed this minute's true glucose (one per patient); return the value on display."""
        true = np.asarray(bg, dtype=np.float64)
        if true.shape != (self.patients,):
            true = np.broadcast_to(true, (self.patients,))
        if self._lagged is None:
            self._lagged = true.copy()
        else:
            self._lagged = self._lagged + self._alpha * (true - self._lagged)
        m = self.model
        self.fresh = self._minute % m.sample_minutes == 0
        if self.fresh:
            value = np.clip(self._lagged + self.noise_at(self._minute), m.low_mgdl, m.high_mgdl)
            if m.resolution_mgdl > 0:
                value = np.round(value / m.resolution_mgdl) * m.resolution_mgdl
            self._reading = value
        self._minute += 1
        return self._reading.copy()

    def trace(self, bg: npt.ArrayLike) -> FloatArray:
        """Observe a whole trace, shape (patients, minutes); return what was on display."""
        arr = np.asarray(bg, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] != self.patients:
            raise ValueError(f"glucose must have shape ({self.patients}, minutes)")
        out = np.empty_like(arr)
        for m in range(arr.shape[1]):
            out[:, m] = self.observe(arr[:, m])
        return out


@dataclass(frozen=True)
class BgmModel:
    """A blood glucose meter's error model (see the module notes: simple, parametrised)."""

    sd_low_mgdl: float = 15.0 / 2.576
    cv_high_pct: float = 100.0 * 0.15 / 2.576
    split_mgdl: float = 100.0
    bias_pct: float = 0.0
    low_mgdl: float = 20.0
    high_mgdl: float = 600.0
    resolution_mgdl: float = 1.0


class BgmMeter:
    """A seeded meter: ``measure`` turns true glucose (any shape) into meter readings."""

    def __init__(self, model: BgmModel, seed: int) -> None:
        self.model = model
        self._rng = np.random.default_rng(seed)

    def measure(self, bg: npt.ArrayLike) -> FloatArray:
        m = self.model
        true = np.asarray(bg, dtype=np.float64)
        sd = np.where(true < m.split_mgdl, m.sd_low_mgdl, true * m.cv_high_pct / 100.0)
        value = true * (1.0 + m.bias_pct / 100.0) + sd * self._rng.standard_normal(true.shape)
        value = np.clip(value, m.low_mgdl, m.high_mgdl)
        if m.resolution_mgdl > 0:
            value = np.round(value / m.resolution_mgdl) * m.resolution_mgdl
        return np.asarray(value)


def iso15197_within_pct(readings: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    """Percent of readings within ISO 15197:2013 limits: +-15 mg/dL below 100, +-15 % above.

    (The standard also asks for 99 % in zones A and B of the consensus error grid, which is
    not computed here.)
    """
    r = np.asarray(readings, dtype=np.float64).ravel()
    ref = np.asarray(reference, dtype=np.float64).ravel()
    if r.shape != ref.shape or r.size == 0:
        raise ValueError("readings and reference must be non-empty and of the same size")
    limit = np.where(ref < 100.0, 15.0, 0.15 * ref)
    return float(100.0 * np.mean(np.abs(r - ref) <= limit))
