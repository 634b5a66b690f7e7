"""The insulin pump's dose limits: defaults, absolute caps, and the checks a new set must pass.

The five limits are enforced by the pump on every command whatever its source, and changed only
with the buttons on the pump. Defaults and caps, with their sources, are in
docs/devices/insulin.md:

* defaults: AndroidAPS hard limits for the adult age group (max bolus 17 U, max IOB 22 U,
  max basal 10 U/h); 2-hour total 25 U and total daily dose 100 U are pumpguard's choices;
* caps no setting may exceed: Loop's guardrails (max bolus 30 U, scheduled basal at most
  30 U/h), AndroidAPS's largest max IOB (30 U, insulin-resistant adult), and for the 2-hour
  and daily totals what those caps allow at most in two hours (30 + 2 x 30 = 90 U) and one
  full 300 U reservoir a day.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

from pumpguard.clinical import BasalProfile

__all__ = ["DEFAULT_LIMITS", "HARD_CAPS", "InsulinLimits", "LimitIssue", "limit_problems"]


@dataclass(frozen=True, slots=True)
class InsulinLimits:
    """Maximum bolus, basal rate, insulin on board, 2-hour total and total daily dose."""

    max_bolus_u: Decimal = Decimal(17)
    max_basal_u_h: Decimal = Decimal(10)
    max_iob_u: Decimal = Decimal(22)
    max_2h_u: Decimal = Decimal(25)
    max_tdd_u: Decimal = Decimal(100)


DEFAULT_LIMITS = InsulinLimits()
HARD_CAPS = InsulinLimits(Decimal(30), Decimal(30), Decimal(30), Decimal(90), Decimal(300))


class LimitIssue(StrEnum):
    """What is wrong with a set of limits (the values name the pump's rejections)."""

    INVALID = "invalid"
    OUT_OF_RANGE = "out-of-range"
    INCONSISTENT = "inconsistent"


def limit_problems(
    limits: InsulinLimits,
    profile: BasalProfile,
    *,
    bolus_step: Decimal,
    basal_step: Decimal,
    caps: InsulinLimits = HARD_CAPS,
) -> list[tuple[LimitIssue, str]]:
    """Everything wrong with ``limits`` for a pump running ``profile``; empty when usable.

    Beyond each number being a finite positive multiple of the pump's step and within its cap,
    the set must be coherent: a maximum bolus must be deliverable (not above max IOB nor the
    2-hour total, the 2-hour total not above the daily one), and the scheduled basal plus one
    maximum bolus must fit the 2-hour and daily totals, so that an ordinary day never runs
    into the pump's delivery stop.
    """
    problems: list[tuple[LimitIssue, str]] = []
    for item in fields(InsulinLimits):
        value = getattr(limits, item.name)
        step = basal_step if item.name == "max_basal_u_h" else bolus_step
        cap = getattr(caps, item.name)
        if isinstance(value, bool) or not isinstance(value, Decimal | int):
            problems.append((LimitIssue.INVALID, f"{item.name} must be a Decimal"))
        elif not Decimal(value).is_finite():
            problems.append((LimitIssue.INVALID, f"{item.name} must be a finite number"))
        elif not 0 < value <= cap:
            problems.append(
                (LimitIssue.OUT_OF_RANGE, f"{item.name} {value} is outside 0 (excluded) to {cap}")
            )
        elif value % step != 0:
            problems.append(
                (LimitIssue.INVALID, f"{item.name} {value} is not a multiple of {step}")
            )
    if problems:
        return problems
    bolus, iob = limits.max_bolus_u, limits.max_iob_u
    two_hours, daily = limits.max_2h_u, limits.max_tdd_u
    if bolus > iob:
        problems.append((LimitIssue.INCONSISTENT, f"max bolus {bolus} U is above max IOB {iob} U"))
    if bolus > two_hours:
        problems.append(
            (
                LimitIssue.INCONSISTENT,
                f"max bolus {bolus} U is above the 2-hour total {two_hours} U",
            )
        )
    if two_hours > daily:
        problems.append(
            (LimitIssue.INCONSISTENT, f"2-hour total {two_hours} U is above the daily {daily} U")
        )
    if profile.max_rate_u_h > limits.max_basal_u_h:
        problems.append(
            (
                LimitIssue.INCONSISTENT,
                f"the basal profile reaches {profile.max_rate_u_h} U/h, above max basal "
                f"{limits.max_basal_u_h} U/h",
            )
        )
    basal_2h = profile.max_total_in(120)
    if basal_2h + Fraction(bolus) > two_hours:
        problems.append(
            (
                LimitIssue.INCONSISTENT,
                f"scheduled basal (up to {_u(basal_2h)} U in 2 h) plus one max bolus exceeds "
                f"the 2-hour total {two_hours} U",
            )
        )
    basal_day = profile.daily_total_u
    if basal_day + Fraction(bolus) > daily:
        problems.append(
            (
                LimitIssue.INCONSISTENT,
                f"scheduled basal ({_u(basal_day)} U a day) plus one max bolus exceeds the "
                f"daily total {daily} U",
            )
        )
    return problems


def _u(value: Fraction) -> str:
    """Units for a message: three decimals, never binary floating point."""
    return f"{Decimal(value.numerator) / Decimal(value.denominator):.3f}"
