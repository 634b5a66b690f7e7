"""Checking a programme the way the pump will deliver it: DERS on the rounded rate, the pump's
rate range, the care area's maximum rate, VTBI and duration limits, PCA rules."""

from __future__ import annotations

from decimal import Decimal

from pumpguard.clinical import (
    DersResult,
    DoseKind,
    DoseUnit,
    DrugEntry,
    DrugLibrary,
    Finding,
    Limits,
    TimeUnit,
    Verdict,
    check_dose,
    check_limits,
    dose_to_flow,
    dose_to_volume,
    flow_to_dose,
    parse_dose_unit,
    round_down,
)
from pumpguard.devices.infusion._running import ZERO, Infusion, PcaSession
from pumpguard.devices.infusion.commands import ContinuousProgramme, PcaProgramme
from pumpguard.devices.infusion.model import PumpModel

__all__ = ["evaluate"]


def evaluate(
    model: PumpModel,
    library: DrugLibrary,
    area: str,
    programme: ContinuousProgramme | PcaProgramme,
) -> tuple[DersResult, Infusion | PcaSession | None]:
    """DERS on what the pump would really deliver (rounding rule 3 of ``clinical.dosing``),
    plus the pump's own limits; returns the running state to start if it is confirmed."""
    if programme.care_area is not None and library.care_area(programme.care_area) is not (
        library.care_area(area)
    ):
        finding = Finding(
            "care_area",
            Verdict.CARE_AREA_MISMATCH,
            f"order for care area {programme.care_area!r}, pump is in {area}",
        )
        return DersResult((finding,)), None
    if isinstance(programme, PcaProgramme):
        return _evaluate_pca(model, library, area, programme)
    unit = parse_dose_unit(programme.dose_unit)
    first = check_dose(
        library,
        area,
        programme.drug,
        programme.dose,
        unit,
        weight_kg=programme.weight_kg,
        concentration=programme.concentration,
    )
    entry = first.entry
    if entry is None or first.verdict.blocks:
        return first, None
    conc = entry.to_concentration()
    exact = dose_to_flow(programme.dose, unit, conc, programme.weight_kg)
    rate = round_down(exact, model.rate_step(exact))
    effective = flow_to_dose(rate, unit, conc, programme.weight_kg)
    ders = check_dose(
        library,
        area,
        programme.drug,
        effective,
        unit,
        weight_kg=programme.weight_kg,
        concentration=programme.concentration,
    )
    findings = [_kind_finding(model, entry), *_rate_findings(model, library, rate, area)]
    findings.append(check_limits("vtbi", programme.vtbi_ml, entry.vtbi_ml, "mL"))
    if entry.max_duration_min is not None and rate > 0:
        minutes = programme.vtbi_ml / rate * 60
        findings.append(
            check_limits("duration", minutes, Limits(hard_max=entry.max_duration_min), "min")
        )
    ders = ders.plus(findings)
    hard_max = entry.continuous.hard_max
    assert hard_max is not None
    ceiling = dose_to_flow(entry.unit.convert(hard_max, unit), unit, conc, programme.weight_kg)
    running = Infusion(programme, entry, unit, conc, rate, ceiling, library, area)
    return ders, running


def _evaluate_pca(
    model: PumpModel, library: DrugLibrary, area: str, programme: PcaProgramme
) -> tuple[DersResult, PcaSession | None]:
    unit = parse_dose_unit(programme.dose_unit)
    weight, conc_hint = programme.weight_kg, programme.concentration

    def check(dose: Decimal, dose_unit: DoseUnit, kind: DoseKind) -> DersResult:
        return check_dose(
            library,
            area,
            programme.drug,
            dose,
            dose_unit,
            weight_kg=weight,
            kind=kind,
            concentration=conc_hint,
        )

    demand = check(programme.demand_dose, unit, DoseKind.PCA_DEMAND)
    entry = demand.entry
    if entry is None or entry.pca is None or demand.verdict.blocks:
        return demand, None
    rule = entry.pca
    conc = entry.to_concentration()
    hourly = unit.convert(programme.hourly_limit, rule.unit)
    findings = [
        _kind_finding(model, entry),
        check_limits("lockout", programme.lockout_min, rule.lockout_min, "min"),
        check_limits("hourly_limit", hourly, rule.hourly_limit, str(rule.unit)),
    ]
    if programme.loading_dose > 0:
        findings.extend(check(programme.loading_dose, unit, DoseKind.LOADING).findings)
    basal_rate = ZERO
    if programme.basal_rate > 0:
        basal_unit = DoseUnit(unit.amount, unit.per_kg, TimeUnit.H)
        exact = dose_to_flow(programme.basal_rate, basal_unit, conc, weight)
        basal_rate = round_down(exact, model.rate_step(exact))
        effective = flow_to_dose(basal_rate, basal_unit, conc, weight)
        findings.extend(check(effective, basal_unit, DoseKind.CONTINUOUS).findings)
    first_hour = programme.basal_rate + max(programme.demand_dose, programme.loading_dose)
    if first_hour > programme.hourly_limit:
        findings.append(
            Finding(
                "hourly_limit",
                Verdict.HARD_HIGH,
                f"an hour of basal plus one dose ({first_hour} {unit}) exceeds the hourly "
                f"limit {programme.hourly_limit} {unit}",
            )
        )
    volume = dose_to_volume(programme.demand_dose, unit, conc, weight, model.volume_step)
    hard_max = entry.continuous.hard_max
    assert hard_max is not None
    ceiling = model.pca_bolus_rate_ml_h + dose_to_flow(hard_max, entry.unit, conc, weight)
    pca = PcaSession(programme, entry, entry.unit, conc, basal_rate, volume, ceiling, library, area)
    return demand.plus(findings), pca


def _kind_finding(model: PumpModel, entry: DrugEntry) -> Finding:
    if model.kind in entry.pump_kinds:
        return Finding("pump_kind", Verdict.OK, f"{entry.name} allowed on {model.kind}")
    return Finding(
        "pump_kind",
        Verdict.NO_MATCH,
        f"{entry.label()} is not allowed on a {model.kind} pump",
    )


def _rate_findings(
    model: PumpModel, library: DrugLibrary, rate: Decimal, area: str
) -> list[Finding]:
    out: list[Finding] = []
    if not model.min_rate_ml_h <= rate <= model.max_rate_ml_h:
        limits = Limits(hard_min=model.min_rate_ml_h, hard_max=model.max_rate_ml_h)
        out.append(check_limits("rate", rate, limits, "mL/h"))
    care_area = library.care_area(area)
    if care_area is not None and care_area.max_rate_ml_h is not None:
        out.append(check_limits("rate", rate, Limits(hard_max=care_area.max_rate_ml_h), "mL/h"))
    return out
