"""The iCGM accuracy criteria (21 CFR 862.1355) as a checker over paired sensor/true values.

An interoperable automated insulin controller may only take glucose from a CGM that meets the
iCGM special controls; this module says whether a sensor (a simulated one, or a spoofed feed)
would. Criteria, on pairs of sensor reading and reference glucose:

* A: reference < 70 mg/dL, sensor within +-15 mg/dL, more than 85 %;
* B: 70-180, within +-15 %, more than 70 %;  C: > 180, within +-15 %, more than 80 %;
* D: < 70, within +-40 mg/dL, more than 98 %;  E: 70-180, within +-40 %, more than 99 %;
* F: > 180, within +-40 %, more than 99 %;  G: whole range, within +-20 %, more than 87 %;
* H: no sensor reading < 70 when the reference is > 180;  I: none > 180 when it is < 70;
* J: where the true rate of change is below -2 mg/dL/min, less than 1 % of sensor rates above
  ``+wrong_way`` mg/dL/min;  K: the mirror image for true rates above +2.

For A-G the rule judges the lower one-sided 95 % confidence bound of the share, not the share
itself; ``confidence=True`` (the default) applies exact Clopper-Pearson bounds to A-G (lower)
and to J-K (upper), ``confidence=False`` judges point estimates. H and I are counts that must
be zero. ``wrong_way`` defaults to 1 mg/dL/min, our reading of the rule's J/K wording; set it
to 0 for "any movement in the wrong direction". docs/physiology.md says what was and was not
verified against the primary text.

Rates of change are computed along each series from consecutive pairs (never across series),
as difference over time difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt
from scipy.stats import beta  # type: ignore[import-untyped]

__all__ = [
    "CriterionResult",
    "IcgmReport",
    "Outcome",
    "check_icgm",
    "clopper_pearson",
]

FloatArray = npt.NDArray[np.float64]


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NOT_EVALUATED = "not evaluated"
    """No pairs fell in the criterion's range: the data cannot show it either way."""


@dataclass(frozen=True)
class CriterionResult:
    """One criterion: how many pairs it applies to, how many met (or broke) it, the verdict."""

    code: str
    description: str
    pairs: int
    hits: int
    """Pairs within tolerance (A-G) or pairs breaking the rule (H-K)."""
    share_pct: float
    bound_pct: float | None
    """The confidence bound judged (lower for A-G, upper for J-K), if bounds are used."""
    limit_pct: float
    outcome: Outcome


@dataclass(frozen=True)
class IcgmReport:
    results: tuple[CriterionResult, ...]
    confidence: bool

    @property
    def passed(self) -> bool:
        """True when no criterion failed and every criterion could be evaluated."""
        return all(r.outcome is Outcome.PASS for r in self.results)

    def by_code(self, code: str) -> CriterionResult:
        for r in self.results:
            if r.code == code:
                return r
        raise KeyError(code)


