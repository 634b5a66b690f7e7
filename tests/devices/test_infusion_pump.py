"""Scenario tests of the hospital pump firmware: one safety behaviour each."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pumpguard.clinical import PumpKind, Verdict
from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE, VirtualClock
from pumpguard.devices.infusion import (
    AcknowledgeAlarm,
    AlarmKind,
    Cancel,
    Channel,
    Clear,
    CommandSource,
    Confirm,
    ContinuousProgramme,
    EventKind,
    InfusionPump,
    InstallLibrary,
    Pause,
    PcaDemand,
    PcaProgramme,
    PowerOff,
    PowerOn,
    Program,
    PumpState,
    Rejection,
    Resume,
    SensorChange,
    SensorKind,
    SetCareArea,
    SetMains,
)

from .conftest import KG80, PumpFactory, make_library


def heparin(dose: str = "18", vtbi: str = "250", **kw: object) -> ContinuousProgramme:
    return ContinuousProgramme("Heparin", Decimal(dose), "units/kg/h", Decimal(vtbi), KG80, **kw)  # type: ignore[arg-type]


def start(pump: InfusionPump, programme: ContinuousProgramme, reason: str | None = None) -> None:
    assert pump.handle(Program(programme)).accepted
    result = pump.handle(Confirm(override_reason=reason))
    assert result.accepted, result.message


def morphine(**kw: object) -> PcaProgramme:
    values: dict[str, object] = {
        "drug": "Morphine",
        "demand_dose": Decimal(1),
        "lockout_min": Decimal(10),
        "hourly_limit": Decimal(6),
        "vtbi_ml": Decimal(30),
    }
    values.update(kw)
    return PcaProgramme(**values)  # type: ignore[arg-type]


# -- programming, confirmation and DERS -------------------------------------------------


def test_auto_programme_only_prefills_until_confirmed_at_pump(make_pump: PumpFactory) -> None:
    pump = make_pump()
    result = pump.handle(Program(heparin(), CommandSource.AUTO_PROGRAMME))
    assert result.accepted
    assert pump.state is PumpState.PROGRAMMING
    assert pump.delivering_rate_ml_h == 0
    for source in (CommandSource.AUTO_PROGRAMME, CommandSource.REMOTE, CommandSource.PATIENT):
        refused = pump.handle(Confirm(source=source))
        assert refused.rejection is Rejection.NOT_AT_PUMP
    assert pump.delivering_rate_ml_h == 0
    assert pump.handle(Confirm()).accepted
    assert pump.delivering_rate_ml_h == Decimal("14.4")


def test_hard_limit_blocks_programme_from_any_source(make_pump: PumpFactory) -> None:
    pump = make_pump()
    for source in (CommandSource.KEYPAD, CommandSource.AUTO_PROGRAMME, CommandSource.REMOTE):
        result = pump.handle(Program(heparin("100"), source))
        assert not result.accepted
        assert result.rejection is Rejection.DERS_BLOCKED
        assert result.ders is not None and result.ders.verdict is Verdict.HARD_HIGH
        assert result.err_code == 9024
    assert pump.state is PumpState.IDLE
    assert pump.handle(Confirm(override_reason="I insist")).rejection is Rejection.NOTHING_PENDING


def test_hard_low_blocks_programme(make_pump: PumpFactory) -> None:
    result = make_pump().handle(Program(heparin("1")))
    assert result.ders is not None and result.ders.verdict is Verdict.HARD_LOW


def test_soft_limit_needs_a_logged_override_reason(make_pump: PumpFactory) -> None:
    pump = make_pump()
    assert pump.handle(Program(heparin("30"))).accepted
    assert pump.pending_verdict is Verdict.SOFT_HIGH
    refused = pump.handle(Confirm())
    assert refused.rejection is Rejection.OVERRIDE_REASON_REQUIRED
    assert (
        pump.handle(Confirm(override_reason="   ")).rejection is Rejection.OVERRIDE_REASON_REQUIRED
    )
    assert pump.handle(Confirm(override_reason="aPTT low per nomogram")).accepted
    overrides = [e for e in pump.log if e.kind is EventKind.OVERRIDE]
    assert len(overrides) == 1
    assert "aPTT low per nomogram" in overrides[0].detail
    assert overrides[0].source is CommandSource.KEYPAD


def test_weight_required_and_out_of_range(make_pump: PumpFactory) -> None:
    pump = make_pump()
    no_weight = ContinuousProgramme("Heparin", Decimal(18), "units/kg/h", Decimal(250))
    result = pump.handle(Program(no_weight))
    assert result.ders is not None and result.ders.verdict is Verdict.WEIGHT_REQUIRED
    heavy = ContinuousProgramme("Heparin", Decimal(18), "units/kg/h", Decimal(250), Decimal(300))
    result = pump.handle(Program(heavy))
    assert result.ders is not None and result.ders.verdict is Verdict.WEIGHT_OUT_OF_RANGE
    assert result.err_code == 9005


def test_care_area_mismatch_and_unknown_drug(make_pump: PumpFactory) -> None:
    pump = make_pump()
    wrong_area = heparin(care_area="Med-Surg")
    result = pump.handle(Program(wrong_area, CommandSource.AUTO_PROGRAMME))
    assert result.err_code == 9021
    unknown = ContinuousProgramme("Unobtainium", Decimal(1), "mg/h", Decimal(10))
    assert pump.handle(Program(unknown)).err_code == 9010
    wrong_units = ContinuousProgramme("Heparin", Decimal(1400), "units/h", Decimal(10))
    assert pump.handle(Program(wrong_units)).err_code == 9009


def test_rounding_never_delivers_more_than_ordered(make_pump: PumpFactory) -> None:
    pump = make_pump()
    # 17.777 units/kg/h x 80 kg / 100 units/mL = 14.2216 mL/h -> 14.22 mL/h (rounded down)
    start(pump, heparin("17.777"))
    assert pump.delivering_rate_ml_h == Decimal("14.22")
    shown = pump.display()
    assert shown.dose is not None and shown.dose <= Decimal("17.777")


def test_rounding_below_hard_min_is_reported(make_pump: PumpFactory) -> None:
    """Hard min 2 units/kg/h: at 33.3 kg, 2.0001 is 0.66603 mL/h -> 0.66 mL/h = 1.98 units/kg/h."""
    pump = make_pump()
    odd = ContinuousProgramme(
        "Heparin", Decimal("2.0001"), "units/kg/h", Decimal(10), Decimal("33.3")
    )
    result = pump.handle(Program(odd))
    assert result.ders is not None
    assert result.ders.verdict is Verdict.HARD_LOW


def test_pump_rate_range_and_max_duration(make_pump: PumpFactory) -> None:
    pump = make_pump(PumpKind.SYRINGE)
    fast = ContinuousProgramme("Saline", Decimal(300), "mL/h", Decimal(50))
    result = pump.handle(Program(fast))
    assert result.rejection is Rejection.DERS_BLOCKED
    assert "200" in result.message
    lvp = make_pump()
    slow = ContinuousProgramme("Vancomycin", Decimal(100), "mg/h", Decimal(200))
    result = lvp.handle(Program(slow))  # 20 mL/h: 200 mL takes 600 min > 240
    assert result.ders is not None and result.ders.verdict is Verdict.HARD_HIGH
    assert "duration" in result.message


def test_entry_not_allowed_on_this_pump_kind(make_pump: PumpFactory) -> None:
    pump = make_pump(PumpKind.SYRINGE)
    vanc = ContinuousProgramme("Vancomycin", Decimal(500), "mg/h", Decimal(50))
    result = pump.handle(Program(vanc))
    assert result.ders is not None and result.ders.verdict is Verdict.NO_MATCH


def test_vtbi_hard_limit(make_pump: PumpFactory) -> None:
    result = make_pump().handle(Program(heparin(vtbi="600")))
    assert result.ders is not None and result.ders.verdict is Verdict.HARD_HIGH


def test_invalid_numbers_are_refused_by_name(make_pump: PumpFactory) -> None:
    pump = make_pump()
    assert pump.handle(Program(heparin(vtbi="0"))).rejection is Rejection.INVALID
    assert pump.handle(Program(heparin(dose="0"))).rejection is Rejection.INVALID
    negative = ContinuousProgramme("Heparin", Decimal(18), "units/kg/h", Decimal(10), Decimal(-5))
    assert pump.handle(Program(negative)).rejection is Rejection.INVALID
    bad_unit = ContinuousProgramme("Heparin", Decimal(18), "U/kg/h", Decimal(10), KG80)
    result = pump.handle(Program(bad_unit))
    assert result.err_code == 9009
    assert "ISMP" in result.message


def test_unconfirmed_programme_alarms_after_two_minutes(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump()
    pump.handle(Program(heparin()))
    clock.advance(2 * MS_PER_MINUTE - 1)
    pump.tick()
    assert AlarmKind.UNCONFIRMED_PROGRAMME not in pump.display().alarms
    clock.advance(1)
    pump.tick()
    assert AlarmKind.UNCONFIRMED_PROGRAMME in pump.display().alarms
    assert pump.delivering_rate_ml_h == 0
    assert pump.handle(Cancel()).accepted
    assert AlarmKind.UNCONFIRMED_PROGRAMME not in pump.display().alarms


# -- delivery engine ---------------------------------------------------------------------


def test_vtbi_complete_switches_to_kvo_at_the_exact_time(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump()
    start(pump, ContinuousProgramme("Saline", Decimal(100), "mL/h", Decimal(50)))
    clock.advance(30 * MS_PER_MINUTE)
    assert pump.display().volume_infused_ml == Decimal(50)
    assert pump.state is PumpState.KVO
    assert pump.delivering_rate_ml_h == Decimal(1)
    complete = [e for e in pump.log if e.kind is EventKind.DELIVERY_COMPLETE]
    assert [e.time_ms for e in complete] == [clock.now_ms()]
    clock.advance(MS_PER_HOUR)
    assert pump.display().volume_infused_ml == Decimal(51)
    assert AlarmKind.VTBI_COMPLETE in pump.display().alarms


def test_kvo_never_exceeds_the_programmed_rate(make_pump: PumpFactory, clock: VirtualClock) -> None:
    pump = make_pump()
    start(pump, ContinuousProgramme("Saline", Decimal("0.5"), "mL/h", Decimal("0.5")))
    clock.advance(2 * MS_PER_HOUR)
    assert pump.state is PumpState.KVO
    assert pump.delivering_rate_ml_h == Decimal("0.5")


def test_secondary_piggyback_returns_to_primary(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump()
    start(pump, ContinuousProgramme("Saline", Decimal(50), "mL/h", Decimal(500)))
    secondary = ContinuousProgramme(
        "Vancomycin", Decimal(500), "mg/h", Decimal(100), channel=Channel.SECONDARY
    )
    start(pump, secondary)
    assert pump.delivering_rate_ml_h == Decimal(100)
    assert pump.display().channel is Channel.SECONDARY
    clock.advance(MS_PER_HOUR)
    assert pump.display().channel is Channel.PRIMARY
    assert pump.delivering_rate_ml_h == Decimal(50)
    assert AlarmKind.SECONDARY_COMPLETE in pump.display().alarms
    clock.advance(MS_PER_HOUR)
    assert pump.volume_infused_ml == Decimal(150)


def test_only_an_lvp_has_a_secondary(make_pump: PumpFactory) -> None:
    pump = make_pump(PumpKind.SYRINGE)
    start(pump, ContinuousProgramme("Saline", Decimal(5), "mL/h", Decimal(50)))
    second = ContinuousProgramme(
        "Saline", Decimal(5), "mL/h", Decimal(5), channel=Channel.SECONDARY
    )
    assert pump.handle(Program(second)).rejection is Rejection.UNSUPPORTED


def test_titration_keeps_running_rate_until_confirmed(make_pump: PumpFactory) -> None:
    pump = make_pump()
    start(pump, heparin("18"))
    assert pump.handle(Program(heparin("20"), CommandSource.AUTO_PROGRAMME)).accepted
    assert pump.delivering_rate_ml_h == Decimal("14.4")
    assert pump.handle(Confirm()).accepted
    assert pump.delivering_rate_ml_h == Decimal(16)
    changes = [e for e in pump.log if e.kind is EventKind.DELIVERY_CHANGE]
    assert changes[-1].source is CommandSource.AUTO_PROGRAMME
    assert changes[-1].before is not None and changes[-1].before.rate_ml_h == Decimal("14.4")
    assert changes[-1].after is not None and changes[-1].after.rate_ml_h == Decimal(16)


def test_new_drug_on_a_running_channel_is_refused(make_pump: PumpFactory) -> None:
    pump = make_pump()
    start(pump, heparin())
    saline = ContinuousProgramme("Saline", Decimal(50), "mL/h", Decimal(100))
    result = pump.handle(Program(saline, CommandSource.AUTO_PROGRAMME))
    assert result.rejection is Rejection.INFUSING
    assert result.err_code == 9002


def test_clear_then_new_bag(make_pump: PumpFactory) -> None:
    pump = make_pump()
    start(pump, heparin())
    assert pump.handle(Clear()).rejection is Rejection.WRONG_STATE
    assert pump.handle(Pause()).accepted
    assert pump.handle(Clear(CommandSource.REMOTE)).rejection is Rejection.NOT_AT_PUMP
    assert pump.handle(Clear()).accepted
    assert pump.state is PumpState.IDLE
    start(pump, ContinuousProgramme("Saline", Decimal(50), "mL/h", Decimal(100)))
    assert pump.delivering_rate_ml_h == Decimal(50)


# -- stopping, alarms and power -----------------------------------------------------------


@pytest.mark.parametrize("sensor", list(SensorKind))
def test_sensor_alarm_stops_and_needs_clinician_restart(
    make_pump: PumpFactory, clock: VirtualClock, sensor: SensorKind
) -> None:
    pump = make_pump()
    start(pump, heparin())
    clock.advance(MS_PER_MINUTE)
    assert pump.handle(SensorChange(sensor, True)).accepted
    assert pump.state is PumpState.PAUSED
    assert pump.delivering_rate_ml_h == 0
    infused = pump.volume_infused_ml
    assert pump.handle(Resume()).rejection is Rejection.ALARM_ACTIVE
    pump.handle(SensorChange(sensor, False))
    clock.advance(MS_PER_MINUTE)
    assert pump.volume_infused_ml == infused
    assert pump.state is PumpState.PAUSED
    assert pump.handle(Resume()).rejection is Rejection.ALARM_ACTIVE
    assert pump.handle(AcknowledgeAlarm()).accepted
    assert pump.handle(Resume(CommandSource.REMOTE)).rejection is Rejection.NOT_AT_PUMP
    assert pump.handle(Resume()).accepted
    assert pump.delivering_rate_ml_h == Decimal("14.4")


def test_alarm_priorities_and_codes(make_pump: PumpFactory) -> None:
    pump = make_pump()
    start(pump, heparin())
    pump.handle(SensorChange(SensorKind.AIR_IN_LINE, True))
    alarm_entries = [e for e in pump.log if e.kind is EventKind.ALARM_ON]
    assert alarm_entries[-1].mdc_code == 197200
    assert AlarmKind.OCCLUSION.mdc_code == 196940
    assert pump.alarms[0].kind.priority.name == "HIGH"


def test_battery_low_then_depleted_stops_safely(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump(mains=False)
    start(pump, ContinuousProgramme("Saline", Decimal(10), "mL/h", Decimal(500)))
    # 3000 mAh at 150 mA = 20 h; low at 30 min left (75 mAh)
    clock.advance(19 * MS_PER_HOUR + 29 * MS_PER_MINUTE)
    assert AlarmKind.BATTERY_LOW not in pump.display().alarms
    clock.advance(2 * MS_PER_MINUTE)
    assert AlarmKind.BATTERY_LOW in pump.display().alarms
    clock.advance(MS_PER_HOUR)
    shown = pump.display()
    assert AlarmKind.BATTERY_DEPLETED in shown.alarms
    assert shown.state is PumpState.PAUSED
    assert pump.volume_infused_ml == Decimal(200)
    assert pump.handle(Resume()).rejection is Rejection.ALARM_ACTIVE
    pump.handle(SetMains(True))
    pump.handle(AcknowledgeAlarm())
    assert pump.handle(Resume()).accepted


def test_self_test_failure_blocks_everything(library: object, clock: VirtualClock) -> None:
    pump = InfusionPump(PumpKind.LVP, clock, library=make_library(), self_test_faults=("motor",))
    result = pump.handle(PowerOn())
    assert result.rejection is Rejection.SELF_TEST_FAILED
    assert pump.state is PumpState.FAILED
    assert pump.handle(SetCareArea("ICU")).rejection is Rejection.SELF_TEST_FAILED
    assert AlarmKind.SELF_TEST_FAILED in pump.display().alarms


def test_power_off_refused_while_infusing(make_pump: PumpFactory) -> None:
    pump = make_pump()
    start(pump, heparin())
    assert pump.handle(PowerOff()).rejection is Rejection.INFUSING
    assert pump.handle(Pause()).accepted
    assert pump.handle(PowerOff()).accepted
    assert pump.state is PumpState.OFF
    assert pump.handle(Program(heparin())).rejection is Rejection.POWERED_OFF


def test_watchdog_stops_a_corrupted_rate(make_pump: PumpFactory, clock: VirtualClock) -> None:
    """Fault injection: memory corruption raises the running rate past its hard-limit rate."""
    pump = make_pump()
    start(pump, heparin())
    pump._primary.rate_ml_h = Decimal(300)  # type: ignore[union-attr]
    clock.advance(MS_PER_HOUR)
    assert pump.state is PumpState.FAILED
    assert pump.volume_infused_ml == 0
    stop = [e for e in pump.log if e.kind is EventKind.DELIVERY_STOP][-1]
    assert "watchdog" in stop.detail


# -- drug library --------------------------------------------------------------------------


def test_library_installed_during_a_programme_applies_to_new_programmes_only(
    make_pump: PumpFactory,
) -> None:
    """Replaces the old rule (install refused during a programme): the running programme keeps
    the library it was checked against; the new one is active for what starts afterwards."""
    pump = make_pump()
    start(pump, heparin())
    rate = pump.delivering_rate_ml_h
    assert pump.handle(InstallLibrary(make_library(version=8))).accepted
    assert pump.delivering_rate_ml_h == rate
    assert pump.display().library_version == 8
    (running,) = pump.running_programmes()
    assert running.library_version == 7
    pump.handle(Pause())
    assert pump.handle(InstallLibrary(make_library(version=9))).accepted
    pump.handle(Clear())
    start(pump, heparin())
    (running,) = pump.running_programmes()
    assert running.library_version == 9
    assert [e.kind for e in pump.log].count(EventKind.LIBRARY_INSTALLED) == 2


def test_no_library_no_programme(clock: VirtualClock) -> None:
    pump = InfusionPump(PumpKind.LVP, clock)
    pump.handle(PowerOn())
    assert pump.handle(Program(heparin())).rejection is Rejection.NO_LIBRARY


# -- PCA -----------------------------------------------------------------------------------


def test_pca_lockout_and_hourly_limit(make_pump: PumpFactory, clock: VirtualClock) -> None:
    pump = make_pump(PumpKind.PCA, care_area="Med-Surg")
    start(pump, morphine(hourly_limit=Decimal(3)))
    assert pump.handle(PcaDemand()).accepted
    clock.advance(5 * MS_PER_MINUTE)
    assert pump.handle(PcaDemand()).rejection is Rejection.LOCKOUT
    clock.advance(5 * MS_PER_MINUTE)
    assert pump.handle(PcaDemand()).accepted
    clock.advance(10 * MS_PER_MINUTE)
    assert pump.handle(PcaDemand()).accepted
    clock.advance(10 * MS_PER_MINUTE)
    assert pump.handle(PcaDemand()).rejection is Rejection.HOURLY_LIMIT
    clock.advance(31 * MS_PER_MINUTE)
    assert pump.handle(PcaDemand()).accepted
    assert pump.volume_infused_ml == Decimal(3)
    denied = [e for e in pump.log if e.kind is EventKind.PCA_DENIED]
    assert len(denied) == 2


def test_pca_demand_only_from_the_patient_button(make_pump: PumpFactory) -> None:
    pump = make_pump(PumpKind.PCA, care_area="Med-Surg")
    start(pump, morphine())
    for source in (CommandSource.REMOTE, CommandSource.KEYPAD, CommandSource.AUTO_PROGRAMME):
        assert pump.handle(PcaDemand(source)).rejection is Rejection.NOT_AT_PUMP


def test_pca_dose_is_delivered_at_bolus_rate_then_stops(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump(PumpKind.PCA, care_area="Med-Surg")
    start(pump, morphine(demand_dose=Decimal(2)))
    pump.handle(PcaDemand())
    assert pump.delivering_rate_ml_h == Decimal(60)
    clock.advance(2 * MS_PER_MINUTE)  # 2 mL at 60 mL/h
    assert pump.delivering_rate_ml_h == 0
    assert pump.volume_infused_ml == Decimal(2)
    ends = [e for e in pump.log if e.kind is EventKind.DELIVERY_CHANGE]
    assert ends[-1].source is CommandSource.SYSTEM


def test_pca_programme_limits(make_pump: PumpFactory) -> None:
    pump = make_pump(PumpKind.PCA, care_area="Med-Surg")
    too_short = pump.handle(Program(morphine(lockout_min=Decimal(3))))
    assert too_short.ders is not None and too_short.ders.verdict is Verdict.HARD_LOW
    too_big = pump.handle(Program(morphine(demand_dose=Decimal(5))))
    assert too_big.ders is not None and too_big.ders.verdict is Verdict.HARD_HIGH
    basal_over = pump.handle(Program(morphine(basal_rate=Decimal(1), hourly_limit=Decimal("1.5"))))
    assert basal_over.ders is not None and basal_over.ders.verdict is Verdict.HARD_HIGH
    lvp = make_pump(PumpKind.LVP, care_area="Med-Surg")
    assert lvp.handle(Program(morphine())).rejection is Rejection.UNSUPPORTED


def test_pca_pause_abandons_the_running_dose(make_pump: PumpFactory, clock: VirtualClock) -> None:
    pump = make_pump(PumpKind.PCA, care_area="Med-Surg")
    start(pump, morphine(demand_dose=Decimal(2)))
    pump.handle(PcaDemand())
    clock.advance(MS_PER_MINUTE)
    assert pump.handle(Pause(CommandSource.PATIENT)).rejection is Rejection.NOT_AT_PUMP
    assert pump.handle(Pause()).accepted
    assert pump.handle(Resume()).accepted
    clock.advance(10 * MS_PER_MINUTE)
    assert pump.volume_infused_ml == Decimal(1)


# -- display and log -------------------------------------------------------------------------


def test_display_is_derived_from_the_engine(make_pump: PumpFactory, clock: VirtualClock) -> None:
    pump = make_pump()
    start(pump, heparin())
    shown = pump.display()
    assert shown.rate_ml_h == pump.delivering_rate_ml_h == Decimal("14.4")
    assert shown.dose == Decimal(18)
    assert shown.drug == "Heparin"
    pump.handle(SensorChange(SensorKind.OCCLUSION, True))
    shown = pump.display()
    assert shown.rate_ml_h == 0 and shown.dose == 0
    assert "Heparin: 0 mL/h  0 units/kg/h" in shown.lines()


def test_every_rejection_is_logged_with_its_source(make_pump: PumpFactory) -> None:
    pump = make_pump()
    pump.handle(Confirm(source=CommandSource.REMOTE))
    entry = list(pump.log)[-1]
    assert entry.kind is EventKind.COMMAND_REJECTED
    assert entry.source is CommandSource.REMOTE


def test_log_sequence_is_gapless_and_read_only(make_pump: PumpFactory) -> None:
    pump = make_pump()
    start(pump, heparin())
    entries = list(pump.log)
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    with pytest.raises(AttributeError):
        entries[0].detail = "edited"  # type: ignore[misc]
    assert pump.log.since(len(entries) - 1) == (entries[-1],)


def test_pca_hourly_limit_counts_the_basal_rate(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """Basal 1 mg/h + 1 mg doses, limit 4 mg/h: at most 3 demand doses in any hour."""
    pump = make_pump(PumpKind.PCA, care_area="Med-Surg")
    start(pump, morphine(basal_rate=Decimal(1), hourly_limit=Decimal(4)), reason="opioid tolerant")
    granted = 0
    for _ in range(6):
        granted += pump.handle(PcaDemand()).accepted
        clock.advance(10 * MS_PER_MINUTE)
    assert granted == 3
    assert pump.delivering_rate_ml_h == Decimal(1)


def test_vtbi_is_never_exceeded_when_completion_falls_between_milliseconds(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """14.22 mL/h needs 253,164.56 ms for 1 mL: the engine stops on the next whole ms and
    clips the volume there, so exactly 1 mL is delivered, not 1.0000017 mL."""
    pump = make_pump()
    start(pump, heparin("17.777", vtbi="1"))
    assert pump.delivering_rate_ml_h == Decimal("14.22")
    clock.advance(253_164)
    assert pump.state is PumpState.INFUSING
    assert pump.volume_infused_ml < 1
    clock.advance(1)
    assert pump.state is PumpState.KVO
    assert pump.volume_infused_ml == 1
