"""Dose error reduction: is this dose of this drug allowed in this care area for this patient?

The same check serves the pump's keypad, an EHR order and the ``library check`` command, so a
verdict means the same thing wherever it is seen. Each verdict that blocks an order maps to the
IHE PCD ERR-5 code an Infusion Order Consumer returns for it (IHE PCD TF, PIV transaction PCD-03).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from pumpguard.clinical.dosing import Concentration
from pumpguard.clinical.library import CareArea, DrugEntry, DrugLibrary, Limits
from pumpguard.clinical.units import DoseUnit, UnitError, parse_dose_unit

__all__ = [
    "SEVERITY",
    "DersResult",
    "DoseKind",
    "Finding",
    "Verdict",
    "check_dose",
    "check_limits",
    "resolve_entry",
]


class Verdict(StrEnum):
    """The outcome of a dose error reduction check, most severe last in ``SEVERITY``."""

    OK = "ok"
    SOFT_LOW = "soft-low"
    SOFT_HIGH = "soft-high"
    HARD_LOW = "hard-low"
    HARD_HIGH = "hard-high"
    NO_MATCH = "no-match"
    UNITS_MISMATCH = "units-mismatch"
    CARE_AREA_MISMATCH = "care-area-mismatch"
    WEIGHT_REQUIRED = "weight-required"
    WEIGHT_OUT_OF_RANGE = "weight-out-of-range"

    @property
    def err_code(self) -> int | None:
        """IHE PCD ERR-5 code for an order refused with this verdict (None: not an error)."""
        return _ERR_CODES.get(self)

    @property
    def is_soft(self) -> bool:
        return self in (Verdict.SOFT_LOW, Verdict.SOFT_HIGH)

    @property
    def blocks(self) -> bool:
        """A blocking verdict cannot be overridden by anyone, at the pump or elsewhere."""
        return self is not Verdict.OK and not self.is_soft


_ERR_CODES = {
    Verdict.HARD_LOW: 9024,
    Verdict.HARD_HIGH: 9024,
    Verdict.NO_MATCH: 9010,
    Verdict.UNITS_MISMATCH: 9009,
    Verdict.CARE_AREA_MISMATCH: 9021,
    Verdict.WEIGHT_REQUIRED: 9011,
    Verdict.WEIGHT_OUT_OF_RANGE: 9005,
}

SEVERITY: tuple[Verdict, ...] = (
    Verdict.OK,
    Verdict.SOFT_LOW,
    Verdict.SOFT_HIGH,
    Verdict.HARD_LOW,
    Verdict.HARD_HIGH,
    Verdict.WEIGHT_OUT_OF_RANGE,
    Verdict.WEIGHT_REQUIRED,
    Verdict.UNITS_MISMATCH,
    Verdict.NO_MATCH,
    Verdict.CARE_AREA_MISMATCH,
)


class DoseKind(StrEnum):
    """Which of an entry's rules a dose is checked against."""

    CONTINUOUS = "continuous"
    BOLUS = "bolus"
    PCA_DEMAND = "pca-demand"
    LOADING = "loading"


@dataclass(frozen=True, slots=True)
class Finding:
    """One checked quantity: what it was, which limit it met, and what that means."""

    field: str
    verdict: Verdict
    message: str
    value: Decimal | None = None
    limit: Decimal | None = None
    unit: str = ""


@dataclass(frozen=True, slots=True)
class DersResult:
    """All findings of one check; the overall verdict is the most severe of them."""

    findings: tuple[Finding, ...]
    entry: DrugEntry | None = field(default=None, repr=False)
    care_area: CareArea | None = field(default=None, repr=False)
    candidates: tuple[str, ...] = ()

    @property
    def verdict(self) -> Verdict:
        return max((f.verdict for f in self.findings), key=SEVERITY.index, default=Verdict.OK)

    @property
    def err_code(self) -> int | None:
        return self.verdict.err_code

    @property
    def message(self) -> str:
        worst = self.verdict
        return "; ".join(f.message for f in self.findings if f.verdict is worst) or "within limits"

    def plus(self, findings: Iterable[Finding]) -> DersResult:
        return DersResult((*self.findings, *findings), self.entry, self.care_area, self.candidates)


def _fmt(value: Decimal) -> str:
    return f"{value.normalize():f}"


def check_limits(field: str, value: Decimal, limits: Limits | None, unit: str) -> Finding:
    """Compare one value with one set of limits: hard first, then soft."""
    text = f"{field} {_fmt(value)} {unit}".rstrip()
    if not value.is_finite():
        return Finding(
            field, Verdict.HARD_HIGH, f"{field} is not a finite number", None, None, unit
        )
    if value < 0:
        return Finding(field, Verdict.HARD_LOW, f"{text} is negative", value, Decimal(0), unit)
    if limits is None:
        return Finding(field, Verdict.OK, f"{text}: no limits", value, None, unit)
    checks: tuple[tuple[Decimal | None, Verdict, str], ...] = (
        (limits.hard_max, Verdict.HARD_HIGH, "above hard max"),
        (limits.hard_min, Verdict.HARD_LOW, "below hard min"),
        (limits.soft_max, Verdict.SOFT_HIGH, "above soft max"),
        (limits.soft_min, Verdict.SOFT_LOW, "below soft min"),
    )
    for limit, verdict, words in checks:
        if limit is None:
            continue
        crossed = value > limit if words.startswith("above") else value < limit
        if crossed:
            message = f"{text} is {words} {_fmt(limit)} {unit}".rstrip()
            return Finding(field, verdict, message, value, limit, unit)
    return Finding(field, Verdict.OK, f"{text} is within limits", value, None, unit)


