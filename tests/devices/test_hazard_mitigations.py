"""Tests for hazard mitigations of docs/safety/hazards.md that no other test verified.

Each test names the hazard row (H-nn) and the safety requirement (SR-nn) it verifies. The tests
at the end verify the fixes of findings F-1 to F-8 of the hazard analysis: behaviour found wrong
while the analysis was written, first recorded as expected failures, then fixed.
"""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from pumpguard.clinical import (
    AmountUnit,
    Concentration,
    DrugLibrary,
    PumpKind,
    Verdict,
    parse_library,
)
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

from .conftest import KG80, LIBRARY, PumpFactory, make_library

HEPARIN_100 = Concentration(Decimal(25000), AmountUnit.UNITS, Decimal(250))
"""The device library's only heparin bag: 100 units/mL."""
HEPARIN_200 = Concentration(Decimal(50000), AmountUnit.UNITS, Decimal(250))


def heparin(dose: str = "18", vtbi: str = "250", **kw: object) -> ContinuousProgramme:
    """18 units/kg/h at 80 kg from 100 units/mL is 14.4 mL/h."""
    return ContinuousProgramme("Heparin", Decimal(dose), "units/kg/h", Decimal(vtbi), KG80, **kw)  # type: ignore[arg-type]


def saline(rate: str, vtbi: str = "100", **kw: object) -> ContinuousProgramme:
    return ContinuousProgramme("Saline", Decimal(rate), "mL/h", Decimal(vtbi), **kw)  # type: ignore[arg-type]


def morphine(**kw: object) -> PcaProgramme:
    """Morphine 1 mg/mL: 1 mg demand doses, 10 min lockout, 6 mg/h limit, 30 mL reservoir."""
    values: dict[str, object] = {
        "drug": "Morphine",
        "demand_dose": Decimal(1),
        "lockout_min": Decimal(10),
        "hourly_limit": Decimal(6),
        "vtbi_ml": Decimal(30),
    }
    values.update(kw)
    return PcaProgramme(**values)  # type: ignore[arg-type]


def start(pump: InfusionPump, programme: ContinuousProgramme | PcaProgramme) -> None:
    assert pump.handle(Program(programme)).accepted
    result = pump.handle(Confirm(override_reason="per protocol"))
    assert result.accepted, result.message


def library_with(**icu: object) -> DrugLibrary:
    """The device test library with extra fields on the ICU care area."""
    data = copy.deepcopy(LIBRARY)
    data["care_areas"][0].update(icu)
    return parse_library(data)


class SteppingClock:
    """A wall clock that can be stepped backwards, as an RTC fault or a bad time sync can."""

    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


# -- drug library and DERS ------------------------------------------------------------------


def test_care_area_max_rate_is_a_hard_limit(clock: VirtualClock) -> None:
    """H-07 / SR-07: a care area's maximum rate (100 mL/h here) cannot be crossed."""
    pump = InfusionPump(PumpKind.LVP, clock, library=library_with(max_rate_ml_h=100))
    pump.handle(PowerOn())
    pump.handle(SetCareArea("ICU"))
    result = pump.handle(Program(saline("100.1")))
    assert result.rejection is Rejection.DERS_BLOCKED
    assert result.ders is not None and result.ders.verdict is Verdict.HARD_HIGH
    assert "rate 100.1 mL/h is above hard max 100 mL/h" in result.message
    assert pump.handle(Confirm(override_reason="urgent")).rejection is Rejection.NOTHING_PENDING
    assert pump.handle(Program(saline("100"))).accepted
    assert pump.handle(Confirm()).accepted
    assert pump.delivering_rate_ml_h == Decimal(100)


def test_order_for_a_concentration_not_in_the_library_is_refused(make_pump: PumpFactory) -> None:
    """H-10 / SR-09: an order for a 200 units/mL bag does not run on the 100 units/mL entry."""
    pump = make_pump()
    result = pump.handle(Program(heparin(concentration=HEPARIN_200), CommandSource.AUTO_PROGRAMME))
    assert result.rejection is Rejection.DERS_BLOCKED
    assert result.ders is not None and result.ders.verdict is Verdict.NO_MATCH
    assert result.err_code == 9010
    assert "at 50,000 units in 250 mL" in result.message
    assert pump.state is PumpState.IDLE
    assert pump.handle(Program(heparin(concentration=HEPARIN_100))).accepted


