"""The delivery engine's shortcuts change nothing: exact totals whatever the rates, and the same
delivery and log whether the pump is read every minute or only when commanded.

The engine computes its next event once per change and skips timed events until it is due, and
its ledger keeps integer amounts over a common denominator that widens when a rate needs it (an
extended bolus over 210 minutes delivers k/70 U/h, which 0.025 U/h steps do not divide).
"""

from __future__ import annotations

from fractions import Fraction

from pumpguard.clinical import BasalProfile
from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE, VirtualClock
from pumpguard.devices.insulin import (
    Bolus,
    Command,
    EventKind,
    ExtendedBolus,
    InsulinPump,
    PumpState,
    SetTempBasal,
)

from .conftest import AUTOMATED, DAY_PROFILE, START_MS, SYSTEM, limits, minutes, u


def test_an_extended_bolus_over_an_odd_duration_keeps_the_totals_exact() -> None:
    clock = VirtualClock(START_MS)
    pump = InsulinPump(clock, BasalProfile.flat("0.825"), limits=limits())
    assert pump.handle(Bolus(u("1"))).accepted
    clock.advance(minutes(30))
    assert pump.handle(ExtendedBolus(u("1.15"), 210)).accepted  # 23/70 U/h
    clock.advance(minutes(100) + 7)
    basal = Fraction(825, 1000) * (minutes(130) + 7) / MS_PER_HOUR
    extended = Fraction(115, 100) * (minutes(100) + 7) / minutes(210)
    assert pump.delivered_u == 1 + basal + extended
    assert (
        pump.delivered_in_last(minutes(125))
        == pump.delivered_u - 1 - Fraction(825, 1000) * (minutes(5) + 7) / MS_PER_HOUR
    )
    assert pump.reservoir_u == 300 - pump.delivered_u
    clock.advance(minutes(200))
    assert pump.delivered_u == 1 + Fraction(825, 1000) * (
        minutes(330) + 7
    ) / MS_PER_HOUR + Fraction(115, 100)


def _script() -> list[tuple[int, Command | None]]:
    """(minutes to wait, then this command): a day with boluses, temps, a limit stop."""
    return [
        (7, Bolus(u("3.5"))),
        (23, ExtendedBolus(u("2.35"), 210)),
        (41, SetTempBasal(30, percent=150, source=AUTOMATED, command_id="t1")),
        (95, SetTempBasal(60, rate_u_h=u("2.5"), source=AUTOMATED, command_id="t2")),
        (130, Bolus(u("4"))),
        (17, Bolus(u("4"))),
        (9, SetTempBasal(60, rate_u_h=u("6"), source=AUTOMATED, command_id="t3")),
        (300, None),
        (480, Bolus(u("1.2"))),
        (600, None),
    ]


def _run(read_every_minute: bool) -> InsulinPump:
    clock = VirtualClock(START_MS)
    pump = InsulinPump(
        clock, DAY_PROFILE, limits=limits(max_bolus_u="5", max_2h_u="12", max_iob_u="30")
    )
    for wait, command in _script():
        for _ in range(wait):
            clock.advance(MS_PER_MINUTE)
            if read_every_minute:
                pump.status()
        if command is not None:
            pump.handle(command)
    pump.status()
    return pump


def test_reading_the_pump_every_minute_changes_nothing() -> None:
    often, seldom = _run(True), _run(False)
    assert often.delivered_u == seldom.delivered_u
    assert often.reservoir_u == seldom.reservoir_u
    assert often.delivered_in_last(2 * MS_PER_HOUR) == seldom.delivered_in_last(2 * MS_PER_HOUR)
    assert [(e.time_ms, e.kind, e.after) for e in often.log.since(0)] == [
        (e.time_ms, e.kind, e.after) for e in seldom.log.since(0)
    ]
    # the script reaches the 2-hour limit: the stop and the pump's own fallback to the
    # scheduled basal are part of what is compared
    kinds = [(e.kind, e.source) for e in often.log.since(0)]
    assert (EventKind.DELIVERY_STOP, SYSTEM) in kinds and (EventKind.RESUME, SYSTEM) in kinds
    assert often.state is PumpState.RUNNING
