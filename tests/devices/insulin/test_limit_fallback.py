"""After a 2-hour or daily limit stop the pump falls back to the scheduled basal by itself, at
the first millisecond the schedule fits both limits again, and never crosses them afterwards;
boluses and temp basals from afar wait until the alarm is acknowledged at the pump. Other stops
(occlusion, reservoir, battery) still wait for the user.
"""

from __future__ import annotations

from pumpguard.clinical import BasalProfile
from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE, VirtualClock
from pumpguard.devices.insulin import (
    AcknowledgeAlarm,
    AlarmKind,
    Bolus,
    EventKind,
    InsulinPump,
    Occlusion,
    PumpState,
    Rejection,
    Resume,
    SetTempBasal,
)

from .audit import LogAudit
from .conftest import AUTOMATED, REMOTE, SYSTEM, PumpFactory, limits, minutes, u

# 1 U/h schedule, at most 11 U in 2 h; 9 U at once (with 0.1 U of basal: 9.1 U in 6 min at
# 91 U/h), then a 10 U/h temp basal: the last 1.9 U of room last 0.19 h = 684 000 ms.
STOP_MS = minutes(6) + 684_000
# From 2 h on, the 9.1 U leave the window at 91 U/h, far faster than the 1 U/h schedule adds:
# restarted then, the schedule never takes a window above 11 U, so the pump restarts it then.
# (A sufficient rule, "what is in the window plus the schedule's busiest 2 h fits", would wait
# until 2 U have left: 79 s more.)
FALLBACK_MS = 2 * MS_PER_HOUR


def _stopped(make_pump: PumpFactory, clock: VirtualClock) -> tuple[InsulinPump, int]:
    pump = make_pump(
        BasalProfile.flat("1"), limits=limits(max_bolus_u="9", max_iob_u="30", max_2h_u="11")
    )
    start = clock.now_ms()
    assert pump.handle(Bolus(u("9"))).accepted
    clock.advance(minutes(6))
    assert pump.handle(SetTempBasal(120, rate_u_h=u("10"))).accepted
    clock.advance(STOP_MS - minutes(6))
    assert pump.state is PumpState.STOPPED
    assert pump.delivered_u == 11
    return pump, start


