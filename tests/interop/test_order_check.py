"""The server-side order check: each PIV decision with its ERR-5 code and AA/AE/AR."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from tests.interop.messages import KG, MG, MIN, ML, ML_H, NOW, library, order, pca_order, piv

from pumpguard.clinical import PumpKind
from pumpguard.clock import VirtualClock
from pumpguard.devices.infusion import (
    CommandResult,
    CommandSource,
    Confirm,
    ContinuousProgramme,
    InfusionPump,
    PcaProgramme,
    PowerOn,
    Program,
    PumpState,
    Rejection,
    SetCareArea,
)
from pumpguard.interop import (
    AckCode,
    AppError,
    CodedValue,
    Hl7ErrorCode,
    InfusionOrder,
    InteropEvent,
    OrderContext,
    OrderControl,
    OrderVerdict,
    PcaParameters,
    PumpStatus,
    Quantity,
    app_error_for_pump,
    check_order,
    parse_piv,
)

LIBRARY = library()
PUMPS = {
    "PUMP-0001": PumpStatus("PUMP-0001", PumpKind.LVP, care_area="ICU"),
    "PCA-0001": PumpStatus("PCA-0001", PumpKind.PCA, care_area="Med-Surg"),
    "SYR-0001": PumpStatus("SYR-0001", PumpKind.SYRINGE, care_area="Med-Surg"),
}


def _context(**changes: object) -> OrderContext:
    base = OrderContext(pumps=PUMPS, library=LIBRARY, now=NOW)
    return replace(base, **changes)  # type: ignore[arg-type]


def _pump(pump_id: str = "PUMP-0001", **changes: object) -> OrderContext:
    pumps = dict(PUMPS)
    pumps[pump_id] = replace(pumps[pump_id], **changes)  # type: ignore[arg-type]
    return _context(pumps=pumps)


def _check(o: InfusionOrder, context: OrderContext | None = None) -> OrderVerdict:
    return check_order(o, context or _context())


def _refused(verdict: OrderVerdict, error: AppError, ack: AckCode) -> None:
    assert verdict.finding is not None, "expected a refusal"
    assert verdict.finding.app_error is error, verdict.finding.message
    assert verdict.code is ack
    assert verdict.programme is None
    (detail,) = verdict.details()
    assert detail.app_error is error


def _rate(value: str, unit: str = "units/kg/h") -> Quantity:
    return Quantity(Decimal(value), CodedValue(unit, "", "UCUM"))


def test_a_good_order_is_accepted_with_the_programme_to_prefill() -> None:
    verdict = _check(parse_piv(piv()), _context(now=NOW))
    assert verdict.accepted and verdict.code is AckCode.AA
    assert verdict.details() == ()
    assert verdict.programme == ContinuousProgramme(
        drug="HEP-25K-250",
        dose=Decimal(18),
        dose_unit="units/kg/h",
        vtbi_ml=Decimal(250),
        weight_kg=Decimal(80),
        concentration=verdict.programme.concentration if verdict.programme else None,
        care_area="ICU",
        order_id="ORD-1001",
        patient_id="MRN-4711",
    )
    assert not verdict.needs_override


def test_soft_limit_is_accepted_but_needs_an_override_at_the_pump() -> None:
    verdict = _check(order(rate=_rate("30")))
    assert verdict.accepted and verdict.needs_override


def test_hard_limit_is_refused_with_9024_and_an_event() -> None:
    verdict = _check(order(rate=_rate("45")))
    _refused(verdict, AppError.HARD_LIMIT, AckCode.AE)
    assert InteropEvent.HARD_LIMIT in verdict.events
    assert verdict.finding is not None and "hard max" in verdict.finding.message


def test_a_negative_dose_is_a_hard_low_refusal() -> None:
    _refused(_check(order(rate=_rate("-5"))), AppError.HARD_LIMIT, AckCode.AE)


@pytest.mark.parametrize(
    "drug",
    [
        CodedValue("HEP-25K-250", "", "LOCAL"),
        CodedValue("hep-25k-250", "", "LOCAL"),
        CodedValue("99999", "HEPARIN", "LOCAL"),
        CodedValue("heparin", "", ""),
    ],
)
def test_rxg4_matches_the_code_else_the_name_in_any_case(drug: CodedValue) -> None:
    assert _check(order(drug=drug)).accepted


def test_unknown_drug_is_9010() -> None:
    verdict = _check(order(drug=CodedValue("UNOB-1", "Unobtainium", "LOCAL")))
    _refused(verdict, AppError.NO_LIBRARY_MATCH, AckCode.AE)


def test_drug_not_in_the_pumps_care_area_is_9010() -> None:
    verdict = _check(order(drug=CodedValue("FU-5000-100", "Fluorouracil", "LOCAL")))
    _refused(verdict, AppError.NO_LIBRARY_MATCH, AckCode.AE)


@pytest.mark.parametrize(
    "rate",
    [
        Quantity(Decimal(14), ML_H),
        _rate("18", "mg/kg/h"),
        _rate("18", "U/kg/h"),
        _rate("18", "furlongs"),
    ],
)
def test_units_that_do_not_fit_the_library_are_9009(rate: Quantity) -> None:
    _refused(_check(order(rate=rate)), AppError.UNITS_MISMATCH, AckCode.AE)


def test_weight_based_dose_without_weight_is_9011() -> None:
    _refused(_check(order(weight=None)), AppError.WEIGHT_MISMATCH, AckCode.AE)


def test_weight_outside_the_entry_range_is_9005() -> None:
    verdict = _check(order(weight=Quantity(Decimal(300), KG)))
    _refused(verdict, AppError.OUT_OF_RANGE, AckCode.AE)


def test_weight_differing_from_the_known_patient_weight_is_9011() -> None:
    context = _pump(patient_weight_kg=Decimal(72))
    _refused(_check(order(), context), AppError.WEIGHT_MISMATCH, AckCode.AE)
    assert _check(order(), _pump(patient_weight_kg=Decimal("80.05"))).accepted


def test_weight_in_pounds_is_invalid_units_9008() -> None:
    verdict = _check(order(weight=Quantity(Decimal(176), CodedValue("[lb_av]", "", "UCUM"))))
    _refused(verdict, AppError.INVALID_UNITS, AckCode.AE)


def test_unknown_pump_is_9001() -> None:
    _refused(_check(order(pump_id="PUMP-9999")), AppError.UNKNOWN_INFUSER, AckCode.AE)


def test_offline_pump_is_9007_rejected() -> None:
    _refused(_check(order(), _pump(online=False)), AppError.OFFLINE, AckCode.AR)


def test_powered_off_pump_is_9006_rejected() -> None:
    _refused(_check(order(), _pump(powered=False)), AppError.POWERED_OFF, AckCode.AR)


def test_new_bag_on_an_infusing_pump_is_9002_but_a_change_is_allowed() -> None:
    infusing = _pump(infusing=True)
    _refused(_check(order(), infusing), AppError.CURRENTLY_INFUSING, AckCode.AR)
    assert _check(order(control=OrderControl.CHANGE), infusing).accepted


def test_change_order_for_an_idle_pump_is_9017() -> None:
    verdict = _check(order(control=OrderControl.CHANGE))
    _refused(verdict, AppError.CANNOT_ACCEPT, AckCode.AR)


def test_busy_pump_is_9017() -> None:
    _refused(_check(order(), _pump(accepting=False)), AppError.CANNOT_ACCEPT, AckCode.AR)


def test_order_for_another_patients_pump_is_9012_and_an_event() -> None:
    verdict = _check(order(), _pump(patient_id="MRN-0815"))
    _refused(verdict, AppError.PATIENT_MISMATCH, AckCode.AE)
    assert verdict.events == (InteropEvent.PATIENT_MISMATCH,)
    assert _check(order(), _pump(patient_id="MRN-4711")).accepted


def test_care_area_mismatch_is_9021() -> None:
    _refused(_check(order(care_area="Oncology")), AppError.CARE_AREA_MISMATCH, AckCode.AE)
    _refused(_check(order(), _pump(care_area=None)), AppError.CARE_AREA_MISMATCH, AckCode.AE)
    assert _check(order(care_area="icu")).accepted


def test_stale_and_future_orders_are_9022() -> None:
    old = _check(order(), _context(now=NOW + timedelta(minutes=16)))
    _refused(old, AppError.STALE_ORDER, AckCode.AE)
    assert old.events == (InteropEvent.STALE,)
    future = _check(order(), _context(now=NOW - timedelta(minutes=3)))
    _refused(future, AppError.STALE_ORDER, AckCode.AE)
    assert _check(order(), _context(now=NOW + timedelta(minutes=14))).accepted
    archive = _context(now=NOW + timedelta(days=400), max_order_age=None)
    assert _check(order(), archive).accepted


def test_replayed_message_or_new_order_number_is_9022_duplicate_key() -> None:
    by_id = _check(order(), _context(seen_control_ids=frozenset({"EHR-0001"})))
    _refused(by_id, AppError.STALE_ORDER, AckCode.AE)
    assert by_id.finding is not None and by_id.finding.hl7_code is Hl7ErrorCode.DUPLICATE_KEY
    assert by_id.events == (InteropEvent.REPLAYED,)
    by_placer = _check(order(), _context(seen_placer_orders=frozenset({"ORD-1001"})))
    _refused(by_placer, AppError.STALE_ORDER, AckCode.AE)
    change = order(control=OrderControl.CHANGE)
    again = _context(seen_placer_orders=frozenset({"ORD-1001"}))
    assert _check(change, replace(again, pumps=_pump(infusing=True).pumps)).accepted


def test_missing_rate_or_volume_is_9003_and_wrong_volume_units_9008() -> None:
    _refused(_check(order(rate=None)), AppError.MISSING_PARAMETER, AckCode.AE)
    _refused(_check(order(volume=None)), AppError.MISSING_PARAMETER, AckCode.AE)
    liters = Quantity(Decimal("0.25"), CodedValue("L", "", "UCUM"))
    _refused(_check(order(volume=liters)), AppError.INVALID_UNITS, AckCode.AE)


def test_rate_or_volume_beyond_the_pump_is_9014() -> None:
    saline = CodedValue("NS-MAINT", "Sodium Chloride 0.9%", "LOCAL")
    fast = order(
        pump_id="SYR-0001",
        drug=saline,
        rate=Quantity(Decimal(300), ML_H),
        weight=None,
        volume=Quantity(Decimal(50), ML),
    )
    _refused(_check(fast), AppError.EXCEEDS_MAXIMUM, AckCode.AE)
    big = replace(fast, rate=Quantity(Decimal(20), ML_H), volume=Quantity(Decimal(100), ML))
    _refused(_check(big), AppError.EXCEEDS_MAXIMUM, AckCode.AE)
    assert _check(replace(big, volume=Quantity(Decimal(50), ML))).accepted


def test_no_installed_library_is_9010() -> None:
    _refused(_check(order(), _context(library=None)), AppError.NO_LIBRARY_MATCH, AckCode.AE)


def test_pca_order_is_accepted_with_a_pca_programme() -> None:
    verdict = _check(pca_order())
    assert verdict.accepted, verdict.finding
    assert isinstance(verdict.programme, PcaProgramme)
    assert verdict.programme.lockout_min == Decimal(10)
    assert verdict.programme.hourly_limit == Decimal(10)
    assert verdict.programme.vtbi_ml == Decimal(30)


def test_pca_without_lockout_is_9025_and_without_dose_limit_9026() -> None:
    no_lockout = pca_order(pca=PcaParameters(dose_limit=Quantity(Decimal(10), MG)))
    _refused(_check(no_lockout), AppError.LOCKOUT_MISSING, AckCode.AE)
    no_limit = pca_order(pca=PcaParameters(lockout=Quantity(Decimal(10), MIN)))
    _refused(_check(no_limit), AppError.DOSE_LIMIT_MISSING, AckCode.AE)


def test_pca_limits_come_from_the_library() -> None:
    short = pca_order(
        pca=PcaParameters(dose_limit=Quantity(Decimal(10), MG), lockout=Quantity(Decimal(3), MIN))
    )
    _refused(_check(short), AppError.HARD_LIMIT, AckCode.AE)
    big_dose = pca_order(volume=Quantity(Decimal(5), MG))
    _refused(_check(big_dose), AppError.HARD_LIMIT, AckCode.AE)
    hourly = pca_order(
        pca=PcaParameters(dose_limit=Quantity(Decimal(20), MG), lockout=Quantity(Decimal(10), MIN))
    )
    _refused(_check(hourly), AppError.HARD_LIMIT, AckCode.AE)


def test_pump_refusals_map_to_err5_codes() -> None:
    assert app_error_for_pump(CommandResult(True, "ok")) is None
    infusing = CommandResult(False, "busy", Rejection.INFUSING)
    assert app_error_for_pump(infusing) is AppError.CURRENTLY_INFUSING
    at_pump = CommandResult(False, "no", Rejection.NOT_AT_PUMP)
    assert app_error_for_pump(at_pump) is AppError.CANNOT_ACCEPT


def test_an_accepted_order_only_prefills_the_real_pump_until_confirmed_at_it() -> None:
    clock = VirtualClock(1_000)
    pump = InfusionPump(PumpKind.LVP, clock, serial="PUMP-0001", library=LIBRARY)
    assert pump.handle(PowerOn()).accepted
    assert pump.handle(SetCareArea("ICU")).accepted
    verdict = _check(order())
    assert verdict.programme is not None
    assert pump.handle(Program(verdict.programme, CommandSource.AUTO_PROGRAMME)).accepted
    assert pump.state is PumpState.PROGRAMMING
    assert pump.delivering_rate_ml_h == 0
    assert pump.handle(Confirm(source=CommandSource.AUTO_PROGRAMME)).rejection is (
        Rejection.NOT_AT_PUMP
    )
    assert pump.handle(Confirm()).accepted
    assert pump.delivering_rate_ml_h == Decimal("14.4")
    assert any("ORD-1001" in entry.detail for entry in pump.log)


def test_the_pump_agrees_with_a_hard_limit_refusal() -> None:
    clock = VirtualClock(1_000)
    pump = InfusionPump(PumpKind.LVP, clock, library=LIBRARY)
    pump.handle(PowerOn())
    pump.handle(SetCareArea("ICU"))
    refused = _check(order(rate=_rate("45")))
    assert refused.finding is not None
    programme = ContinuousProgramme(
        "HEP-25K-250", Decimal(45), "units/kg/h", Decimal(250), weight_kg=Decimal(80)
    )
    result = pump.handle(Program(programme, CommandSource.AUTO_PROGRAMME))
    assert result.err_code == int(refused.finding.app_error)
