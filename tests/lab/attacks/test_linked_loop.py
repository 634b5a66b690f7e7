"""The closed loop over the radio: deterministic twins, both profiles, history over the air."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from itertools import pairwise

import numpy as np

from pumpguard.devices.insulin import EventKind, StartLimitedMode
from pumpguard.lab.linked_loop import LinkedLoop, LinkedLoopConfig, LoopEventCode
from pumpguard.link import Adversary, LinkEventCode, LinkProfile

SHORT = 10 * 60


def _run(profile: LinkProfile, seed: int = 1) -> LinkedLoop:
    loop = LinkedLoop(LinkedLoopConfig(profile, minutes=SHORT, seed=seed))
    loop.run()
    return loop


def test_the_same_config_gives_the_same_patient() -> None:
    a, b = _run(LinkProfile.SECURE), _run(LinkProfile.SECURE)
    assert np.array_equal(a.bg, b.bg) and np.array_equal(a.insulin_u, b.insulin_u)


def test_legacy_and_secure_deliver_the_same_therapy_on_a_quiet_radio() -> None:
    legacy, secure = _run(LinkProfile.LEGACY), _run(LinkProfile.SECURE)
    assert np.array_equal(legacy.bg, secure.bg)
    assert secure.radio.sent == secure.radio.answered > 0
    assert not secure.radio.foreign()
    assert len(secure.taken_readings) == len(secure.sent_readings) == SHORT // 5


def test_commands_and_history_go_over_the_radio_and_are_lost_when_jammed() -> None:
    loop = LinkedLoop(LinkedLoopConfig(LinkProfile.SECURE, minutes=3 * 60))
    loop.run_until(60)
    sent, reads = loop.radio.sent, loop.radio.history_reads
    adversary = Adversary(loop.medium, position_m=(2.0, 2.0))
    adversary.jam(period_ms=10, on_ms=10, end_ms=loop.clock.now_ms() + 60 * 60_000)
    loop.run()
    assert loop.radio.history_reads > reads and loop.radio.history_lost > 0
    assert loop.radio.sent >= sent
    assert loop.events.with_code(LinkEventCode.LINK_LOST)
    assert loop.pump.state.value == "running"


def test_a_meal_bolus_reaches_the_pump_as_a_radio_command() -> None:
    loop = LinkedLoop(LinkedLoopConfig(LinkProfile.LEGACY, minutes=8 * 60))
    loop.run()
    kinds = {type(c.command).__name__ for i, c in enumerate(loop.link.pump.handled)}
    assert "Bolus" in kinds
    assert len(loop.radio.own) == len(loop.link.pump.handled)


def test_the_plausibility_gate_stays_quiet_on_fast_post_meal_rises() -> None:
    loop = LinkedLoop(LinkedLoopConfig(LinkProfile.SECURE, patient="child#008", minutes=24 * 60))
    loop.run()
    assert not loop.events.with_code(LoopEventCode.CGM_IMPLAUSIBLE)
    assert len(loop.used_readings) == len(loop.taken_readings)


def test_the_legacy_app_has_no_plausibility_gate() -> None:
    loop = LinkedLoop(LinkedLoopConfig(LinkProfile.LEGACY, minutes=60))
    loop.sensor_offset_mgdl = 150.0
    loop.run_until(30)
    loop.sensor_offset_mgdl = 0.0
    loop.run()
    assert loop.plausibility is None
    assert len(loop.used_readings) == len(loop.taken_readings)


def _limited_entries(loop: LinkedLoop) -> list[str]:
    return [e.command_id or "" for e in loop.pump.log if e.kind is EventKind.LIMITED_MODE]


def test_a_lost_link_puts_the_pump_in_limited_mode_not_the_full_schedule() -> None:
    """Jammed for an hour: the pump's own watchdog (link loss) starts limited mode, at a rate
    learned from its delivery, never above the schedule; automation takes over again after."""
    loop = LinkedLoop(LinkedLoopConfig(LinkProfile.SECURE, minutes=5 * 60))
    loop.run_until(4 * 60)
    adversary = Adversary(loop.medium, position_m=(2.0, 2.0))
    adversary.jam(period_ms=10, on_ms=10, end_ms=loop.clock.now_ms() + 45 * 60_000)
    loop.run_until(4 * 60 + 40)
    assert loop.pump.limited_mode
    assert any(c.startswith("link-loss-") for c in _limited_entries(loop))
    assert loop.pump.basal_u_h <= Fraction(Decimal(str(loop.settings.basal_u_h)))
    loop.run()
    assert not loop.pump.limited_mode


def test_withheld_readings_put_the_pump_in_limited_mode_over_the_radio() -> None:
    """The secure app withholds readings it doubts; the controller (link still up) asks the
    pump for limited mode with a radio command."""
    loop = LinkedLoop(LinkedLoopConfig(LinkProfile.SECURE, minutes=4 * 60))
    loop.run_until(2 * 60)
    loop.sensor_offset_mgdl = 150.0
    loop.run()
    assert loop.events.with_code(LoopEventCode.CGM_IMPLAUSIBLE)
    assert _limited_entries(loop)
    assert any(
        isinstance(c.command, StartLimitedMode) and c.result.accepted
        for c in loop.link.pump.handled
    )


def test_a_doubted_cgm_hands_the_fingersticks_to_the_controller() -> None:
    """While the app withholds a doubted CGM, the fingersticks it asks for (at once, then every
    30 minutes) go to the controller, which may only suspend on them (AidController
    ``receive_meter``)."""
    loop = LinkedLoop(LinkedLoopConfig(LinkProfile.SECURE, minutes=3 * 60))
    loop.run_until(60)
    loop.sensor_offset_mgdl = 120.0
    loop.run()
    assert loop.events.with_code(LoopEventCode.CGM_IMPLAUSIBLE)
    sticks = loop.controller.meter_readings
    assert len(sticks) >= 3
    gaps = {b.time_ms - a.time_ms for a, b in pairwise(sticks)}
    assert gaps == {30 * 60_000}