def clopper_pearson(hits: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact one-sided bounds (lower, upper) on a binomial share, each at ``level``."""
    if n <= 0:
        return (0.0, 1.0)
    alpha = 1.0 - level
    lower = 0.0 if hits == 0 else float(beta.ppf(alpha, hits, n - hits + 1))
    upper = 1.0 if hits == n else float(beta.ppf(1.0 - alpha, hits + 1, n - hits))
    return (lower, upper)


_ACCURACY = (
    # code, description, reference range (low, high, inclusive flags), tolerance, limit (%)
    ("A", "< 70 mg/dL: within +-15 mg/dL", (None, 70.0), ("abs", 15.0), 85.0),
    ("B", "70-180 mg/dL: within +-15 %", (70.0, 180.0), ("rel", 0.15), 70.0),
    ("C", "> 180 mg/dL: within +-15 %", (180.0, None), ("rel", 0.15), 80.0),
    ("D", "< 70 mg/dL: within +-40 mg/dL", (None, 70.0), ("abs", 40.0), 98.0),
    ("E", "70-180 mg/dL: within +-40 %", (70.0, 180.0), ("rel", 0.40), 99.0),
    ("F", "> 180 mg/dL: within +-40 %", (180.0, None), ("rel", 0.40), 99.0),
    ("G", "whole range: within +-20 %", (None, None), ("rel", 0.20), 87.0),
)


def _in_range(ref: FloatArray, bounds: tuple[float | None, float | None]) -> npt.NDArray[np.bool_]:
    low, high = bounds
    mask = np.ones(ref.shape, dtype=bool)
    if low is None and high is not None:
        mask &= ref < high
    elif low is not None and high is None:
        mask &= ref > low
    elif low is not None and high is not None:
        mask &= (ref >= low) & (ref <= high)
    return mask


def _rates(values: FloatArray, minutes: FloatArray) -> FloatArray:
    return np.diff(values, axis=-1) / np.diff(minutes, axis=-1)


def check_icgm(
    sensor: npt.ArrayLike,
    reference: npt.ArrayLike,
    *,
    minutes: npt.ArrayLike | None = None,
    sample_minutes: float = 5.0,
    confidence: bool = True,
    wrong_way: float = 1.0,
) -> IcgmReport:
    """Judge paired readings against criteria A-K.

    ``sensor`` and ``reference`` have the same shape: one series (1-D) or one per patient
    (2-D, time along the last axis); NaN marks a missing pair. ``minutes`` gives the time of
    each pair (same shape, or one row for all series); without it pairs are
    ``sample_minutes`` apart. Rates (J, K) use consecutive pairs within a series.
    """
    s = np.asarray(sensor, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if s.shape != r.shape or s.ndim not in (1, 2) or s.shape[-1] == 0:
        raise ValueError("sensor and reference must be non-empty 1-D or 2-D arrays of one shape")
    if s.ndim == 1:
        s, r = s[None, :], r[None, :]
    if minutes is None:
        t = np.broadcast_to(np.arange(s.shape[-1]) * float(sample_minutes), s.shape)
    else:
        t = np.broadcast_to(np.asarray(minutes, dtype=np.float64), s.shape)
        if (np.diff(t, axis=-1) <= 0).any():
            raise ValueError("minutes must increase along each series")
    valid = ~(np.isnan(s) | np.isnan(r))
    results: list[CriterionResult] = []

    for code, text, bounds, (kind, tol), limit in _ACCURACY:
        mask = valid & _in_range(r, bounds)
        err = np.abs(s - r)
        ok = err <= (tol if kind == "abs" else tol * r)
        n, hits = int(mask.sum()), int((ok & mask).sum())
        results.append(_judge(code, text, n, hits, limit, confidence, higher_is_better=True))

    for code, text, sensor_cond, ref_cond in (
        ("H", "no reading < 70 mg/dL when the reference is > 180", s < 70.0, r > 180.0),
        ("I", "no reading > 180 mg/dL when the reference is < 70", s > 180.0, r < 70.0),
    ):
        n = int((valid & ref_cond).sum())
        bad = int((valid & ref_cond & sensor_cond).sum())
        outcome = Outcome.PASS if bad == 0 else Outcome.FAIL
        share = 100.0 * bad / n if n else 0.0
        results.append(CriterionResult(code, text, n, bad, share, None, 0.0, outcome))

    pair_ok = valid[:, 1:] & valid[:, :-1]
    s_rate, r_rate = _rates(s, t), _rates(r, t)
    for code, text, true_cond, wrong in (
        (
            "J",
            f"true rate < -2 mg/dL/min: < 1 % of sensor rates > +{wrong_way:g}",
            r_rate < -2.0,
            s_rate > wrong_way,
        ),
        (
            "K",
            f"true rate > +2 mg/dL/min: < 1 % of sensor rates < -{wrong_way:g}",
            r_rate > 2.0,
            s_rate < -wrong_way,
        ),
    ):
        mask = pair_ok & true_cond
        n, bad = int(mask.sum()), int((mask & wrong).sum())
        results.append(_judge(code, text, n, bad, 1.0, confidence, higher_is_better=False))
    return IcgmReport(tuple(results), confidence)


def _judge(
    code: str,
    text: str,
    n: int,
    hits: int,
    limit: float,
    confidence: bool,
    *,
    higher_is_better: bool,
) -> CriterionResult:
    if n == 0:
        return CriterionResult(code, text, 0, 0, float("nan"), None, limit, Outcome.NOT_EVALUATED)
    share = 100.0 * hits / n
    bound: float | None = None
    judged = share
    if confidence:
        lower, upper = clopper_pearson(hits, n)
        bound = 100.0 * (lower if higher_is_better else upper)
        judged = bound
    ok = judged > limit if higher_is_better else judged < limit
    return CriterionResult(
        code, text, n, hits, share, bound, limit, Outcome.PASS if ok else Outcome.FAIL
    )