def resolve_entry(
    library: DrugLibrary,
    care_area: str,
    drug: str,
    concentration: Concentration | None = None,
) -> DersResult:
    """Find the one entry an order refers to, or say precisely why there is none."""
    area = library.care_area(care_area)
    if area is None:
        known = ", ".join(a.name for a in library.care_areas)
        return DersResult(
            (
                Finding(
                    "care_area",
                    Verdict.CARE_AREA_MISMATCH,
                    f"care area {care_area!r} is not in library {library.library_id} "
                    f"v{library.version} (known: {known})",
                ),
            )
        )
    matches = area.find(drug)
    if concentration is not None:
        matches = [e for e in matches if _same_concentration(e, concentration)]
    if len(matches) != 1:
        why = (
            f"no entry for {drug!r} in care area {area.name}"
            if not matches
            else f"{drug!r} has {len(matches)} concentrations in {area.name}; name one"
        )
        if concentration is not None and not matches:
            why += f" at {concentration}"
        labels = tuple(e.label() for e in matches)
        return DersResult((Finding("drug", Verdict.NO_MATCH, why),), None, area, labels)
    return DersResult((), matches[0], area)


def _same_concentration(entry: DrugEntry, concentration: Concentration) -> bool:
    own = entry.to_concentration()
    if own is None or own.unit.dimension != concentration.unit.dimension:
        return False
    return own.per_ml_exact(own.unit) == concentration.per_ml_exact(own.unit)


def _rule(entry: DrugEntry, kind: DoseKind) -> tuple[DoseUnit, Limits] | None:
    if kind is DoseKind.CONTINUOUS:
        return entry.unit, entry.continuous
    if kind is DoseKind.BOLUS and entry.bolus is not None:
        return entry.bolus.unit, entry.bolus.dose
    if kind is DoseKind.PCA_DEMAND and entry.pca is not None:
        return entry.pca.unit, entry.pca.demand_dose
    if kind is DoseKind.LOADING and entry.pca is not None and entry.pca.loading_dose is not None:
        return entry.pca.unit, entry.pca.loading_dose
    return None


def check_dose(
    library: DrugLibrary,
    care_area: str,
    drug: str,
    dose: Decimal,
    unit: DoseUnit | str,
    *,
    weight_kg: Decimal | None = None,
    kind: DoseKind = DoseKind.CONTINUOUS,
    concentration: Concentration | None = None,
) -> DersResult:
    """The DERS verdict for one dose; see ``Verdict`` for what each outcome means."""
    result = resolve_entry(library, care_area, drug, concentration)
    entry = result.entry
    if entry is None:
        return result
    try:
        dose_unit = unit if isinstance(unit, DoseUnit) else parse_dose_unit(unit)
    except UnitError as exc:
        return result.plus([Finding("unit", Verdict.UNITS_MISMATCH, str(exc))])
    rule = _rule(entry, kind)
    if rule is None:
        return result.plus(
            [
                Finding(
                    "kind", Verdict.NO_MATCH, f"{entry.label()} has no {kind} rule in {care_area}"
                )
            ]
        )
    rule_unit, limits = rule
    if not dose_unit.compatible_with(rule_unit):
        return result.plus(
            [
                Finding(
                    "unit",
                    Verdict.UNITS_MISMATCH,
                    f"{entry.name} is dosed in {rule_unit} here, not {dose_unit}",
                )
            ]
        )
    findings: list[Finding] = []
    if entry.weight_kg is not None and weight_kg is not None:
        low, high = entry.weight_kg.min_kg, entry.weight_kg.max_kg
        if not low <= weight_kg <= high:
            findings.append(
                Finding(
                    "weight_kg",
                    Verdict.WEIGHT_OUT_OF_RANGE,
                    f"weight {_fmt(weight_kg)} kg is outside {_fmt(low)}-{_fmt(high)} kg "
                    f"for {entry.label()} in {care_area}",
                    weight_kg,
                )
            )
    if rule_unit.per_kg and weight_kg is None:
        findings.append(
            Finding("weight_kg", Verdict.WEIGHT_REQUIRED, f"{rule_unit} dosing needs a weight")
        )
    if weight_kg is not None and weight_kg <= 0:
        findings.append(
            Finding("weight_kg", Verdict.WEIGHT_OUT_OF_RANGE, "weight must be positive", weight_kg)
        )
    findings.append(
        check_limits(str(kind), dose_unit.convert(dose, rule_unit), limits, str(rule_unit))
    )
    return result.plus(findings)
