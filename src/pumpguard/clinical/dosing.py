"""Conversion between what a clinician orders (a dose) and what a pump does (a flow rate).

Rounding rules, which every caller relies on:

1. All arithmetic is exact: conversions are computed as fractions and divided once at the end;
   binary floating point never touches a dose.
2. A flow rate computed from a dose is rounded **down** to the pump's rate step, and a volume
   computed from a dose is rounded **down** to the volume step, so rounding can only ever deliver
   *less* than ordered, never more. Where a result has no exact decimal form, flows and volumes
   are rounded down and doses derived from them rounded up, in the 28th significant digit: a
   check on the reported dose is never more lenient than the truth.
3. Because of rule 2, dose error reduction is checked on the dose that the rounded rate really
   delivers (``flow_to_dose``), not only on the dose typed in: rounding can never slip a
   programme past a limit, and a limit hit caused by rounding is reported as such.
4. Doses shown to a person are derived from the delivering flow rate and rounded half-even to
   the display precision only at the moment they are rendered.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal, localcontext
from fractions import Fraction

from pumpguard.clinical.units import AmountUnit, DoseUnit, TimeUnit

__all__ = [
    "ML_PER_H",
    "Concentration",
    "DosingError",
    "dose_to_flow",
    "dose_to_volume",
    "flow_to_dose",
    "round_down",
    "volume_to_dose",
]

ML_PER_H = DoseUnit(AmountUnit.ML, time=TimeUnit.H)
"""The pump's native unit of flow."""


class DosingError(ValueError):
    """A dose that cannot be turned into a flow rate (missing weight, wrong units ...)."""


def round_down(value: Decimal, step: Decimal) -> Decimal:
    """Round towards zero to a multiple of ``step`` (rule 2)."""
    if step <= 0:
        raise ValueError("step must be positive")
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def _decimal(value: Fraction, rounding: str) -> Decimal:
    with localcontext() as ctx:
        ctx.rounding = rounding
        return Decimal(value.numerator) / Decimal(value.denominator)


def _floor_to(value: Fraction, step: Decimal | None) -> Decimal:
    if step is None:
        return _decimal(value, ROUND_FLOOR)
    if step <= 0:
        raise ValueError("step must be positive")
    return (value / Fraction(step)).__floor__() * step


@dataclass(frozen=True, slots=True)
class Concentration:
    """``amount`` of drug in ``volume_ml`` of solution, e.g. 25,000 units in 250 mL."""

    amount: Decimal
    unit: AmountUnit
    volume_ml: Decimal

    def __post_init__(self) -> None:
        if self.amount <= 0 or self.volume_ml <= 0:
            raise DosingError("a concentration needs a positive amount and volume")
        if self.unit is AmountUnit.ML:
            raise DosingError("a concentration's amount must be a drug amount, not mL")

    def per_ml_exact(self, unit: AmountUnit) -> Fraction:
        """Drug amount per mL in ``unit`` (same dimension), as an exact fraction."""
        if unit.dimension != self.unit.dimension:
            raise DosingError(
                f"dose in {unit} cannot be given from a concentration in {self.unit}/mL"
            )
        base = Fraction(self.unit.base) / Fraction(unit.base)
        return Fraction(self.amount) / Fraction(self.volume_ml) * base

    def per_ml(self, unit: AmountUnit) -> Decimal:
        """Drug amount per mL in ``unit``, for display (28 significant digits)."""
        value = self.per_ml_exact(unit)
        return Decimal(value.numerator) / Decimal(value.denominator)

    def __str__(self) -> str:
        return f"{self.amount:,} {self.unit} in {self.volume_ml} mL"


def _ml_per_unit(
    unit: DoseUnit, concentration: Concentration | None, weight_kg: Decimal | None
) -> Fraction:
    """mL of solution per one ``unit`` of dose (times the weight), before any time factor."""
    if unit.per_kg and (weight_kg is None or weight_kg <= 0):
        raise DosingError(f"{unit} needs the patient's weight")
    scale = Fraction(weight_kg) if unit.per_kg and weight_kg is not None else Fraction(1)
    if unit.amount is AmountUnit.ML:
        return scale
    if concentration is None:
        raise DosingError(f"{unit} needs the drug's concentration")
    return scale / concentration.per_ml_exact(unit.amount)


def _per_hour(unit: DoseUnit) -> Fraction:
    if unit.time is None:
        raise DosingError(f"{unit} is not a rate; a continuous dose needs a time base")
    return Fraction(TimeUnit.H.minutes) / Fraction(unit.time.minutes)


def dose_to_flow(
    dose: Decimal,
    unit: DoseUnit,
    concentration: Concentration | None,
    weight_kg: Decimal | None = None,
    step: Decimal | None = None,
) -> Decimal:
    """Flow rate in mL/h that delivers ``dose``, rounded down (to ``step`` when given)."""
    flow = Fraction(dose) * _ml_per_unit(unit, concentration, weight_kg) * _per_hour(unit)
    return _floor_to(flow, step)


def flow_to_dose(
    flow_ml_h: Decimal,
    unit: DoseUnit,
    concentration: Concentration | None,
    weight_kg: Decimal | None = None,
) -> Decimal:
    """The dose, in ``unit``, that a flow rate delivers (rounded up if not exact)."""
    dose = Fraction(flow_ml_h) / _ml_per_unit(unit, concentration, weight_kg) / _per_hour(unit)
    return _decimal(dose, ROUND_CEILING)


def dose_to_volume(
    dose: Decimal,
    unit: DoseUnit,
    concentration: Concentration | None,
    weight_kg: Decimal | None = None,
    step: Decimal | None = None,
) -> Decimal:
    """Volume in mL of a one-off dose (a bolus), rounded down (to ``step`` when given)."""
    if unit.time is not None:
        raise DosingError(f"{unit} is a rate; a bolus dose has no time base")
    return _floor_to(Fraction(dose) * _ml_per_unit(unit, concentration, weight_kg), step)


def volume_to_dose(
    volume_ml: Decimal,
    unit: DoseUnit,
    concentration: Concentration | None,
    weight_kg: Decimal | None = None,
) -> Decimal:
    """The one-off dose, in ``unit``, that ``volume_ml`` of solution holds (rounded up)."""
    if unit.time is not None:
        raise DosingError(f"{unit} is a rate")
    dose = Fraction(volume_ml) / _ml_per_unit(unit, concentration, weight_kg)
    return _decimal(dose, ROUND_CEILING)
