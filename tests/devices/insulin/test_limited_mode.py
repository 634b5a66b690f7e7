"""Limited mode: the pump's fallback when automation is lost (link or CGM data).

Omnipod 5 "Automated Mode: Limited" delivers the lower of the adaptive and the scheduled basal
while CGM data is missing; the MiniMed 780G's "Safe Basal" leaves automation after 4 hours.
The pump learns the adaptive rate from its own log (mean basal over the last 4 hours), so the
rate needs no radio; the property below checks that limited mode never delivers above the
scheduled basal nor above a pump limit, whatever the history before it.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.devices.insulin.conftest import (
    AUTOMATED,
    LOCAL,
    REMOTE,
    START_MS,
    PumpFactory,
    limits,
    minutes,
)

from pumpguard.clinical import BasalProfile
from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE, VirtualClock
from pumpguard.devices.insulin import (
    LIMITED_MODE_MINUTES,
    AcknowledgeAlarm,
    AlarmKind,
    CancelTempBasal,
    InsulinPump,
    Rejection,
    SetTempBasal,
    StartLimitedMode,
)

FLAT = BasalProfile.flat("1")


def _temp(rate: str, n: int, minutes_: int = 30) -> SetTempBasal:
    return SetTempBasal(minutes_, Decimal(rate), None, AUTOMATED, f"t-{n}")


def test_no_history_runs_the_schedule(make_pump: PumpFactory) -> None:
    pump = make_pump(FLAT)
    assert pump.adaptive_percent() == 100
    assert pump.handle(StartLimitedMode(AUTOMATED, "lim-1")).accepted
    assert pump.limited_mode and pump.basal_u_h == 1


def test_limited_mode_runs_the_rate_automation_gave(
    clock: VirtualClock, make_pump: PumpFactory
) -> None:
    pump = make_pump(FLAT)
    for n in range(8):
        assert pump.handle(_temp("0.6", n)).accepted
        clock.advance(minutes(30))
    assert pump.adaptive_percent() == 60
    assert pump.handle(StartLimitedMode(AUTOMATED, "lim-1")).accepted
    assert pump.basal_u_h == Fraction(3, 5)
    temp = pump.temp_basal
    assert temp is not None and temp.percent == 60 and temp.command_id == "lim-1"


def test_limited_mode_is_capped_at_the_schedule(
    clock: VirtualClock, make_pump: PumpFactory
) -> None:
    pump = make_pump(FLAT)
    for n in range(8):
        assert pump.handle(_temp("3", n)).accepted
        clock.advance(minutes(30))
    assert pump.adaptive_percent() == 100
    assert pump.handle(StartLimitedMode(AUTOMATED, "lim-1")).accepted
    assert pump.basal_u_h == 1


def test_limited_mode_ends_after_its_time_with_an_alarm(
    clock: VirtualClock, make_pump: PumpFactory
) -> None:
    pump = make_pump(FLAT)
    for n in range(8):
        assert pump.handle(_temp("0.5", n)).accepted
        clock.advance(minutes(30))
    assert pump.handle(StartLimitedMode(AUTOMATED, "lim-1")).accepted
    clock.advance(minutes(LIMITED_MODE_MINUTES) - 1)
    assert pump.limited_mode and pump.basal_u_h == Fraction(1, 2)
    clock.advance(1)
    assert not pump.limited_mode and pump.temp_basal is None and pump.basal_u_h == 1
    assert AlarmKind.LIMITED_MODE_ENDED in {a.kind for a in pump.alarms}
    # Asking again does not extend the bound: the user has to look first.
    again = pump.handle(StartLimitedMode(AUTOMATED, "lim-2"))
    assert not again.accepted and again.rejection is Rejection.WRONG_STATE
    assert pump.basal_u_h == 1
    assert pump.handle(AcknowledgeAlarm(LOCAL)).accepted
    assert AlarmKind.LIMITED_MODE_ENDED not in {a.kind for a in pump.alarms}
    assert pump.handle(StartLimitedMode(AUTOMATED, "lim-3")).accepted


def test_automation_resuming_ends_limited_mode_and_its_alarm(
    clock: VirtualClock, make_pump: PumpFactory
) -> None:
    pump = make_pump(FLAT)
    assert pump.handle(StartLimitedMode(AUTOMATED, "lim-1")).accepted
    clock.advance(minutes(LIMITED_MODE_MINUTES))
    assert AlarmKind.LIMITED_MODE_ENDED in {a.kind for a in pump.alarms}
    assert pump.handle(_temp("0.4", 1)).accepted
    clock.advance(minutes(1))
    assert AlarmKind.LIMITED_MODE_ENDED not in {a.kind for a in pump.alarms}
    assert pump.handle(StartLimitedMode(AUTOMATED, "lim-2")).accepted
    assert pump.handle(CancelTempBasal(AUTOMATED, "c-1")).accepted
    assert not pump.limited_mode


def test_only_automation_asks_and_a_user_temp_basal_stands(make_pump: PumpFactory) -> None:
    pump = make_pump(FLAT)
    refused = pump.handle(StartLimitedMode(REMOTE, "lim-1"))
    assert not refused.accepted and refused.rejection is Rejection.NOT_PERMITTED
    assert pump.handle(SetTempBasal(60, Decimal("2"), None, REMOTE, "user-1")).accepted
    refused = pump.handle(StartLimitedMode(AUTOMATED, "lim-2"))
    assert not refused.accepted and refused.rejection is Rejection.NOT_PERMITTED
    assert pump.basal_u_h == 2


_LIMIT_REFUSALS = {Rejection.ALARM_ACTIVE, Rejection.TWO_HOUR_LIMIT, Rejection.DAILY_LIMIT}
_RATES = st.integers(0, 120).map(lambda q: Decimal(q) * Decimal("0.025"))
_PROFILES = st.dictionaries(st.integers(1, 47), st.integers(0, 80), max_size=5).map(
    lambda cuts: BasalProfile.from_schedule(
        {"00:00": "0.8"}
        | {
            f"{h // 2:02d}:{30 * (h % 2):02d}": str(Decimal(cuts[h]) * Decimal("0.025"))
            for h in sorted(cuts)
        }
    )
)


@settings(max_examples=60, deadline=None)
@given(
    profile=_PROFILES,
    history=st.lists(st.tuples(_RATES, st.integers(1, 12)), min_size=0, max_size=10),
    start_shift_min=st.integers(0, 24 * 60),
    steps=st.lists(st.integers(1, 90), min_size=1, max_size=12),
)
def test_limited_mode_never_exceeds_the_schedule_or_a_limit(
    profile: BasalProfile,
    history: list[tuple[Decimal, int]],
    start_shift_min: int,
    steps: list[int],
) -> None:
    clock = VirtualClock(START_MS + start_shift_min * MS_PER_MINUTE)
    lim = limits(max_basal_u_h="3", max_2h_u="15", max_tdd_u="60", max_bolus_u="5")
    pump = InsulinPump(clock, profile, limits=lim)
    for n, (rate, halves) in enumerate(history):
        pump.handle(SetTempBasal(30 * halves, rate, None, AUTOMATED, f"h-{n}"))
        clock.advance(halves * 30 * MS_PER_MINUTE)
    started = pump.handle(StartLimitedMode(AUTOMATED, "lim"))
    if not started.accepted:
        # Only a limit the history ran into may refuse it (a latched limit stop, or no room
        # left in a rolling total for even the reduced basal).
        assert started.rejection in _LIMIT_REFUSALS, started
    for step in steps:
        now = clock.now_ms()
        scheduled = profile.rate_at(Fraction(now % (24 * MS_PER_HOUR), MS_PER_MINUTE))
        if pump.limited_mode:
            assert pump.basal_u_h <= Fraction(scheduled), (pump.basal_u_h, scheduled)
        assert pump.basal_u_h <= Fraction(lim.max_basal_u_h)
        assert pump.delivered_in_last(2 * MS_PER_HOUR) <= Fraction(lim.max_2h_u)
        assert pump.delivered_in_last(24 * MS_PER_HOUR) <= Fraction(lim.max_tdd_u)
        clock.advance(step * MS_PER_MINUTE)
