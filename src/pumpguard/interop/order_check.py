"""May this PIV order be pre-filled on this pump? The server-side decision, pure and total.

Every refusal carries the IHE PCD ERR-5 code the ``RRG^O16`` will report. Dose limits are never
judged here: ``clinical.check_dose`` (and ``check_limits`` for PCA lockout and hourly limits) is
the one dose error reduction check, so a verdict means the same at the pump, in the CLI and for
an EHR order. The pump re-checks whatever it is sent; this check exists so that an order that
cannot be programmed is refused with a precise code before it reaches a bedside.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from pumpguard.clinical import (
    Concentration,
    DersResult,
    DoseKind,
    DrugEntry,
    DrugLibrary,
    Limits,
    PumpKind,
    UnitError,
    Verdict,
    check_dose,
    check_limits,
    dose_to_flow,
    parse_amount_unit,
    parse_dose_unit,
)
from pumpguard.devices.infusion import (
    CommandResult,
    ContinuousProgramme,
    PcaProgramme,
    PumpModel,
)
from pumpguard.interop._units import unit_text
from pumpguard.interop.codes import (
    AckCode,
    AppError,
    ErrorSeverity,
    Hl7ErrorCode,
    InteropEvent,
    OrderControl,
)
from pumpguard.interop.errors import ErrorLocation
from pumpguard.interop.models import AppErrorDetail, InfusionOrder, Quantity

__all__ = [
    "OrderContext",
    "OrderFinding",
    "OrderVerdict",
    "PumpStatus",
    "app_error_for_pump",
    "check_order",
]

_WEIGHT_TOLERANCE_KG = Decimal("0.1")


@dataclass(frozen=True, slots=True)
class PumpStatus:
    """What the server knows about one pump when an order for it arrives."""

    pump_id: str
    kind: PumpKind
    online: bool = True
    powered: bool = True
    infusing: bool = False
    accepting: bool = True
    care_area: str | None = None
    patient_id: str | None = None
    patient_weight_kg: Decimal | None = None
    running_drug: str | None = None
    model: PumpModel | None = None

    @property
    def pump_model(self) -> PumpModel:
        return self.model or PumpModel.for_kind(self.kind)


@dataclass(frozen=True, slots=True)
class OrderContext:
    """The server's knowledge at the instant of the check; ``seen_*`` make replays visible.

    ``max_order_age`` None turns the staleness check off (for replaying archived messages);
    an order dated in the future beyond ``max_clock_skew`` is refused either way.
    """

    pumps: Mapping[str, PumpStatus]
    library: DrugLibrary | None
    now: datetime
    max_order_age: timedelta | None = timedelta(minutes=15)
    max_clock_skew: timedelta = timedelta(minutes=2)
    seen_control_ids: frozenset[str] = frozenset()
    seen_placer_orders: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class OrderFinding:
    """Why an order is refused: an ERR-5 code, a sentence, and where in the PIV it points."""

    app_error: AppError
    message: str
    location: ErrorLocation | None = None
    hl7_code: Hl7ErrorCode = Hl7ErrorCode.INTERNAL_ERROR

    def detail(self) -> AppErrorDetail:
        return AppErrorDetail(
            self.hl7_code, ErrorSeverity.ERROR, self.app_error, self.message, self.location
        )


@dataclass(frozen=True, slots=True)
class OrderVerdict:
    """The answer for ``RRG^O16``: AA with the programme to pre-fill, or AE/AR with why not."""

    finding: OrderFinding | None
    programme: ContinuousProgramme | PcaProgramme | None = None
    ders: DersResult | None = field(default=None, repr=False)
    events: tuple[InteropEvent, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.finding is None

    @property
    def code(self) -> AckCode:
        if self.finding is None:
            return AckCode.AA
        return AckCode.AR if self.finding.app_error.rejects else AckCode.AE

    @property
    def needs_override(self) -> bool:
        """Accepted, but outside a soft limit: the clinician must give a reason at the pump."""
        return self.ders is not None and self.ders.verdict.is_soft

    def details(self) -> tuple[AppErrorDetail, ...]:
        return () if self.finding is None else (self.finding.detail(),)


class _Refused(Exception):
    def __init__(self, finding: OrderFinding, *events: InteropEvent) -> None:
        super().__init__(finding.message)
        self.finding = finding
        self.events = events


def _refuse(
    error: AppError,
    message: str,
    location: ErrorLocation | None = None,
    *events: InteropEvent,
    hl7_code: Hl7ErrorCode = Hl7ErrorCode.INTERNAL_ERROR,
) -> _Refused:
    return _Refused(OrderFinding(error, message, location, hl7_code), *events)


_RXG = "RXG"


def _at(segment: str, field_no: int) -> ErrorLocation:
    return ErrorLocation(segment, 1, field_no)


def check_order(order: InfusionOrder, context: OrderContext) -> OrderVerdict:
    """Every PIV decision REFERENCE lists, in the order a pharmacist would ask them."""
    try:
        return _check(order, context)
    except _Refused as refused:
        return OrderVerdict(refused.finding, events=refused.events)


def _check(order: InfusionOrder, context: OrderContext) -> OrderVerdict:
    _check_freshness(order, context)
    pump = context.pumps.get(order.pump_id)
    if pump is None:
        raise _refuse(
            AppError.UNKNOWN_INFUSER, f"no pump {order.pump_id!r} is known", _at("OBX", 18)
        )
    if not pump.powered:
        raise _refuse(AppError.POWERED_OFF, f"pump {pump.pump_id} is powered off")
    if not pump.online:
        raise _refuse(AppError.OFFLINE, f"pump {pump.pump_id} is offline")
    if pump.patient_id is not None and pump.patient_id != order.patient_id:
        raise _refuse(
            AppError.PATIENT_MISMATCH,
            f"pump {pump.pump_id} is associated with another patient, not {order.patient_id}",
            _at("PID", 3),
            InteropEvent.PATIENT_MISMATCH,
        )
    _check_state(order, pump)
    library = context.library
    if library is None:
        raise _refuse(AppError.NO_LIBRARY_MATCH, "no drug library is installed for this pump")
    area = _care_area(order, pump, library)
    if order.is_pca:
        return _check_pca(order, pump, library, area)
    return _check_continuous(order, pump, library, area)


def _check_freshness(order: InfusionOrder, context: OrderContext) -> None:
    if order.control_id in context.seen_control_ids:
        raise _refuse(
            AppError.STALE_ORDER,
            f"message {order.control_id} was already received: a replay",
            ErrorLocation("MSH", 1, 10),
            InteropEvent.REPLAYED,
            hl7_code=Hl7ErrorCode.DUPLICATE_KEY,
        )
    if (
        order.control is OrderControl.NEW
        and order.placer_order_number in context.seen_placer_orders
    ):
        raise _refuse(
            AppError.STALE_ORDER,
            f"order {order.placer_order_number} was already received as a new order: a replay",
            _at("ORC", 2),
            InteropEvent.REPLAYED,
            hl7_code=Hl7ErrorCode.DUPLICATE_KEY,
        )
    age = context.now - order.order_time
    limit = context.max_order_age
    if limit is not None and age > limit:
        minutes = int(age.total_seconds() // 60)
        raise _refuse(
            AppError.STALE_ORDER,
            f"order {order.placer_order_number} is {minutes} min old "
            f"(at most {int(limit.total_seconds() // 60)} min)",
            _at("ORC", 9),
            InteropEvent.STALE,
        )
    if -age > context.max_clock_skew:
        raise _refuse(
            AppError.STALE_ORDER,
            f"order {order.placer_order_number} is dated in the future",
            _at("ORC", 9),
            InteropEvent.STALE,
        )


def _check_state(order: InfusionOrder, pump: PumpStatus) -> None:
    if order.control is OrderControl.NEW and pump.infusing:
        raise _refuse(
            AppError.CURRENTLY_INFUSING,
            f"pump {pump.pump_id} is infusing; a new container needs ORC-1 XO or a stopped pump",
            _at("ORC", 1),
        )
    if order.control is OrderControl.CHANGE and not pump.infusing:
        raise _refuse(
            AppError.CANNOT_ACCEPT,
            f"ORC-1 XO changes a running infusion, and pump {pump.pump_id} is not infusing",
            _at("ORC", 1),
        )
    if not pump.accepting:
        raise _refuse(
            AppError.CANNOT_ACCEPT,
            f"pump {pump.pump_id} cannot accept a programme now (alarm or programme pending)",
        )


def _care_area(order: InfusionOrder, pump: PumpStatus, library: DrugLibrary) -> str:
    if pump.care_area is None or library.care_area(pump.care_area) is None:
        raise _refuse(
            AppError.CARE_AREA_MISMATCH,
            f"pump {pump.pump_id} has no care area of library {library.library_id} selected",
        )
    pump_area = library.care_area(pump.care_area)
    if order.care_area is not None and library.care_area(order.care_area) is not pump_area:
        raise _refuse(
            AppError.CARE_AREA_MISMATCH,
            f"order for care area {order.care_area!r}, pump is in {pump.care_area}",
            _at("OBX", 5),
        )
    return pump.care_area


def _drug_key(order: InfusionOrder, library: DrugLibrary, area: str) -> str:
    """RXG-4 against the library: the identifier as a drug code, else the text (then the
    identifier) as a name, case-insensitively."""
    care_area = library.care_area(area)
    entries = care_area.entries if care_area is not None else []
    ident, text = order.drug.identifier.strip(), order.drug.text.strip()
    if ident and any(e.code.casefold() == ident.casefold() for e in entries):
        return next(e.code for e in entries if e.code.casefold() == ident.casefold())
    for name in (text, ident):
        if name and any(e.name.casefold() == name.casefold() for e in entries):
            return name
    raise _refuse(
        AppError.NO_LIBRARY_MATCH,
        f"{order.drug.text or order.drug.identifier!r} (code {ident or '-'}) is not in care "
        f"area {area} of the drug library",
        _at(_RXG, 4),
    )


def _concentration(order: InfusionOrder) -> Concentration | None:
    if order.strength is None or order.strength_volume is None:
        return None
    unit = unit_text(order.strength.unit)
    volume_unit = unit_text(order.strength_volume.unit)
    if unit is None or volume_unit not in ("mL", None):
        raise _refuse(
            AppError.INVALID_UNITS,
            "strength (RXG-18) needs a drug amount unit and strength volume (RXG-24) mL",
            _at(_RXG, 18),
        )
    try:
        return Concentration(
            order.strength.value, parse_amount_unit(unit), order.strength_volume.value
        )
    except (UnitError, ValueError) as exc:
        raise _refuse(AppError.INVALID_UNITS, f"strength: {exc}", _at(_RXG, 18)) from None


def _weight(order: InfusionOrder, pump: PumpStatus) -> Decimal | None:
    weight = _in_unit(order.weight, "kg", "patient weight", ErrorLocation("OBX", 1, 6))
    if (
        weight is not None
        and pump.patient_weight_kg is not None
        and abs(weight - pump.patient_weight_kg) > _WEIGHT_TOLERANCE_KG
    ):
        raise _refuse(
            AppError.WEIGHT_MISMATCH,
            f"order weight {weight} kg differs from the {pump.patient_weight_kg} kg "
            f"known for this patient",
            ErrorLocation("OBX", 1, 5),
        )
    return weight


def _in_unit(
    quantity: Quantity | None, unit: str, what: str, where: ErrorLocation
) -> Decimal | None:
    if quantity is None:
        return None
    given = unit_text(quantity.unit)
    if given is not None and given.casefold() != unit.casefold():
        raise _refuse(AppError.INVALID_UNITS, f"{what} is in {given}, expected {unit}", where)
    if quantity.value <= 0:
        raise _refuse(AppError.OUT_OF_RANGE, f"{what} must be positive", where)
    return quantity.value


def _blocking(ders: DersResult, location: ErrorLocation) -> None:
    verdict = ders.verdict
    if not verdict.blocks:
        return
    code = verdict.err_code
    error = AppError(code) if code is not None else AppError.CANNOT_ACCEPT
    events = (InteropEvent.HARD_LIMIT,) if verdict in (Verdict.HARD_HIGH, Verdict.HARD_LOW) else ()
    if verdict in (Verdict.WEIGHT_REQUIRED, Verdict.WEIGHT_OUT_OF_RANGE):
        location = ErrorLocation("OBX", 1, 5)
    raise _refuse(error, ders.message, location, *events)


def _rate_fits(
    pump: PumpStatus, library: DrugLibrary, area: str, entry: DrugEntry, rate: Decimal
) -> list[tuple[AppError, str]]:
    model = pump.pump_model
    problems: list[tuple[AppError, str]] = []
    if rate > model.max_rate_ml_h:
        problems.append(
            (
                AppError.EXCEEDS_MAXIMUM,
                f"rate {rate} mL/h exceeds the pump maximum {model.max_rate_ml_h} mL/h",
            )
        )
    elif rate < model.min_rate_ml_h:
        problems.append(
            (
                AppError.OUT_OF_RANGE,
                f"rate {rate} mL/h is below the pump minimum {model.min_rate_ml_h} mL/h",
            )
        )
    care_area = library.care_area(area)
    if care_area is not None and care_area.max_rate_ml_h is not None:
        finding = check_limits("rate", rate, Limits(hard_max=care_area.max_rate_ml_h), "mL/h")
        if finding.verdict.blocks:
            problems.append((AppError.HARD_LIMIT, finding.message))
    if model.kind not in entry.pump_kinds:
        problems.append(
            (AppError.NO_LIBRARY_MATCH, f"{entry.label()} is not allowed on a {model.kind} pump")
        )
    return problems


def _check_continuous(
    order: InfusionOrder, pump: PumpStatus, library: DrugLibrary, area: str
) -> OrderVerdict:
    if order.rate is None:
        raise _refuse(
            AppError.MISSING_PARAMETER,
            "missing required program parameter: give rate amount (RXG-15)",
            _at(_RXG, 15),
        )
    if order.volume is None:
        raise _refuse(
            AppError.MISSING_PARAMETER,
            "missing required program parameter: volume to be infused (RXG-5)",
            _at(_RXG, 5),
        )
    vtbi = _in_unit(order.volume, "mL", "volume to be infused", _at(_RXG, 7))
    assert vtbi is not None
    drug = _drug_key(order, library, area)
    concentration = _concentration(order)
    weight = _weight(order, pump)
    unit = unit_text(order.rate.unit) or ""
    ders = check_dose(
        library,
        area,
        drug,
        order.rate.value,
        unit,
        weight_kg=weight,
        concentration=concentration,
    )
    _blocking(ders, _at(_RXG, 15))
    entry = ders.entry
    assert entry is not None
    dose_unit = parse_dose_unit(unit)
    rate_ml_h = dose_to_flow(order.rate.value, dose_unit, entry.to_concentration(), weight)
    for error, message in _rate_fits(pump, library, area, entry, rate_ml_h):
        raise _refuse(error, message, _at(_RXG, 15))
    if vtbi > pump.pump_model.max_vtbi_ml:
        raise _refuse(
            AppError.EXCEEDS_MAXIMUM,
            f"volume {vtbi} mL exceeds the pump maximum {pump.pump_model.max_vtbi_ml} mL",
            _at(_RXG, 5),
        )
    findings = [check_limits("vtbi", vtbi, entry.vtbi_ml, "mL")]
    if entry.max_duration_min is not None and rate_ml_h > 0:
        # The pump's own check (devices.infusion): VTBI at this rate must end in time.
        minutes = vtbi / rate_ml_h * 60
        findings.append(
            check_limits("duration", minutes, Limits(hard_max=entry.max_duration_min), "min")
        )
    ders = ders.plus(findings)
    _blocking(ders, _at(_RXG, 5))
    programme = ContinuousProgramme(
        drug=drug,
        dose=order.rate.value,
        dose_unit=str(dose_unit),
        vtbi_ml=vtbi,
        weight_kg=weight,
        concentration=concentration,
        care_area=area,
        order_id=order.placer_order_number,
        patient_id=order.patient_id,
    )
    return OrderVerdict(None, programme, ders)


def _check_pca(
    order: InfusionOrder, pump: PumpStatus, library: DrugLibrary, area: str
) -> OrderVerdict:
    pca = order.pca
    if pca is None or pca.lockout is None:
        raise _refuse(
            AppError.LOCKOUT_MISSING,
            "a PCA order needs a lockout interval (OBX 157989)",
            ErrorLocation("OBX"),
        )
    if pca.dose_limit is None:
        raise _refuse(
            AppError.DOSE_LIMIT_MISSING,
            "a PCA order needs a dose limit (OBX 157985)",
            ErrorLocation("OBX"),
        )
    if order.volume is None:
        raise _refuse(
            AppError.MISSING_PARAMETER,
            "missing required program parameter: PCA dose (RXG-5)",
            _at(_RXG, 5),
        )
    if order.strength_volume is None:
        raise _refuse(
            AppError.MISSING_PARAMETER,
            "missing required program parameter: reservoir volume (RXG-23)",
            _at(_RXG, 23),
        )
    reservoir = _in_unit(order.strength_volume, "mL", "reservoir volume", _at(_RXG, 24))
    assert reservoir is not None
    drug = _drug_key(order, library, area)
    concentration = _concentration(order)
    weight = _weight(order, pump)
    dose_unit = unit_text(order.volume.unit) or ""
    lockout = _minutes(pca.lockout, "lockout")
    period = _minutes(pca.dose_limit_period, "dose limit period") if pca.dose_limit_period else 60
    if period != 60:
        raise _refuse(
            AppError.OUT_OF_RANGE,
            f"dose limit period {period} min: only a one-hour limit can be programmed",
            ErrorLocation("OBX"),
        )
    limit_unit = unit_text(pca.dose_limit.unit) or dose_unit

    def check(value: Decimal, unit: str, kind: DoseKind) -> DersResult:
        return check_dose(
            library,
            area,
            drug,
            value,
            unit,
            weight_kg=weight,
            kind=kind,
            concentration=concentration,
        )

    ders = check(order.volume.value, dose_unit, DoseKind.PCA_DEMAND)
    _blocking(ders, _at(_RXG, 5))
    entry = ders.entry
    assert entry is not None and entry.pca is not None
    try:
        hourly = parse_dose_unit(limit_unit).convert(pca.dose_limit.value, entry.pca.unit)
    except UnitError as exc:
        raise _refuse(AppError.UNITS_MISMATCH, f"dose limit: {exc}", ErrorLocation("OBX")) from None
    ders = ders.plus(
        [
            check_limits("lockout", lockout, entry.pca.lockout_min, "min"),
            check_limits("hourly_limit", hourly, entry.pca.hourly_limit, str(entry.pca.unit)),
        ]
    )
    _blocking(ders, ErrorLocation("OBX"))
    basal = Decimal(0)
    if order.rate is not None:
        basal = order.rate.value
        basal_ders = check(basal, unit_text(order.rate.unit) or "", DoseKind.CONTINUOUS)
        _blocking(basal_ders, _at(_RXG, 15))
        ders = ders.plus(basal_ders.findings)
    if reservoir > pump.pump_model.max_vtbi_ml:
        raise _refuse(
            AppError.EXCEEDS_MAXIMUM,
            f"reservoir {reservoir} mL exceeds the pump maximum {pump.pump_model.max_vtbi_ml} mL",
            _at(_RXG, 23),
        )
    if pump.pump_model.kind not in entry.pump_kinds:
        raise _refuse(
            AppError.NO_LIBRARY_MATCH,
            f"{entry.label()} is not allowed on a {pump.pump_model.kind} pump",
            _at(_RXG, 4),
        )
    programme = PcaProgramme(
        drug=drug,
        demand_dose=order.volume.value,
        lockout_min=lockout,
        hourly_limit=pca.dose_limit.value,
        vtbi_ml=reservoir,
        dose_unit=dose_unit,
        basal_rate=basal,
        weight_kg=weight,
        concentration=concentration,
        care_area=area,
        order_id=order.placer_order_number,
        patient_id=order.patient_id,
    )
    return OrderVerdict(None, programme, ders)


def _minutes(quantity: Quantity | None, what: str) -> Decimal:
    assert quantity is not None
    unit = unit_text(quantity.unit) or "min"
    factor = {"min": Decimal(1), "h": Decimal(60), "s": Decimal(1) / Decimal(60)}.get(unit)
    if factor is None:
        raise _refuse(
            AppError.INVALID_UNITS, f"{what} is in {unit}, expected min or h", ErrorLocation("OBX")
        )
    if quantity.value <= 0:
        raise _refuse(AppError.OUT_OF_RANGE, f"{what} must be positive", ErrorLocation("OBX"))
    return quantity.value * factor


def app_error_for_pump(result: CommandResult) -> AppError | None:
    """The ERR-5 code for a pump's refusal of a pre-fill (None when it accepted)."""
    if result.accepted:
        return None
    code = result.err_code
    try:
        return AppError(code) if code is not None else AppError.CANNOT_ACCEPT
    except ValueError:
        return AppError.CANNOT_ACCEPT
