"""Scenario tests of insulin delivery: basal profile, temp basal, boluses, the remote cancel
window. One behaviour each, with exact numbers; every scenario ends with a log audit."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from pumpguard.clinical import BasalProfile, InsulinError
from pumpguard.clock import MS_PER_HOUR, VirtualClock
from pumpguard.devices.insulin import (
    AlarmKind,
    Bolus,
    BolusStatus,
    CancelBolus,
    CancelTempBasal,
    EventKind,
    ExtendedBolus,
    IdsResponseCode,
    InsulinPump,
    PumpState,
    Rejection,
    SetBasalProfile,
    SetTempBasal,
    SetUtcOffset,
)

from .audit import LogAudit
from .conftest import (
    AUTOMATED,
    DAY_PROFILE,
    FLAT_ZERO,
    LOCAL,
    MS_TO_MIDNIGHT,
    REMOTE,
    SYSTEM,
    PumpFactory,
    limits,
    minutes,
    u,
    units,
)


def audit(pump: InsulinPump, clock: VirtualClock) -> LogAudit:
    """Check the whole log of ``pump`` (run at the end of a scenario)."""
    auditor = LogAudit(pump.limits, cancel_window_ms=pump.model.remote_cancel_window_ms)
    auditor.check_iob(pump, clock.now_ms())
    return auditor


def entries(pump: InsulinPump, kind: EventKind) -> list[int]:
    return [e.time_ms for e in pump.log if e.kind is kind]


# -- basal profile ------------------------------------------------------------------------


def test_basal_follows_the_profile_across_midnight(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """22:13:20 at 0.9 U/h; midnight to 0.8 U/h; 06:00 to 1.2 U/h, to the millisecond."""
    pump = make_pump()
    start = clock.now_ms()
    assert pump.basal_u_h == units("0.9")
    clock.advance(MS_TO_MIDNIGHT - 1)
    assert pump.basal_u_h == units("0.9")
    clock.advance(1)
    assert pump.basal_u_h == units("0.8")
    assert pump.delivered_u == units("1.6")  # 0.9 U/h for 1 h 46 min 40 s
    clock.advance(6 * MS_PER_HOUR)
    assert pump.basal_u_h == units("1.2")
    assert pump.delivered_u == units("1.6") + units("0.8") * 6
    changes = [e for e in pump.log if e.kind is EventKind.BASAL_CHANGE]
    assert [e.time_ms - start for e in changes] == [
        MS_TO_MIDNIGHT,
        MS_TO_MIDNIGHT + 6 * MS_PER_HOUR,
    ]
    assert all(e.source is SYSTEM for e in changes)
    audit(pump, clock)


def test_a_day_of_basal_is_the_profile_total(make_pump: PumpFactory, clock: VirtualClock) -> None:
    pump = make_pump()
    clock.advance(24 * MS_PER_HOUR)
    assert pump.delivered_u == DAY_PROFILE.daily_total_u == units("25.8")
    assert pump.delivered_in_last(24 * MS_PER_HOUR) == units("25.8")
    audit(pump, clock)


def test_utc_offset_places_the_profile_and_is_set_at_the_pump_only(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump(utc_offset_min=120)  # 00:13 local: the night rate
    assert pump.basal_u_h == units("0.8")
    refused = pump.handle(SetUtcOffset(0, REMOTE, "tz-1"))
    assert refused.rejection is Rejection.NOT_PERMITTED
    assert refused.ids_code is IdsResponseCode.PROCEDURE_NOT_APPLICABLE
    assert pump.handle(SetUtcOffset(7)).rejection is Rejection.INVALID
    assert pump.handle(SetUtcOffset(900)).rejection is Rejection.OUT_OF_RANGE
    assert pump.handle(SetUtcOffset(0)).accepted
    assert pump.basal_u_h == units("0.9")
    change = [e for e in pump.log if e.kind is EventKind.TIME][-1]
    assert change.source is LOCAL
    assert change.before is not None and change.before.basal_u_h == units("0.8")
    assert change.after is not None and change.after.basal_u_h == units("0.9")
    audit(pump, clock)


def test_profile_structure_is_checked_when_built() -> None:
    with pytest.raises(InsulinError, match="start at 00:00"):
        BasalProfile.from_schedule({"01:00": "1"})
    with pytest.raises(InsulinError, match="increasing"):
        BasalProfile.from_schedule({"00:00": "1", "06:00": "1", "05:00": "1"})
    with pytest.raises(InsulinError, match="finite"):
        BasalProfile.flat("NaN")
    with pytest.raises(InsulinError, match="finite"):
        BasalProfile.flat("-0.5")
    with pytest.raises(InsulinError, match="binary floats"):
        BasalProfile.from_schedule({"00:00": 0.5})  # type: ignore[dict-item]
    with pytest.raises(InsulinError, match="HH:MM"):
        BasalProfile.from_schedule({"6am": "1"})


def test_profile_is_checked_against_the_pump_and_its_limits(make_pump: PumpFactory) -> None:
    pump = make_pump()
    off_grid = BasalProfile.from_schedule({"00:00": "1", "06:15": "1.2"})
    assert pump.handle(SetBasalProfile(off_grid)).rejection is Rejection.INVALID
    off_step = BasalProfile.flat("0.0125")
    assert pump.handle(SetBasalProfile(off_step)).rejection is Rejection.INVALID
    too_high = BasalProfile.flat("10.025")
    assert pump.handle(SetBasalProfile(too_high)).rejection is Rejection.MAX_BASAL
    # 4.5 U/h for 2 h (9 U) plus one max bolus (17 U) does not fit the 25 U 2-hour limit
    crowded = BasalProfile.flat("4.5")
    result = pump.handle(SetBasalProfile(crowded))
    assert result.rejection is Rejection.INCONSISTENT
    assert result.ids_code is IdsResponseCode.PLAUSIBILITY_CHECK_FAILED
    assert pump.profile == DAY_PROFILE


def test_profile_from_the_phone_yes_from_the_controller_no(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump()
    new = BasalProfile.flat("1")
    assert pump.handle(SetBasalProfile(new, AUTOMATED, "p1")).rejection is Rejection.NOT_PERMITTED
    assert pump.handle(SetBasalProfile(new, SYSTEM)).rejection is Rejection.NOT_PERMITTED
    assert pump.handle(SetBasalProfile(new, REMOTE, "p2")).accepted
    assert pump.basal_u_h == 1
    audit(pump, clock)


def test_a_new_profile_cancels_the_temp_basal(make_pump: PumpFactory, clock: VirtualClock) -> None:
    pump = make_pump()
    assert pump.handle(SetTempBasal(60, rate_u_h=u("2"))).accepted
    assert pump.handle(SetBasalProfile(BasalProfile.flat("1"))).accepted
    assert pump.temp_basal is None
    assert pump.basal_u_h == 1
    audit(pump, clock)


# -- temporary basal ----------------------------------------------------------------------


def test_absolute_temp_basal_ends_exactly(make_pump: PumpFactory, clock: VirtualClock) -> None:
    pump = make_pump(BasalProfile.flat("1"))
    start = clock.now_ms()
    assert pump.handle(SetTempBasal(30, rate_u_h=u("2.5"))).accepted
    assert pump.basal_u_h == units("2.5")
    clock.advance(minutes(30) - 1)
    assert pump.basal_u_h == units("2.5")
    clock.advance(1)
    assert pump.basal_u_h == 1
    assert pump.temp_basal is None
    assert pump.delivered_u == units("1.25")
    assert entries(pump, EventKind.TEMP_BASAL_END) == [start + minutes(30)]
    audit(pump, clock)


def test_percent_temp_basal_follows_the_schedule_and_rounds_down(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """130 %: of 0.9 U/h is 1.17, delivered as 1.15 (0.025 U/h steps, rounded down); after
    midnight 130 % of 0.8 is 1.04, delivered as 1.025; the temp basal ends at 00:13:20."""
    pump = make_pump()
    assert pump.handle(SetTempBasal(120, percent=130)).accepted
    assert pump.basal_u_h == units("1.15")
    clock.advance(MS_TO_MIDNIGHT)
    assert pump.basal_u_h == units("1.025")
    clock.advance(minutes(120) - MS_TO_MIDNIGHT)
    assert pump.basal_u_h == units("0.8")
    change = next(e for e in pump.log if e.kind is EventKind.BASAL_CHANGE)
    assert "130 % temp basal" in change.detail
    audit(pump, clock)


def test_temp_basal_is_refused_above_max_basal(make_pump: PumpFactory, clock: VirtualClock) -> None:
    pump = make_pump()
    assert pump.handle(SetTempBasal(30, rate_u_h=u("10"))).accepted  # exactly at the limit
    over = pump.handle(SetTempBasal(30, rate_u_h=u("10.025")))
    assert over.rejection is Rejection.MAX_BASAL
    assert over.ids_code is IdsResponseCode.PARAMETER_OUT_OF_RANGE
    # 5 U/h now, 6 U/h after midnight: 190 % is 9.5 U/h now but 11.4 U/h after midnight
    high = limits(max_bolus_u="5", max_tdd_u="200")
    night = BasalProfile.from_schedule({"00:00": "6", "06:00": "5"})
    other = make_pump(night, limits=high)
    assert other.handle(SetTempBasal(120, percent=190)).rejection is Rejection.MAX_BASAL
    assert other.handle(SetTempBasal(90, percent=190)).accepted  # ends before midnight
    assert other.basal_u_h == units("9.5")
    audit(pump, clock)


@pytest.mark.parametrize(
    ("command", "rejection"),
    [
        (SetTempBasal(30), Rejection.INVALID),
        (SetTempBasal(30, rate_u_h=u("1"), percent=50), Rejection.INVALID),
        (SetTempBasal(0, rate_u_h=u("1")), Rejection.OUT_OF_RANGE),
        (SetTempBasal(1470, rate_u_h=u("1")), Rejection.OUT_OF_RANGE),
        (SetTempBasal(45, rate_u_h=u("1")), Rejection.INVALID),
        (SetTempBasal(30, percent=210), Rejection.OUT_OF_RANGE),
        (SetTempBasal(30, percent=-10), Rejection.OUT_OF_RANGE),
        (SetTempBasal(30, percent=15), Rejection.INVALID),
        (SetTempBasal(30, percent=True), Rejection.INVALID),
        (SetTempBasal(30, rate_u_h=u("NaN")), Rejection.INVALID),
        (SetTempBasal(30, rate_u_h=u("-0.5")), Rejection.OUT_OF_RANGE),
        (SetTempBasal(30, rate_u_h=u("0.0125")), Rejection.INVALID),
        (SetTempBasal(30, rate_u_h=1.5), Rejection.INVALID),  # type: ignore[arg-type]
    ],
)
def test_temp_basal_bad_input_is_refused_by_name(
    make_pump: PumpFactory, command: SetTempBasal, rejection: Rejection
) -> None:
    pump = make_pump()
    result = pump.handle(command)
    assert result.rejection is rejection
    assert pump.temp_basal is None
    assert pump.log.since(0)[-1].kind is EventKind.COMMAND_REJECTED


def test_zero_temp_basal_is_allowed(make_pump: PumpFactory) -> None:
    pump = make_pump()
    assert pump.handle(SetTempBasal(60, rate_u_h=u("0"))).accepted
    assert pump.basal_u_h == 0
    assert pump.state is PumpState.RUNNING


def test_a_source_changes_only_its_own_temp_basal(make_pump: PumpFactory) -> None:
    pump = make_pump()
    assert pump.handle(SetTempBasal(60, rate_u_h=u("0.5"))).accepted
    replace = pump.handle(SetTempBasal(30, rate_u_h=u("3"), source=AUTOMATED, command_id="a1"))
    assert replace.rejection is Rejection.NOT_PERMITTED
    assert pump.handle(CancelTempBasal(REMOTE, "r1")).rejection is Rejection.NOT_PERMITTED
    assert pump.handle(CancelTempBasal()).accepted
    assert pump.handle(
        SetTempBasal(30, rate_u_h=u("2"), source=AUTOMATED, command_id="a2")
    ).accepted
    assert pump.handle(
        SetTempBasal(30, rate_u_h=u("1.5"), source=AUTOMATED, command_id="a3")
    ).accepted
    assert pump.handle(SetTempBasal(30, rate_u_h=u("1"))).accepted  # the user overrides
    assert pump.handle(CancelTempBasal()).accepted
    assert pump.handle(CancelTempBasal()).rejection is Rejection.NOTHING_TO_CANCEL


# -- boluses ------------------------------------------------------------------------------


def test_normal_bolus_runs_at_one_and_a_half_units_a_minute(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump(FLAT_ZERO)
    start = clock.now_ms()
    result = pump.handle(Bolus(u("3")))
    assert result.accepted and result.bolus_id == 1
    assert pump.total_u_h == 90
    clock.advance(60_000)
    assert pump.delivered_u == units("1.5")
    clock.advance(60_000)
    assert pump.delivered_u == 3
    assert pump.total_u_h == 0
    view = pump.bolus(1)
    assert view is not None and view.status is BolusStatus.COMPLETED
    assert entries(pump, EventKind.BOLUS_COMPLETE) == [start + 120_000]
    audit(pump, clock)


def test_extended_bolus_spreads_evenly_and_runs_with_a_normal_one(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump(FLAT_ZERO)
    start = clock.now_ms()
    assert pump.handle(ExtendedBolus(u("3"), 90)).accepted  # 2 U/h
    assert pump.handle(Bolus(u("1"))).accepted  # dual wave: both at once
    assert pump.total_u_h == 92
    clock.advance(minutes(45))
    assert pump.delivered_u == units("2.5")
    clock.advance(minutes(45))
    assert pump.delivered_u == 4
    assert entries(pump, EventKind.BOLUS_COMPLETE) == [start + 40_000, start + minutes(90)]
    audit(pump, clock)


def test_one_bolus_of_each_kind_at_a_time(make_pump: PumpFactory) -> None:
    pump = make_pump()
    assert pump.handle(Bolus(u("1"))).accepted
    second = pump.handle(Bolus(u("1")))
    assert second.rejection is Rejection.BOLUS_ACTIVE
    assert second.ids_code is IdsResponseCode.MAX_BOLUS_NUMBER_REACHED
    assert pump.handle(ExtendedBolus(u("1"), 30)).accepted
    assert pump.handle(ExtendedBolus(u("1"), 30)).rejection is Rejection.BOLUS_ACTIVE


def test_who_may_bolus(make_pump: PumpFactory, clock: VirtualClock) -> None:
    pump = make_pump()
    assert pump.handle(Bolus(u("1"), SYSTEM)).rejection is Rejection.NOT_PERMITTED
    refused = pump.handle(ExtendedBolus(u("1"), 60, AUTOMATED, "x1"))
    assert refused.rejection is Rejection.NOT_PERMITTED
    automated = pump.handle(Bolus(u("0.5"), AUTOMATED, "smb-1"))
    assert automated.accepted
    assert pump.total_u_h == 90 + units("0.9")  # no cancel window for the controller
    audit(pump, clock)


@pytest.mark.parametrize("source", [LOCAL, REMOTE, AUTOMATED])
def test_max_bolus_exactly_at_and_just_above(make_pump: PumpFactory, source: object) -> None:
    pump = make_pump(FLAT_ZERO)
    over = pump.handle(Bolus(u("17.05"), source, "b-over"))  # type: ignore[arg-type]
    assert over.rejection is Rejection.MAX_BOLUS
    assert over.ids_code is IdsResponseCode.PARAMETER_OUT_OF_RANGE
    assert pump.handle(Bolus(u("17"), source, "b-at")).accepted  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "rejection", "code"),
    [
        (u("NaN"), Rejection.INVALID, IdsResponseCode.INVALID_OPERAND),
        (u("sNaN"), Rejection.INVALID, IdsResponseCode.INVALID_OPERAND),
        (u("Infinity"), Rejection.INVALID, IdsResponseCode.INVALID_OPERAND),
        (u("-1"), Rejection.OUT_OF_RANGE, IdsResponseCode.PARAMETER_OUT_OF_RANGE),
        (u("0"), Rejection.OUT_OF_RANGE, IdsResponseCode.PARAMETER_OUT_OF_RANGE),
        (u("0.03"), Rejection.INVALID, IdsResponseCode.INVALID_OPERAND),
        (u("1.234"), Rejection.INVALID, IdsResponseCode.INVALID_OPERAND),
        (u("1E-30"), Rejection.INVALID, IdsResponseCode.INVALID_OPERAND),
        (u("1E+30"), Rejection.MAX_BOLUS, IdsResponseCode.PARAMETER_OUT_OF_RANGE),
        (1.5, Rejection.INVALID, IdsResponseCode.INVALID_OPERAND),
        (True, Rejection.INVALID, IdsResponseCode.INVALID_OPERAND),
        ("2", Rejection.INVALID, IdsResponseCode.INVALID_OPERAND),
    ],
)
def test_bolus_bad_input_is_refused_by_name(
    make_pump: PumpFactory, amount: object, rejection: Rejection, code: IdsResponseCode
) -> None:
    pump = make_pump()
    result = pump.handle(Bolus(amount, REMOTE, "bad"))  # type: ignore[arg-type]
    assert result.rejection is rejection
    assert result.ids_code is code
    assert pump.bolus(1) is None
    rejected = pump.log.since(0)[-1]
    assert rejected.kind is EventKind.COMMAND_REJECTED
    assert rejected.source is REMOTE and rejected.command_id == "bad"


def test_whole_units_are_accepted(make_pump: PumpFactory) -> None:
    assert make_pump().handle(Bolus(2)).accepted  # type: ignore[arg-type]


# -- limits that count delivered and committed insulin -----------------------------------


def test_max_iob_counts_the_bolus_still_to_come(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """No basal: 12 U being delivered + 10 U is exactly the 22 U max IOB; 10.05 U is not."""
    pump = make_pump(FLAT_ZERO)
    assert pump.handle(Bolus(u("12"))).accepted
    over = pump.handle(ExtendedBolus(u("10.05"), 60))
    assert over.rejection is Rejection.MAX_IOB
    assert over.ids_code is IdsResponseCode.PLAUSIBILITY_CHECK_FAILED
    assert pump.handle(ExtendedBolus(u("10"), 60)).accepted
    audit(pump, clock)


def test_max_iob_counts_insulin_delivered_and_decays(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """Within the curve's 10-minute delay all of a dose is on board; after delay plus 6 h of
    action nothing is."""
    pump = make_pump(FLAT_ZERO)
    assert pump.handle(Bolus(u("12"))).accepted
    clock.advance(minutes(9))  # delivered in 8 min, still inside the delay
    assert pump.iob_u == 12
    assert pump.handle(ExtendedBolus(u("10.05"), 30)).rejection is Rejection.MAX_IOB
    assert pump.handle(ExtendedBolus(u("10"), 30)).accepted
    clock.advance(minutes(30 + 10 + 360))
    assert pump.iob_u == 0
    assert pump.handle(Bolus(u("17"))).accepted
    audit(pump, clock)


def test_iob_in_between_follows_the_curve(make_pump: PumpFactory, clock: VirtualClock) -> None:
    pump = make_pump(FLAT_ZERO)
    pump.handle(Bolus(u("9")))  # 6 minutes at 90 U/h
    clock.advance(minutes(6 + 180))
    curve = pump.model.insulin
    expected = (curve.iob_minutes(186) - curve.iob_minutes(180)) * 90 / 60  # ages 180-186 min
    assert abs(pump.iob_u - expected) < Decimal("1e-25")
    assert Decimal("0.2") < pump.iob_u / 9 < Decimal("0.3")


def test_two_hour_total_counts_boluses_exactly_at_the_limit(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump(FLAT_ZERO, limits=limits(max_bolus_u="10", max_iob_u="30", max_2h_u="15"))
    start = clock.now_ms()
    assert pump.handle(Bolus(u("10"))).accepted  # delivered in 400 s
    clock.advance(400_000)
    over = pump.handle(ExtendedBolus(u("5.05"), 30))
    assert over.rejection is Rejection.TWO_HOUR_LIMIT
    assert pump.handle(ExtendedBolus(u("5"), 30)).accepted  # 10 + 5 = 15: at the limit
    # the extended bolus is committed, not yet delivered: it counts all the same
    assert pump.handle(Bolus(u("0.05"))).rejection is Rejection.TWO_HOUR_LIMIT
    clock.advance(minutes(30))
    assert pump.handle(Bolus(u("0.05"))).rejection is Rejection.TWO_HOUR_LIMIT
    # half of the first bolus has left the window 2 h + 200 s after it started
    clock.advance_to(start + 2 * MS_PER_HOUR + 200_000)
    assert pump.delivered_in_last(2 * MS_PER_HOUR) == 10
    assert pump.handle(Bolus(u("5.05"))).rejection is Rejection.TWO_HOUR_LIMIT
    assert pump.handle(Bolus(u("5"))).accepted
    audit(pump, clock)


def test_two_hour_total_counts_basal(make_pump: PumpFactory, clock: VirtualClock) -> None:
    """1 U/h for 2 h plus 0.05 U: a 10 U bolus would make 12.05 U in 2 h."""
    pump = make_pump(
        BasalProfile.flat("1"), limits=limits(max_bolus_u="10", max_iob_u="30", max_2h_u="12")
    )
    assert pump.handle(Bolus(u("0.05"))).accepted
    clock.advance(2 * MS_PER_HOUR)
    assert pump.delivered_in_last(2 * MS_PER_HOUR) == units("2.05")
    assert pump.handle(Bolus(u("10"))).rejection is Rejection.TWO_HOUR_LIMIT
    assert pump.handle(Bolus(u("9.95"))).accepted
    audit(pump, clock)


def test_daily_total_is_a_rolling_24_hours_not_since_midnight(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump(
        FLAT_ZERO,
        limits=limits(max_bolus_u="10", max_iob_u="30", max_2h_u="15", max_tdd_u="20"),
    )
    start = clock.now_ms()
    assert pump.handle(Bolus(u("10"))).accepted  # at 22:13, before midnight
    clock.advance(3 * MS_PER_HOUR)  # 01:13: a new calendar day
    assert pump.handle(Bolus(u("10"))).accepted  # 20 U in 24 h: at the limit
    clock.advance(3 * MS_PER_HOUR)
    refused = pump.handle(Bolus(u("0.05")))
    assert refused.rejection is Rejection.DAILY_LIMIT
    assert refused.ids_code is IdsResponseCode.PLAUSIBILITY_CHECK_FAILED
    clock.advance_to(start + 23 * MS_PER_HOUR + minutes(30))  # 23.5 h: still in the window
    assert pump.handle(Bolus(u("0.05"))).rejection is Rejection.DAILY_LIMIT
    clock.advance_to(start + 24 * MS_PER_HOUR + 400_000)  # the first bolus has left
    assert pump.handle(Bolus(u("10"))).accepted
    audit(pump, clock)


def test_an_extended_bolus_running_into_the_2h_limit_stops_delivery(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """1 U/h basal and 9 U at once make 9.1 U in 6 min; an extended 1.85 U fits (10.95 U of
    11 U) but basal keeps coming: at 2.85 U/h the last 1.9 U of room last exactly 40 min. At
    that millisecond everything stops with a high-priority alarm and the total is exactly 11."""
    pump = make_pump(
        BasalProfile.flat("1"), limits=limits(max_bolus_u="9", max_iob_u="30", max_2h_u="11")
    )
    start = clock.now_ms()
    assert pump.handle(Bolus(u("9"))).accepted
    clock.advance(minutes(6))
    extended = pump.handle(ExtendedBolus(u("1.85"), 60))
    assert extended.accepted and extended.bolus_id is not None
    clock.advance(minutes(40) - 1)
    assert pump.state is PumpState.RUNNING
    clock.advance(1)
    assert pump.state is PumpState.STOPPED
    assert pump.total_u_h == 0
    assert pump.delivered_in_last(2 * MS_PER_HOUR) == 11
    stopped = pump.bolus(extended.bolus_id)
    assert stopped is not None and stopped.status is BolusStatus.CANCELLED
    assert stopped.delivered_u == Fraction(37, 30)  # 1.85 U x 40/60
    assert entries(pump, EventKind.DELIVERY_STOP) == [start + minutes(46)]
    assert pump.alarms[0].kind is AlarmKind.TWO_HOUR_LIMIT
    assert pump.handle(Bolus(u("0.05"))).rejection is Rejection.SUSPENDED
    clock.advance(minutes(60))
    assert pump.delivered_u == 11  # nothing more
    from pumpguard.devices.insulin import AcknowledgeAlarm, Resume

    assert pump.handle(Resume()).rejection is Rejection.ALARM_ACTIVE
    pump.handle(AcknowledgeAlarm())
    assert pump.handle(Resume()).rejection is Rejection.ALARM_ACTIVE  # still at the limit
    clock.advance_to(start + 2 * MS_PER_HOUR + 60_000)  # the first 9 U leave the window
    # the pump fell back to the schedule by itself (docs: "Should the 2-hour and daily guard
    # stop the scheduled basal too?"); the extended bolus is not resumed
    assert pump.state is PumpState.RUNNING
    assert pump.total_u_h == 1
    assert [e.source for e in pump.log if e.kind is EventKind.RESUME] == [SYSTEM]
    assert pump.handle(Resume(REMOTE, "r")).rejection is Rejection.WRONG_STATE
    audit(pump, clock)


def test_bolus_refused_when_the_reservoir_cannot_hold_it(make_pump: PumpFactory) -> None:
    pump = make_pump(FLAT_ZERO, reservoir_u=u("5"))
    assert pump.handle(Bolus(u("5.05"))).rejection is Rejection.RESERVOIR
    assert pump.handle(ExtendedBolus(u("3"), 60)).accepted
    assert pump.handle(Bolus(u("2.05"))).rejection is Rejection.RESERVOIR
    assert pump.handle(Bolus(u("2"))).accepted


# -- remote bolus: the cancel window --------------------------------------------------------


def test_remote_bolus_waits_out_its_cancel_window_with_an_alert(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump()
    start = clock.now_ms()
    result = pump.handle(Bolus(u("2"), REMOTE, "phone-1"))
    assert result.accepted and result.bolus_id is not None
    view = pump.bolus(result.bolus_id)
    assert view is not None and view.status is BolusStatus.PENDING
    assert [a.kind for a in pump.alarms] == [AlarmKind.REMOTE_BOLUS]
    clock.advance(29_999)
    assert pump.total_u_h == units("0.9")
    clock.advance(1)
    assert pump.total_u_h == units("90.9")
    assert pump.alarms == ()
    starts = [e for e in pump.log if e.kind is EventKind.BOLUS_START]
    assert [(e.time_ms - start, e.source, e.command_id) for e in starts] == [
        (30_000, REMOTE, "phone-1")
    ]
    clock.advance(80_000)
    assert pump.delivered_u == 2 + units("0.9") * 110 / 3600
    audit(pump, clock)


def test_remote_bolus_cancelled_at_the_pump_in_its_window_delivers_nothing(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump(FLAT_ZERO)
    result = pump.handle(Bolus(u("5"), REMOTE, "phone-2"))
    assert result.bolus_id is not None
    clock.advance(10_000)
    assert pump.handle(CancelBolus(result.bolus_id)).accepted
    clock.advance(minutes(10))
    assert pump.delivered_u == 0
    view = pump.bolus(result.bolus_id)
    assert view is not None and view.status is BolusStatus.CANCELLED
    assert pump.alarms == ()
    audit(pump, clock)


def test_remote_bolus_is_checked_again_when_its_window_ends(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """2 U and 3 minutes of 1 U/h basal make 2.05 U; 9.95 U fits the 12 U 2-hour limit when
    asked for, but not 30 s of basal later."""
    pump = make_pump(
        BasalProfile.flat("1"), limits=limits(max_bolus_u="10", max_iob_u="30", max_2h_u="12")
    )
    assert pump.handle(Bolus(u("2"))).accepted
    clock.advance(minutes(3))
    result = pump.handle(Bolus(u("9.95"), REMOTE, "phone-3"))
    assert result.accepted and result.bolus_id is not None
    clock.advance(30_000)
    view = pump.bolus(result.bolus_id)
    assert view is not None and view.status is BolusStatus.CANCELLED
    assert "2-hour limit" in view.end_reason
    assert pump.total_u_h == 1
    audit(pump, clock)


def test_a_source_cancels_only_its_own_bolus(make_pump: PumpFactory) -> None:
    pump = make_pump()
    local = pump.handle(Bolus(u("5")))
    refused = pump.handle(CancelBolus(local.bolus_id, REMOTE, "c1"))
    assert refused.rejection is Rejection.NOT_PERMITTED
    remote = pump.handle(ExtendedBolus(u("2"), 60, REMOTE, "e1"))
    assert pump.handle(CancelBolus(None, AUTOMATED, "c2")).rejection is Rejection.NOT_PERMITTED
    assert pump.handle(CancelBolus(None, REMOTE, "c3")).accepted  # its own extended bolus
    assert remote.bolus_id is not None
    view = pump.bolus(remote.bolus_id)
    assert view is not None and view.status is BolusStatus.CANCELLED
    assert pump.handle(CancelBolus(remote.bolus_id)).rejection is Rejection.NOTHING_TO_CANCEL
    assert pump.handle(CancelBolus(99)).rejection is Rejection.NOTHING_TO_CANCEL
    assert pump.handle(CancelBolus()).accepted  # the user cancels the local bolus


def test_the_guard_follows_insulin_leaving_the_window(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """0.5 U/h basal, max 3 U in 2 h. A 2 U/h temp basal for the first hour, then basal: 2.5 U
    in the 2 h window. A new 2 U/h temp basal then adds as fast as the old one leaves, until
    the old one has left (at 3 h): from then the total grows by 1.5 U/h and the last 0.5 U of
    room lasts exactly 20 minutes. The stop needs the pump to notice, at 3 h, that insulin
    stopped leaving the window."""
    pump = make_pump(
        BasalProfile.flat("0.5"),
        limits=limits(
            max_bolus_u="2", max_basal_u_h="3", max_iob_u="2", max_2h_u="3", max_tdd_u="20"
        ),
    )
    start = clock.now_ms()
    assert pump.handle(SetTempBasal(60, rate_u_h=u("2"))).accepted
    clock.advance(2 * MS_PER_HOUR)
    assert pump.delivered_in_last(2 * MS_PER_HOUR) == units("2.5")
    assert pump.handle(SetTempBasal(600, rate_u_h=u("2"))).accepted
    clock.advance(2 * MS_PER_HOUR - 1)  # one catch-up: the pump must find 3 h itself
    assert pump.state is PumpState.STOPPED
    assert entries(pump, EventKind.DELIVERY_STOP) == [start + 3 * MS_PER_HOUR + minutes(20)]
    assert pump.delivered_u == units("2.5") + 2 * Fraction(80, 60)
    assert pump.alarms[0].kind is AlarmKind.TWO_HOUR_LIMIT
    # at 4 h the second temp basal's insulin starts leaving the window at 2 U/h: from then
    # the 0.5 U/h schedule fits, and the pump restarts it
    clock.advance(1)
    assert pump.state is PumpState.RUNNING
    assert entries(pump, EventKind.RESUME) == [start + 4 * MS_PER_HOUR]
    audit(pump, clock)
