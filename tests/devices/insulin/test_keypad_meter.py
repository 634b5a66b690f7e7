"""Fingersticks entered at the pump's keypad while it runs limited mode (link lost): they may
hold the limited-mode basal at zero before a low, never add insulin, and are refused from afar
or when they are not a meter's value."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.devices.insulin.conftest import AUTOMATED, LOCAL, REMOTE, PumpFactory, minutes

from pumpguard.clinical import BasalProfile
from pumpguard.clock import VirtualClock
from pumpguard.devices.insulin import (
    METER_MAX_AGE_MIN,
    EventKind,
    InsulinPump,
    MeterGlucose,
    MeterSuspendRule,
    Rejection,
    StartLimitedMode,
)

FLAT = BasalProfile.flat("1")
RULE = MeterSuspendRule(threshold_mgdl=75.0, floor_mgdl=100.0)


def _limited(clock: VirtualClock, make_pump: PumpFactory) -> InsulinPump:
    pump = make_pump(FLAT)
    pump.meter_rule = RULE
    assert pump.handle(StartLimitedMode(AUTOMATED, "lim-1")).accepted
    assert pump.basal_u_h == 1
    return pump


def test_a_low_fingerstick_holds_limited_mode_at_zero(
    clock: VirtualClock, make_pump: PumpFactory
) -> None:
    pump = _limited(clock, make_pump)
    result = pump.handle(MeterGlucose(Decimal(68)))
    assert result.accepted and "suspend" in result.message
    assert pump.basal_u_h == 0 and pump.limited_mode
    entry = list(pump.log)[-1]
    assert entry.kind is EventKind.METER_GLUCOSE and entry.after is not None
    assert entry.after.basal_u_h == 0
    clock.advance(minutes(30))
    assert pump.handle(MeterGlucose(Decimal(130))).accepted
    assert pump.basal_u_h == 1


def test_a_falling_pair_holds_and_the_hold_runs_out(
    clock: VirtualClock, make_pump: PumpFactory
) -> None:
    pump = _limited(clock, make_pump)
    assert pump.handle(MeterGlucose(Decimal(160))).accepted
    assert pump.basal_u_h == 1
    clock.advance(minutes(30))
    assert pump.handle(MeterGlucose(Decimal(120))).accepted  # predicts 80 < 100 in 30 min
    assert pump.basal_u_h == 0
    clock.advance(minutes(METER_MAX_AGE_MIN) - 1)
    assert pump.basal_u_h == 0
    clock.advance(1)
    assert pump.basal_u_h == 1 and pump.limited_mode


def test_outside_limited_mode_a_fingerstick_is_only_logged(make_pump: PumpFactory) -> None:
    pump = make_pump(FLAT)
    pump.meter_rule = RULE
    assert pump.handle(MeterGlucose(Decimal(50))).accepted
    assert pump.basal_u_h == 1


def test_fingersticks_are_entered_at_the_pump_only_and_must_be_a_meters_value(
    make_pump: PumpFactory,
) -> None:
    pump = make_pump(FLAT)
    refused = pump.handle(MeterGlucose(Decimal(60), REMOTE, "r-1"))
    assert not refused.accepted and refused.rejection is Rejection.NOT_PERMITTED
    for bad in (Decimal("NaN"), Decimal(5), Decimal(900), True, "80", math.inf):
        result = pump.handle(MeterGlucose(bad))  # type: ignore[arg-type]
        assert not result.accepted and result.rejection in (
            Rejection.INVALID,
            Rejection.OUT_OF_RANGE,
        ), bad
    assert pump.basal_u_h == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(20, 600)), min_size=1, max_size=12))
def test_keypad_fingersticks_never_add_insulin(steps: list[tuple[int, int]]) -> None:
    clock = VirtualClock(1_700_000_000_000)
    pump = InsulinPump(clock, FLAT, meter_rule=RULE)
    assert pump.handle(StartLimitedMode(AUTOMATED, "lim-1")).accepted
    limited_rate = pump.basal_u_h
    for wait, glucose in steps:
        clock.advance(minutes(wait))
        pump.handle(MeterGlucose(Decimal(glucose), LOCAL))
        assert pump.basal_u_h <= limited_rate
        assert pump.basal_u_h in (Fraction(0), limited_rate)
