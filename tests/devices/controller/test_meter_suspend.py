"""Meter low-glucose suspend: while the CGM is lost or distrusted, fingersticks may only suspend.

The radio loop's app withholds a doubted CGM and asks for a fingerstick every 30 minutes; the
controller runs the pump's limited mode (a flat basal) and, with these tests, stops insulin when
the meter shows or predicts a low, but never gives more insulin on a meter value.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from tests.devices.controller.test_aid_safety import Rig

from pumpguard.clock import MS_PER_MINUTE
from pumpguard.devices.controller import MeterReading
from pumpguard.devices.insulin import Bolus, CommandSource, EventKind, SetTempBasal


def _lost_cgm_rig() -> Rig:
    """An hour in range with the CGM, then 20 minutes without it: the pump in limited mode."""
    rig = Rig()
    rig.aid.limited_mode = True
    rig.minutes(60, bg=110.0)
    rig.minutes(20)
    assert rig.pump.limited_mode
    return rig


def _stick(rig: Rig, bg: float) -> None:
    rig.aid.receive_meter(bg, rig.clock.now_ms())


def test_meter_low_while_cgm_is_lost_suspends_with_a_zero_temp() -> None:
    rig = _lost_cgm_rig()
    _stick(rig, 62.0)  # below the threshold: max(70, 100 - 0.5 (100 - 40)) = 70
    rig.minutes(5)
    assert rig.pump.basal_u_h == 0
    temp = rig.pump.temp_basal
    assert temp is not None and temp.rate_u_h == 0
    assert temp.source is CommandSource.AUTOMATED


def test_two_falling_meter_values_predicting_a_low_suspend() -> None:
    rig = _lost_cgm_rig()
    _stick(rig, 150.0)
    rig.minutes(30)
    assert rig.pump.basal_u_h > 0  # 150 mg/dL, one value: limited mode goes on
    _stick(rig, 105.0)  # 30 min later at this slope: 60 mg/dL, below the range (100)
    rig.minutes(5)
    assert rig.pump.basal_u_h == 0
    assert "meter predicts" in (rig.aid.meter_low() or "")
    rig.minutes(24)  # the suspend holds until the next fingerstick
    assert rig.pump.basal_u_h == 0


def test_a_slow_fall_within_range_does_not_suspend() -> None:
    rig = _lost_cgm_rig()
    _stick(rig, 150.0)
    rig.minutes(30)
    _stick(rig, 140.0)  # 130 mg/dL in 30 min: in range, limited mode goes on
    rig.minutes(5)
    assert rig.aid.meter_low() is None
    assert rig.pump.limited_mode
    assert rig.pump.basal_u_h > 0


def test_meter_back_above_the_threshold_resumes_limited_mode() -> None:
    rig = _lost_cgm_rig()
    _stick(rig, 60.0)
    rig.minutes(30)
    assert rig.pump.basal_u_h == 0
    _stick(rig, 140.0)
    rig.minutes(5)
    assert rig.pump.limited_mode
    assert rig.pump.basal_u_h > 0


@pytest.mark.parametrize("values", [(400.0, 400.0), (150.0, 300.0), (250.0,)])
def test_meter_values_never_add_insulin(values: tuple[float, ...]) -> None:
    """High or rising fingersticks change nothing: no correction bolus, no temp above the
    fallback, whatever the meter says."""
    rig = _lost_cgm_rig()
    fallback = rig.pump.basal_u_h
    sent_before = len(rig.link.sent)
    for bg in values:
        _stick(rig, bg)
        rig.minutes(30)
    new = rig.link.sent[sent_before:]
    assert not [c for c in new if isinstance(c, Bolus)]
    assert all(
        c.rate_u_h is None or Fraction(c.rate_u_h) <= fallback
        for c in new
        if isinstance(c, SetTempBasal)
    )
    assert not [e for e in rig.pump.log if e.kind is EventKind.BOLUS_START]
    assert rig.pump.basal_u_h <= fallback


def test_meter_is_ignored_while_the_cgm_is_in_use() -> None:
    """The CGM is the algorithm's input when it is trusted; a stray meter value does not
    override it (the CGM's own predictive suspend does that job)."""
    rig = Rig()
    rig.aid.limited_mode = True
    rig.minutes(30, bg=110.0)
    _stick(rig, 50.0)
    rig.minutes(10, bg=110.0)
    assert rig.temp_rates() == []


def test_an_old_meter_value_says_nothing() -> None:
    rig = _lost_cgm_rig()
    rig.aid.meter_readings.append(MeterReading(rig.clock.now_ms() - 41 * MS_PER_MINUTE, 50.0))
    rig.minutes(5)
    assert rig.pump.limited_mode
    assert rig.pump.basal_u_h > 0