def test_care_area_is_chosen_at_the_pump_and_fixed_during_a_programme(
    make_pump: PumpFactory,
) -> None:
    """H-17 / SR-12: only the keypad picks the profile, and never under a programme."""
    pump = make_pump()
    remote = pump.handle(SetCareArea("Med-Surg", CommandSource.REMOTE))
    assert remote.rejection is Rejection.NOT_AT_PUMP
    assert pump.handle(SetCareArea("NICU")).rejection is Rejection.INVALID
    assert pump.care_area == "ICU"
    assert pump.handle(Program(heparin())).accepted
    assert pump.handle(SetCareArea("Med-Surg")).rejection is Rejection.INFUSING
    assert pump.handle(Confirm()).accepted
    assert pump.handle(SetCareArea("Med-Surg")).rejection is Rejection.INFUSING
    assert pump.handle(Pause()).accepted
    assert pump.handle(SetCareArea("Med-Surg")).rejection is Rejection.INFUSING
    assert pump.care_area == "ICU"
    assert [e.detail for e in pump.log if e.kind is EventKind.CARE_AREA] == ["ICU"]


def test_library_install_discards_the_pending_programme(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """H-43 / SR-19: a programme checked against the old library is never confirmed against
    the new one, and a care area the new library lacks is dropped."""
    pump = make_pump()
    assert pump.handle(Program(heparin(), CommandSource.AUTO_PROGRAMME)).accepted
    assert pump.handle(InstallLibrary(make_library(version=8))).accepted
    assert pump.state is PumpState.IDLE
    assert pump.handle(Confirm()).rejection is Rejection.NOTHING_PENDING
    assert pump.care_area == "ICU"
    without_icu = copy.deepcopy(LIBRARY)
    del without_icu["care_areas"][0]
    without_icu["version"] = 9
    assert pump.handle(InstallLibrary(parse_library(without_icu))).accepted
    assert pump.care_area is None
    assert pump.handle(Program(heparin())).rejection is Rejection.NO_CARE_AREA
    clock.advance(MS_PER_HOUR)
    assert pump.volume_infused_ml == 0


def test_syringe_vtbi_above_pump_capacity_is_refused(make_pump: PumpFactory) -> None:
    """H-38 / SR-26: a syringe driver holds at most 60 mL."""
    pump = make_pump(PumpKind.SYRINGE)
    result = pump.handle(Program(saline("5", vtbi="60.01")))
    assert result.rejection is Rejection.INVALID
    assert "outside 0-60 mL" in result.message
    assert pump.handle(Program(saline("5", vtbi="60"))).accepted


def test_secondary_needs_a_running_primary(make_pump: PumpFactory, clock: VirtualClock) -> None:
    """H-36 / SR-01: a secondary never runs on its own (it would have nothing to hand back to)
    nor after its primary finished, so it cannot become an open-ended infusion."""
    pump = make_pump()
    secondary = saline("100", vtbi="50", channel=Channel.SECONDARY)
    assert pump.handle(Program(secondary)).rejection is Rejection.WRONG_STATE
    start(pump, saline("60", vtbi="1"))
    clock.advance(MS_PER_MINUTE)
    assert pump.state is PumpState.KVO
    assert pump.handle(Program(secondary)).rejection is Rejection.WRONG_STATE
    assert pump.delivering_rate_ml_h == Decimal(1)


# -- alarms, sensors and power ---------------------------------------------------------------


def test_acknowledging_a_present_condition_does_not_allow_restart(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """H-24 / SR-14: acknowledging only silences an occlusion that is still there."""
    pump = make_pump()
    start(pump, heparin())
    pump.handle(SensorChange(SensorKind.OCCLUSION, True))
    assert pump.handle(AcknowledgeAlarm()).accepted
    (alarm,) = pump.alarms
    assert alarm.kind is AlarmKind.OCCLUSION and alarm.acknowledged
    assert pump.handle(Resume()).rejection is Rejection.ALARM_ACTIVE
    clock.advance(MS_PER_HOUR)
    assert pump.delivering_rate_ml_h == 0
    assert pump.volume_infused_ml == 0


def test_confirm_is_refused_while_a_stopping_alarm_is_active(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """H-25 / SR-14: a new programme cannot start into an open door or air in the line."""
    pump = make_pump()
    assert pump.handle(SensorChange(SensorKind.DOOR_OPEN, True)).accepted
    assert AlarmKind.DOOR_OPEN in pump.display().alarms
    assert pump.handle(Program(heparin())).accepted
    result = pump.handle(Confirm())
    assert result.rejection is Rejection.ALARM_ACTIVE
    assert "door-open" in result.message
    clock.advance(MS_PER_MINUTE)
    assert pump.delivering_rate_ml_h == 0
    pump.handle(SensorChange(SensorKind.DOOR_OPEN, False))
    assert pump.handle(AcknowledgeAlarm()).accepted
    assert pump.handle(Confirm()).accepted
    assert pump.delivering_rate_ml_h == Decimal("14.4")


def test_sensor_and_mains_reports_only_from_the_pump_itself(make_pump: PumpFactory) -> None:
    """H-47 / SR-18: a message from the network cannot clear an occlusion or fake mains."""
    pump = make_pump(mains=False)
    start(pump, heparin())
    pump.handle(SensorChange(SensorKind.OCCLUSION, True))
    for source in (CommandSource.REMOTE, CommandSource.AUTO_PROGRAMME, CommandSource.KEYPAD):
        spoof = pump.handle(SensorChange(SensorKind.OCCLUSION, False, source))
        assert spoof.rejection is Rejection.INVALID
        assert pump.handle(SetMains(True, source)).rejection is Rejection.INVALID
    assert not pump.battery.mains
    pump.handle(AcknowledgeAlarm())
    assert [a.kind for a in pump.alarms] == [AlarmKind.OCCLUSION]
    assert pump.handle(Resume()).rejection is Rejection.ALARM_ACTIVE


def test_remote_and_patient_sources_cannot_silence_restart_or_switch(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """H-42 / SR-18: only the keypad acknowledges, restarts, clears or switches the pump;
    neither the patient nor the pump's own system programmes it."""
    pump = make_pump()
    start(pump, heparin())
    pump.handle(SensorChange(SensorKind.AIR_IN_LINE, True))
    pump.handle(SensorChange(SensorKind.AIR_IN_LINE, False))
    for source in (CommandSource.REMOTE, CommandSource.AUTO_PROGRAMME, CommandSource.PATIENT):
        assert pump.handle(AcknowledgeAlarm(source)).rejection is Rejection.NOT_AT_PUMP
        assert pump.handle(Resume(source)).rejection is Rejection.NOT_AT_PUMP
        assert pump.handle(Clear(source)).rejection is Rejection.NOT_AT_PUMP
        assert pump.handle(PowerOff(source)).rejection is Rejection.NOT_AT_PUMP
    for source in (CommandSource.PATIENT, CommandSource.SYSTEM):
        assert pump.handle(Program(heparin("20"), source)).rejection is Rejection.NOT_AT_PUMP
    assert pump.handle(Cancel(CommandSource.PATIENT)).rejection is Rejection.NOT_AT_PUMP
    (alarm,) = pump.alarms
    assert alarm.kind is AlarmKind.AIR_IN_LINE and not alarm.acknowledged
    assert pump.state is PumpState.PAUSED
    off = InfusionPump(PumpKind.LVP, clock, library=make_library())
    assert off.handle(PowerOn(CommandSource.REMOTE)).rejection is Rejection.NOT_AT_PUMP
    assert off.state is PumpState.OFF


def test_mains_loss_is_logged_and_the_pump_runs_on_battery(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """H-28 / SR-15: unplugged, the infusion continues on battery; the change is logged and
    the battery alarm comes 30 min before the end (3000 mAh at 150 mA: 19 h 30 min)."""
    pump = make_pump()
    start(pump, saline("10", vtbi="500"))
    clock.advance(MS_PER_HOUR)
    assert pump.battery.fraction == 1
    assert pump.handle(SetMains(False)).accepted
    mains = [e for e in pump.log if e.kind is EventKind.MAINS]
    assert [(e.detail, e.source) for e in mains] == [("on battery", CommandSource.SYSTEM)]
    clock.advance(19 * MS_PER_HOUR + 30 * MS_PER_MINUTE - 1)
    assert AlarmKind.BATTERY_LOW not in pump.display().alarms
    assert pump.delivering_rate_ml_h == Decimal(10)
    clock.advance(1)
    assert AlarmKind.BATTERY_LOW in pump.display().alarms
    assert pump.state is PumpState.INFUSING
    assert pump.handle(SetMains(True)).accepted
    assert pump.handle(AcknowledgeAlarm()).accepted
    assert AlarmKind.BATTERY_LOW not in pump.display().alarms


# -- security: orders and their attribution ---------------------------------------------------


def test_confirmed_remote_order_is_attributed_in_the_log(make_pump: PumpFactory) -> None:
    """H-44 / SR-04: an order confirmed at the pump is logged as the remote order it was,
    with its order id, so a forged order can be traced after the event."""
    pump = make_pump()
    assert pump.handle(Program(heparin(order_id="ORD-42"), CommandSource.REMOTE)).accepted
    assert pump.handle(Confirm()).accepted
    (entry,) = [e for e in pump.log if e.kind is EventKind.DELIVERY_START]
    assert entry.source is CommandSource.REMOTE
    assert "(remote programme)" in entry.detail and "order ORD-42" in entry.detail
    assert entry.before is not None and entry.before.rate_ml_h == 0
    assert entry.after is not None and entry.after.rate_ml_h == Decimal("14.4")
    (programmed,) = [e for e in pump.log if e.kind is EventKind.PROGRAMMED]
    assert programmed.source is CommandSource.REMOTE


# -- PCA --------------------------------------------------------------------------------------


def test_pca_loading_dose_is_limited_and_counts_towards_the_hourly_limit(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """H-52 / SR-06: loading dose hard max 4 mg; a 4 mg loading dose uses 4 of the 6 mg hour."""
    pump = make_pump(PumpKind.PCA, care_area="Med-Surg")
    too_big = pump.handle(Program(morphine(loading_dose=Decimal(5))))
    assert too_big.ders is not None and too_big.ders.verdict is Verdict.HARD_HIGH
    assert "loading 5 mg is above hard max 4 mg" in too_big.message
    start(pump, morphine(loading_dose=Decimal(4)))
    assert pump.delivering_rate_ml_h == Decimal(60)
    assert pump.handle(PcaDemand()).rejection is Rejection.LOCKOUT
    answers = []
    for _ in range(3):
        clock.advance(10 * MS_PER_MINUTE)
        answers.append(pump.handle(PcaDemand()).rejection)
    assert answers == [None, None, Rejection.HOURLY_LIMIT]
    clock.advance(10 * MS_PER_MINUTE)
    assert pump.volume_infused_ml == Decimal(6)


def test_pca_reservoir_empty_stops_and_alarms(make_pump: PumpFactory, clock: VirtualClock) -> None:
    """H-55 / SR-14: 2 mL at 0.5 mL/h basal runs out after exactly 4 h, then stops."""
    pump = make_pump(PumpKind.PCA, care_area="Med-Surg")
    start(pump, morphine(basal_rate=Decimal("0.5"), vtbi_ml=Decimal(2)))
    clock.advance(2 * MS_PER_HOUR)
    assert pump.display().alarms == ()  # exactly one 1 mL dose left: still enough
    clock.advance(1)
    assert pump.display().alarms == (AlarmKind.RESERVOIR_LOW,)
    clock.advance(2 * MS_PER_HOUR - 2)
    assert pump.state is PumpState.INFUSING
    clock.advance(1)
    assert pump.display().state is PumpState.PAUSED
    assert pump.display().alarms == (AlarmKind.RESERVOIR_EMPTY, AlarmKind.RESERVOIR_LOW)
    assert pump.volume_infused_ml == Decimal(2)
    stop = [e for e in pump.log if e.kind is EventKind.DELIVERY_STOP][-1]
    assert stop.time_ms == clock.now_ms() and "reservoir-empty" in stop.detail
    assert pump.handle(AcknowledgeAlarm()).accepted
    assert pump.handle(Resume()).rejection is Rejection.ALARM_ACTIVE
    clock.advance(MS_PER_HOUR)
    assert pump.volume_infused_ml == Decimal(2)


def test_pca_demand_refused_when_reservoir_cannot_hold_a_dose(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """H-54 / SR-24: with 0.5 mL left, a 1 mL dose is refused (and logged), not half given."""
    pump = make_pump(PumpKind.PCA, care_area="Med-Surg")
    start(pump, morphine(vtbi_ml=Decimal("2.5")))
    for _ in range(2):
        assert pump.handle(PcaDemand()).accepted
        clock.advance(10 * MS_PER_MINUTE)
    assert pump.volume_infused_ml == Decimal(2)
    assert pump.handle(PcaDemand()).rejection is Rejection.RESERVOIR_EMPTY
    clock.advance(10 * MS_PER_MINUTE)
    assert pump.volume_infused_ml == Decimal(2)
    denied = [e for e in pump.log if e.kind is EventKind.PCA_DENIED]
    assert [e.detail for e in denied] == ["not enough left in the reservoir"]


# -- software: time ---------------------------------------------------------------------------


def test_clock_stepping_back_does_not_shorten_the_lockout(library: DrugLibrary) -> None:
    """H-32 / SR-25: the pump's own time never goes back, so a wall clock stepped back an hour
    neither repeats delivery nor restarts the 10 min lockout count from an earlier time."""
    t0 = 1_700_000_000_000
    clock = SteppingClock(t0)
    pump = InfusionPump(PumpKind.PCA, clock, library=library)
    pump.handle(PowerOn())
    pump.handle(SetCareArea("Med-Surg"))
    start(pump, morphine())
    assert pump.handle(PcaDemand()).accepted
    clock.now = t0 + 2 * MS_PER_MINUTE  # the 1 mL dose at 60 mL/h is complete
    assert pump.volume_infused_ml == Decimal(1)
    clock.now = t0 - MS_PER_HOUR
    assert pump.handle(PcaDemand()).rejection is Rejection.LOCKOUT
    assert pump.volume_infused_ml == Decimal(1)
    clock.now = t0 + 10 * MS_PER_MINUTE - 1
    assert pump.handle(PcaDemand()).rejection is Rejection.LOCKOUT
    clock.now = t0 + 10 * MS_PER_MINUTE
    assert pump.handle(PcaDemand()).accepted
    times = [e.time_ms for e in pump.log]
    assert times == sorted(times)


# -- findings F-1..F-8 of the hazard analysis, fixed in the firmware -------------------------------


def test_sensor_condition_present_at_power_on_blocks_delivery(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """Air in the line stops the pump; switching it off and on must not forget the air."""
    pump = make_pump()
    start(pump, heparin())
    pump.handle(SensorChange(SensorKind.AIR_IN_LINE, True))
    pump.handle(PowerOff())
    pump.handle(PowerOn())
    pump.handle(SetCareArea("ICU"))
    assert AlarmKind.AIR_IN_LINE in pump.display().alarms
    pump.handle(Program(heparin()))
    assert not pump.handle(Confirm()).accepted
    clock.advance(MS_PER_MINUTE)
    assert pump.volume_infused_ml == 0


def test_titration_cannot_switch_the_concentration(clock: VirtualClock) -> None:
    data = copy.deepcopy(LIBRARY)
    stronger = copy.deepcopy(data["care_areas"][0]["entries"][0])
    stronger["code"] = "HEP50K"
    stronger["concentration"] = {"amount": 50000, "unit": "units", "volume_ml": 250}
    data["care_areas"][0]["entries"].append(stronger)
    pump = InfusionPump(PumpKind.LVP, clock, library=parse_library(data))
    pump.handle(PowerOn())
    pump.handle(SetCareArea("ICU"))
    start(pump, heparin(concentration=HEPARIN_100))
    result = pump.handle(Program(heparin(concentration=HEPARIN_200)))
    assert not result.accepted


def test_nan_in_a_programme_is_refused(make_pump: PumpFactory) -> None:
    pump = make_pump()
    result = pump.handle(Program(heparin(dose="NaN"), CommandSource.AUTO_PROGRAMME))
    assert not result.accepted


def test_patient_cannot_install_a_library(make_pump: PumpFactory) -> None:
    pump = make_pump()
    result = pump.handle(InstallLibrary(make_library(version=8), CommandSource.PATIENT))
    assert not result.accepted
    assert pump.library is not None and pump.library.version == 7


def test_pca_reservoir_too_low_for_a_dose_alarms(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump(PumpKind.PCA, care_area="Med-Surg")
    start(pump, morphine(vtbi_ml=Decimal("1.5")))
    assert pump.handle(PcaDemand()).accepted
    clock.advance(10 * MS_PER_MINUTE)
    assert pump.handle(PcaDemand()).rejection is Rejection.RESERVOIR_EMPTY
    assert pump.display().alarms != ()


def test_titration_cannot_change_the_weight(make_pump: PumpFactory) -> None:
    """F-5 (H-73) / SR-22: 80 kg to 160 kg would double the rate of a weight-based dose."""
    pump = make_pump()
    start(pump, heparin())
    heavier = ContinuousProgramme("Heparin", Decimal(18), "units/kg/h", Decimal(250), Decimal(160))
    result = pump.handle(Program(heavier))
    assert result.rejection is Rejection.INFUSING
    assert "weight" in result.message
    assert pump.delivering_rate_ml_h == Decimal("14.4")


def test_another_source_cannot_replace_a_programme_keyed_in_at_the_pump(
    make_pump: PumpFactory,
) -> None:
    """F-2 (H-70) / SR-18: the nurse confirms what the nurse keyed in, not a swapped order."""
    pump = make_pump()
    assert pump.handle(Program(heparin("18"))).accepted
    for source in (CommandSource.REMOTE, CommandSource.AUTO_PROGRAMME):
        swapped = pump.handle(Program(heparin("24"), source))
        assert swapped.rejection is Rejection.WRONG_STATE
        assert pump.handle(Cancel(source)).rejection is Rejection.NOT_AT_PUMP
    assert pump.display().pending == (
        "Heparin 18 units/kg/h = 14.4 mL/h, VTBI 250 mL (ok, from keypad)"
    )
    assert pump.handle(Confirm()).accepted
    assert pump.delivering_rate_ml_h == Decimal("14.4")


def test_an_order_awaiting_confirmation_may_be_replaced_by_its_sender_or_the_nurse(
    make_pump: PumpFactory,
) -> None:
    """F-2 (H-70) / SR-18: an EHR may correct its own order; the nurse may override it."""
    pump = make_pump()
    assert pump.handle(Program(heparin("18"), CommandSource.AUTO_PROGRAMME)).accepted
    assert pump.handle(Program(heparin("20"), CommandSource.REMOTE)).rejection is (
        Rejection.WRONG_STATE
    )
    assert pump.handle(Program(heparin("20"), CommandSource.AUTO_PROGRAMME)).accepted
    assert pump.handle(Program(heparin("22"))).accepted
    assert pump.display().pending is not None
    assert "22 units/kg/h" in str(pump.display().pending)


def test_a_paused_pump_reminds_after_two_minutes(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """F-3 (H-71) / SR-17: a pause (from anywhere) cannot be forgotten silently."""
    pump = make_pump()
    start(pump, heparin())
    assert pump.handle(Pause(CommandSource.REMOTE)).accepted
    clock.advance(2 * MS_PER_MINUTE - 1)
    assert AlarmKind.PAUSED_TOO_LONG not in pump.display().alarms
    clock.advance(1)
    assert AlarmKind.PAUSED_TOO_LONG in pump.display().alarms
    reminder = [e for e in pump.log if e.kind is EventKind.ALARM_ON][-1]
    assert reminder.time_ms == clock.now_ms()
    assert pump.handle(Resume()).accepted
    assert AlarmKind.PAUSED_TOO_LONG not in pump.display().alarms


def test_a_library_cannot_be_rolled_back(make_pump: PumpFactory) -> None:
    """F-4 (H-69) / SR-19: an older (or different same-numbered) library is refused."""
    pump = make_pump()
    older = pump.handle(InstallLibrary(make_library(version=6)))
    assert older.rejection is Rejection.DOWNGRADE
    assert pump.handle(InstallLibrary(make_library(version=8))).accepted
    assert pump.library is not None
    assert pump.library.version == 8
    refused = [e for e in pump.log if e.kind is EventKind.LIBRARY_REFUSED]
    assert "installed is v7" in refused[0].detail


def test_system_clock_intervals_ignore_wall_clock_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """F-8 (H-76) / SR-25: a wall-clock jump does not move the pump's time."""
    import time

    from pumpguard.clock import SystemClock

    clock = SystemClock()
    before = clock.now_ms()
    real_time_ns = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + 3_600_000_000_000)
    after = clock.now_ms()
    assert 0 <= after - before < 60_000