def test_a_limit_stop_falls_back_to_the_schedule_when_it_fits(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump, start = _stopped(make_pump, clock)
    clock.advance_to(start + FALLBACK_MS - 1)
    assert pump.state is PumpState.STOPPED
    clock.advance(1)
    assert pump.state is PumpState.RUNNING
    assert pump.total_u_h == 1  # the schedule only: the temp basal stays cancelled
    resume = [e for e in pump.log if e.kind is EventKind.RESUME]
    assert [(e.time_ms, e.source) for e in resume] == [(start + FALLBACK_MS, SYSTEM)]
    # the alarm stays until the user sees it; until then nothing extra from afar
    assert AlarmKind.TWO_HOUR_LIMIT in [a.kind for a in pump.alarms]
    assert pump.handle(Bolus(u("1"), REMOTE, "b1")).rejection is Rejection.ALARM_ACTIVE
    temp = SetTempBasal(30, rate_u_h=u("2"), source=AUTOMATED, command_id="t1")
    assert pump.handle(temp).rejection is Rejection.ALARM_ACTIVE
    clock.advance(minutes(10))
    assert pump.handle(AcknowledgeAlarm()).accepted
    assert pump.alarms == ()
    assert pump.handle(Bolus(u("1"), REMOTE, "b2")).accepted
    for _ in range(48):  # a day of schedule: never at the limit again
        clock.advance(30 * MS_PER_MINUTE)
        assert pump.state is PumpState.RUNNING
        assert pump.delivered_in_last(2 * MS_PER_HOUR) <= 11
    auditor = LogAudit(pump.limits, cancel_window_ms=pump.model.remote_cancel_window_ms)
    auditor.check_iob(pump, clock.now_ms())


def test_before_the_fallback_the_user_cannot_resume_either(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump, start = _stopped(make_pump, clock)
    clock.advance_to(start + MS_PER_HOUR)
    assert pump.handle(Resume()).rejection is Rejection.ALARM_ACTIVE
    assert pump.handle(AcknowledgeAlarm()).accepted
    assert pump.handle(Resume()).rejection is Rejection.ALARM_ACTIVE  # still at the limit
    clock.advance_to(start + FALLBACK_MS)
    assert pump.state is PumpState.RUNNING
    assert [e.source for e in pump.log if e.kind is EventKind.RESUME] == [SYSTEM]


def test_no_fallback_after_another_stop(make_pump: PumpFactory, clock: VirtualClock) -> None:
    pump, start = _stopped(make_pump, clock)
    assert pump.handle(Occlusion(True)).accepted
    clock.advance(minutes(5))
    assert pump.handle(Occlusion(False)).accepted
    assert pump.handle(AcknowledgeAlarm()).accepted
    assert [a.kind for a in pump.alarms] == [AlarmKind.TWO_HOUR_LIMIT]
    clock.advance_to(start + 6 * MS_PER_HOUR)
    assert pump.state is PumpState.STOPPED  # an occlusion is resumed at the pump only
    assert not [e for e in pump.log if e.kind is EventKind.RESUME]


def test_a_daily_limit_stop_falls_back_too(make_pump: PumpFactory, clock: VirtualClock) -> None:
    """2 U/h schedule, at most 60 U a day (48 U of it scheduled): 27 U of boluses and the basal
    use up the room after 16.5 h; the pump stops, then restarts the schedule 7.5 h later."""
    pump = make_pump(
        BasalProfile.flat("2"),
        limits=limits(max_bolus_u="9", max_iob_u="30", max_2h_u="25", max_tdd_u="60"),
    )
    start = clock.now_ms()
    for n in range(3):
        assert pump.handle(Bolus(u("9"), command_id=f"b{n}")).accepted
        clock.advance(2 * MS_PER_HOUR)
    clock.advance(12 * MS_PER_HOUR)  # 27 U + 2 U/h: the room is gone after 16.5 h
    assert pump.state is PumpState.STOPPED
    stops = [e.time_ms for e in pump.log if e.kind is EventKind.DELIVERY_STOP]
    assert AlarmKind.DAILY_LIMIT in [a.kind for a in pump.alarms]
    # Restarted before 24 h the schedule would add to a window nothing has left yet (the pump
    # started at 0); at 24 h the first 9 U bolus leaves at 92 U/h and then basal leaves as fast
    # as it comes: from then every window fits. (The sufficient rule would wait until 48 U had
    # left, 34.5 h.)
    assert stops == [start + 33 * MS_PER_HOUR // 2]
    clock.advance_to(start + 24 * MS_PER_HOUR - 1)
    assert pump.state is PumpState.STOPPED
    clock.advance(1)
    assert pump.state is PumpState.RUNNING
    for _ in range(24):
        clock.advance(MS_PER_HOUR)
        assert pump.state is PumpState.RUNNING
        assert pump.delivered_in_last(24 * MS_PER_HOUR) <= 60
    assert pump.delivered_in_last(24 * MS_PER_HOUR) == 48
    assert [e.source for e in pump.log if e.kind is EventKind.RESUME] == [SYSTEM]


def test_the_schedule_restarts_once_not_into_a_second_stop(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """1 U/h schedule, at most 8 U in 2 h. A zero temp basal from 2 min, a 3 U/h temp basal from
    7 min, 5 U at 37 min: the room is gone at 66 min 20 s. At 2 h the first 2 minutes of basal
    start leaving the window, and a restart would fit for a moment, but then the zero temp
    basal's 5 minutes leave nothing while the schedule adds 1 U/h: the limit would stop it
    again at 2 h 2 min. The pump waits until 2 h 7 min, when the 3 U/h starts leaving."""
    pump = make_pump(
        BasalProfile.flat("1"),
        limits=limits(max_bolus_u="5", max_iob_u="30", max_2h_u="8"),
    )
    start = clock.now_ms()
    clock.advance(minutes(2))
    assert pump.handle(SetTempBasal(30, rate_u_h=u("0"))).accepted
    clock.advance(minutes(5))
    assert pump.handle(SetTempBasal(60, rate_u_h=u("3"))).accepted
    clock.advance(minutes(30))
    assert pump.handle(Bolus(u("5"))).accepted
    clock.advance(3 * MS_PER_HOUR)
    assert pump.state is PumpState.RUNNING
    stops = [e.time_ms for e in pump.log if e.kind is EventKind.DELIVERY_STOP]
    resumes = [e.time_ms for e in pump.log if e.kind is EventKind.RESUME]
    assert stops == [start + minutes(66) + 20_000]
    assert resumes == [start + 2 * MS_PER_HOUR + minutes(7)]
