"""Glycemic outcome metrics: what an experiment did to its virtual patients.

Definitions follow the international consensus on CGM metrics (Battelino et al., Diabetes Care
2019;42:1593-1603; Danne et al., Diabetes Care 2017): time in range 70-180 mg/dL (inclusive),
below 70 and below 54, above 180 and above 250 (strict), mean, coefficient of variation, and
the glucose management indicator GMI = 3.31 + 0.02392 x mean (Bergenstal et al., Diabetes Care
2018;41:2275-80). The risk indices are Kovatchev's (Diabetes Care 1997;20:1655-8; 2006):
f(BG) = 1.509 ((ln BG)^1.084 - 5.381), r = 10 f^2, LBGI = mean of r over all readings with
f < 0 counted and the others counted as 0, HBGI likewise for f > 0.

Every function takes glucose in mg/dL with time along the last axis, assumes equally spaced
readings (one per minute from the simulator, one per 5 minutes from a CGM), ignores NaN
(missing readings), and returns one value per series: a float array of shape ``bg.shape[:-1]``.
Time shares are percentages.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "GlycemicMetrics",
    "coefficient_of_variation",
    "gmi",
    "hbgi",
    "lbgi",
    "mean_glucose",
    "risk_function",
    "summarise",
    "time_above",
    "time_below",
    "time_in_range",
]

FloatArray = npt.NDArray[np.float64]

_RISK_FLOOR_MGDL = 1.0
"""The risk function needs ln(BG): readings at or below zero (a model driven to the floor by
an overdose) are scored as 1 mg/dL, the most extreme low risk that is still defined."""


def _as_array(bg: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(bg, dtype=np.float64)
    if arr.ndim == 0:
        raise ValueError("glucose must be a series, not a single number")
    return arr


def _share(mask: npt.NDArray[np.bool_], valid: npt.NDArray[np.bool_]) -> FloatArray:
    n = valid.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(100.0 * (mask & valid).sum(axis=-1) / n, dtype=np.float64)


def time_in_range(bg: npt.ArrayLike, low: float = 70.0, high: float = 180.0) -> FloatArray:
    """Percent of readings with ``low <= BG <= high`` (default 70-180 mg/dL)."""
    arr = _as_array(bg)
    valid = ~np.isnan(arr)
    return _share((arr >= low) & (arr <= high), valid)


def time_below(bg: npt.ArrayLike, threshold: float = 70.0) -> FloatArray:
    """Percent of readings strictly below ``threshold`` (70 for level 1, 54 for level 2)."""
    arr = _as_array(bg)
    valid = ~np.isnan(arr)
    return _share(arr < threshold, valid)


def time_above(bg: npt.ArrayLike, threshold: float = 180.0) -> FloatArray:
    """Percent of readings strictly above ``threshold`` (180 for level 1, 250 for level 2)."""
    arr = _as_array(bg)
    valid = ~np.isnan(arr)
    return _share(arr > threshold, valid)


def mean_glucose(bg: npt.ArrayLike) -> FloatArray:
    return np.asarray(np.nanmean(_as_array(bg), axis=-1), dtype=np.float64)


def coefficient_of_variation(bg: npt.ArrayLike) -> FloatArray:
    """CV in percent: sample standard deviation (n - 1) over mean. Target <= 36 %."""
    arr = _as_array(bg)
    sd = np.nanstd(arr, axis=-1, ddof=1)
    return np.asarray(100.0 * sd / np.nanmean(arr, axis=-1), dtype=np.float64)


def gmi(bg: npt.ArrayLike) -> FloatArray:
    """Glucose management indicator (%), the HbA1c-like estimate from mean glucose."""
    return np.asarray(3.31 + 0.02392 * mean_glucose(bg), dtype=np.float64)


def risk_function(bg: npt.ArrayLike) -> FloatArray:
    """Kovatchev's symmetrised glucose scale f(BG): 0 at 112.5 mg/dL, negative below."""
    arr = np.maximum(np.asarray(bg, dtype=np.float64), _RISK_FLOOR_MGDL)
    return np.asarray(1.509 * (np.log(arr) ** 1.084 - 5.381), dtype=np.float64)


def lbgi(bg: npt.ArrayLike) -> FloatArray:
    """Low blood glucose index: mean of 10 f^2 over readings with f < 0 (others count 0)."""
    arr = _as_array(bg)
    f = risk_function(arr)
    r = np.where(f < 0, 10.0 * f**2, 0.0)
    r[np.isnan(arr)] = np.nan
    return np.asarray(np.nanmean(r, axis=-1), dtype=np.float64)


def hbgi(bg: npt.ArrayLike) -> FloatArray:
    """High blood glucose index: mean of 10 f^2 over readings with f > 0 (others count 0)."""
    arr = _as_array(bg)
    f = risk_function(arr)
    r = np.where(f > 0, 10.0 * f**2, 0.0)
    r[np.isnan(arr)] = np.nan
    return np.asarray(np.nanmean(r, axis=-1), dtype=np.float64)


@dataclass(frozen=True)
class GlycemicMetrics:
    """The consensus summary of one glucose trace (percentages of readings, mg/dL, %)."""

    readings: int
    mean_mgdl: float
    cv_pct: float
    gmi_pct: float
    tir_70_180_pct: float
    tbr_70_pct: float
    tbr_54_pct: float
    tar_180_pct: float
    tar_250_pct: float
    lbgi: float
    hbgi: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarise(bg: npt.ArrayLike) -> list[GlycemicMetrics]:
    """One ``GlycemicMetrics`` per series (a 1-D trace gives a list of one)."""
    arr = _as_array(bg)
    rows = arr.reshape(-1, arr.shape[-1])
    columns = (
        (~np.isnan(rows)).sum(axis=-1),
        mean_glucose(rows),
        coefficient_of_variation(rows),
        gmi(rows),
        time_in_range(rows),
        time_below(rows, 70.0),
        time_below(rows, 54.0),
        time_above(rows, 180.0),
        time_above(rows, 250.0),
        lbgi(rows),
        hbgi(rows),
    )
    return [
        GlycemicMetrics(int(columns[0][i]), *(float(c[i]) for c in columns[1:]))
        for i in range(rows.shape[0])
    ]
