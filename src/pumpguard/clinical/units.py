"""Units of drug amount, time and dose, parsed strictly from the text clinicians write.

A dose unit is ``amount[/kg][/time]``: ``mL/h``, ``mcg/kg/min``, ``units/kg/h``, ``mg`` (a bolus
dose), ``mg/kg`` (a weight-based bolus dose). Parsing refuses the abbreviations on the ISMP list of
error-prone abbreviations (``U``, ``IU``, ``cc``) because a unit the pump guesses at is a tenfold
error waiting to happen. The UCUM spelling ``ug`` (what HL7 messages carry) reads as ``mcg``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum, StrEnum
from fractions import Fraction

__all__ = [
    "AmountUnit",
    "Dimension",
    "DoseUnit",
    "TimeUnit",
    "UnitError",
    "parse_amount_unit",
    "parse_dose_unit",
]


class UnitError(ValueError):
    """A unit text that pumpguard cannot read, or two units that cannot be converted."""


class Dimension(StrEnum):
    """What an amount measures; amounts convert only within one dimension."""

    VOLUME = "volume"
    MASS = "mass"
    ACTIVITY = "activity"
    EQUIVALENTS = "equivalents"
    SUBSTANCE = "substance"


class AmountUnit(Enum):
    """An amount of drug, with its dimension and its size in that dimension's base unit."""

    ML = ("mL", Dimension.VOLUME, Decimal(1))
    G = ("g", Dimension.MASS, Decimal(1_000_000))
    MG = ("mg", Dimension.MASS, Decimal(1_000))
    MCG = ("mcg", Dimension.MASS, Decimal(1))
    NG = ("ng", Dimension.MASS, Decimal("0.001"))
    UNITS = ("units", Dimension.ACTIVITY, Decimal(1))
    MILLIUNITS = ("milliunits", Dimension.ACTIVITY, Decimal("0.001"))
    MEQ = ("mEq", Dimension.EQUIVALENTS, Decimal(1))
    MMOL = ("mmol", Dimension.SUBSTANCE, Decimal(1))

    def __init__(self, text: str, dimension: Dimension, base: Decimal) -> None:
        self.text = text
        self.dimension = dimension
        self.base = base

    def __str__(self) -> str:
        return self.text


class TimeUnit(Enum):
    """The time base of a rate, with its length in minutes."""

    MIN = ("min", Decimal(1))
    H = ("h", Decimal(60))

    def __init__(self, text: str, minutes: Decimal) -> None:
        self.text = text
        self.minutes = minutes

    def __str__(self) -> str:
        return self.text


_AMOUNT_SPELLINGS: dict[str, AmountUnit] = {
    "ml": AmountUnit.ML,
    "g": AmountUnit.G,
    "gram": AmountUnit.G,
    "grams": AmountUnit.G,
    "mg": AmountUnit.MG,
    "mcg": AmountUnit.MCG,
    "ug": AmountUnit.MCG,
    "µg": AmountUnit.MCG,
    "μg": AmountUnit.MCG,
    "microgram": AmountUnit.MCG,
    "micrograms": AmountUnit.MCG,
    "ng": AmountUnit.NG,
    "unit": AmountUnit.UNITS,
    "units": AmountUnit.UNITS,
    "milliunit": AmountUnit.MILLIUNITS,
    "milliunits": AmountUnit.MILLIUNITS,
    "meq": AmountUnit.MEQ,
    "mmol": AmountUnit.MMOL,
}

_TIME_SPELLINGS: dict[str, TimeUnit] = {
    "min": TimeUnit.MIN,
    "minute": TimeUnit.MIN,
    "h": TimeUnit.H,
    "hr": TimeUnit.H,
    "hour": TimeUnit.H,
}

# ISMP List of Error-Prone Abbreviations, Symbols, and Dose Designations (2021).
_FORBIDDEN = {
    "u": "'U' is on the ISMP error-prone list (read as 0, 4 or cc); write 'units'",
    "iu": "'IU' is on the ISMP error-prone list (read as IV or 10); write 'units'",
    "cc": "'cc' is on the ISMP error-prone list (read as u); write 'mL'",
}


def parse_amount_unit(text: str) -> AmountUnit:
    """Read an amount unit (``mg``, ``units``, ``mL`` ...), refusing error-prone spellings."""
    key = text.strip().lower()
    if key in _FORBIDDEN:
        raise UnitError(_FORBIDDEN[key])
    try:
        return _AMOUNT_SPELLINGS[key]
    except KeyError:
        known = ", ".join(sorted({u.text for u in AmountUnit}))
        raise UnitError(f"unknown amount unit {text!r} (known: {known})") from None


@dataclass(frozen=True, slots=True)
class DoseUnit:
    """A dose mode: an amount, optionally per kilogram of body weight, optionally per time."""

    amount: AmountUnit
    per_kg: bool = False
    time: TimeUnit | None = None

    @property
    def is_rate(self) -> bool:
        return self.time is not None

    @property
    def dimension(self) -> Dimension:
        return self.amount.dimension

    def compatible_with(self, other: DoseUnit) -> bool:
        """Whether values convert exactly: same dimension, weight basis and rate-ness."""
        return (
            self.dimension == other.dimension
            and self.per_kg == other.per_kg
            and self.is_rate == other.is_rate
        )

    def factor_to(self, other: DoseUnit) -> Fraction:
        """The exact number to multiply a value in ``self`` by to express it in ``other``."""
        if not self.compatible_with(other):
            raise UnitError(f"cannot convert {self} to {other}")
        factor = Fraction(self.amount.base) / Fraction(other.amount.base)
        if self.time is not None and other.time is not None:
            factor *= Fraction(other.time.minutes) / Fraction(self.time.minutes)
        return factor

    def convert(self, value: Decimal, to: DoseUnit) -> Decimal:
        """``value`` in ``to``; one division, so a value exactly at a limit stays exactly there."""
        factor = self.factor_to(to)
        return value * factor.numerator / factor.denominator

    def __str__(self) -> str:
        parts = [self.amount.text]
        if self.per_kg:
            parts.append("kg")
        if self.time is not None:
            parts.append(self.time.text)
        return "/".join(parts)


def parse_dose_unit(text: str) -> DoseUnit:
    """Read ``amount[/kg][/time]``; every failure names the offending part."""
    if not isinstance(text, str) or not text.strip():
        raise UnitError("a dose unit is required, e.g. 'mL/h' or 'mcg/kg/min'")
    parts = [p.strip() for p in text.split("/")]
    if len(parts) > 3 or any(not p for p in parts):
        raise UnitError(f"unknown dose unit {text!r}: expected amount[/kg][/time]")
    amount = parse_amount_unit(parts[0])
    rest = parts[1:]
    per_kg = False
    if rest and rest[0].lower() == "kg":
        per_kg = True
        rest = rest[1:]
    time: TimeUnit | None = None
    if rest:
        key = rest[0].lower()
        if key not in _TIME_SPELLINGS:
            raise UnitError(
                f"unknown dose unit {text!r}: {rest[0]!r} is neither 'kg' nor a time (min, h)"
            )
        time = _TIME_SPELLINGS[key]
        rest = rest[1:]
    if rest:
        raise UnitError(f"unknown dose unit {text!r}: unexpected {'/'.join(rest)!r}")
    return DoseUnit(amount, per_kg=per_kg, time=time)
