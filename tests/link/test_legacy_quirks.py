"""The SweynTooth quirk of the legacy pump radio: explicit configuration, never the default.

With ``LegacyQuirks.radio_hangs_on_bad_length`` an oversized frame deadlocks the legacy pump's
radio until a power cycle; the firmware behind it goes on delivering what it was delivering.
Without the quirk (the default, and always in the secure profile) the frame is refused and
logged. In both, no frame changes the pump's delivery state.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.link.conftest import CONTROLLER, PUMP, LegacySystem, make_legacy

from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE
from pumpguard.devices.insulin import CommandSource, PumpState, SetTempBasal
from pumpguard.link import LEGACY_RADIO_QUIRKS, LegacyQuirks, LinkEventCode
from pumpguard.link.frames import MAX_FRAME_BYTES

HEAD = bytes([0x10]) + PUMP.to_bytes(3, "big") + CONTROLLER.to_bytes(3, "big")
OVERSIZED = HEAD + bytes(range(80))


def _therapy(system: LegacySystem) -> tuple[object, ...]:
    p = system.pump
    return (p.state, p.temp_basal, p.bolus(1), p.total_u_h, len(p.log))


def _temp(n: int) -> SetTempBasal:
    return SetTempBasal(60, Decimal("0.5"), None, CommandSource.AUTOMATED, f"t-{n}")


def test_without_the_quirk_an_oversized_frame_is_refused_and_logged() -> None:
    system = make_legacy()
    system.adversary.inject(OVERSIZED)
    assert not system.pump_ep.radio_hung
    assert system.log.with_code(LinkEventCode.FRAME_MALFORMED)
    reply = system.controller.send(_temp(1))
    assert reply is not None and reply.accepted


def test_with_the_quirk_the_radio_hangs_and_therapy_runs_on() -> None:
    system = make_legacy(quirks=LEGACY_RADIO_QUIRKS)
    assert system.controller.send(_temp(1)) is not None
    before = _therapy(system)
    events = len(system.log)
    delivered = system.pump.delivered_u
    system.adversary.inject(OVERSIZED)
    assert system.pump_ep.radio_hung
    assert _therapy(system) == before, "the frame changed nothing on the pump"
    assert len(system.log) == events, "the hang is silent: that is the weakness"
    assert system.controller.send(_temp(2)) is None, "the controller can no longer command"
    assert system.controller.read_status() is None
    system.clock.advance(30 * MS_PER_MINUTE)
    assert system.pump.state is PumpState.RUNNING
    assert system.pump.delivered_u - delivered == Fraction(1, 4)  # 0.5 U/h for 30 min
    assert system.pump.temp_basal is not None and system.pump.temp_basal.command_id == "legacy-1"


def test_the_user_power_cycle_brings_the_radio_back() -> None:
    system = make_legacy(quirks=LEGACY_RADIO_QUIRKS)
    system.adversary.inject(OVERSIZED)
    after = LEGACY_RADIO_QUIRKS.power_cycle_after_ms
    assert after is not None
    system.clock.advance(after - 1)
    assert system.controller.send(_temp(1)) is None
    system.clock.advance(1)
    reply = system.controller.send(_temp(2))
    assert reply is not None and reply.accepted
    (start, end), *_ = system.pump_ep.hangs
    assert end is not None and end - start == after


def test_a_hang_without_a_timed_power_cycle_waits_for_the_button() -> None:
    system = make_legacy(
        quirks=LegacyQuirks(radio_hangs_on_bad_length=True, power_cycle_after_ms=None)
    )
    system.adversary.inject(OVERSIZED)
    system.clock.advance(48 * MS_PER_HOUR)
    assert system.pump_ep.radio_hung
    system.pump_ep.power_cycle()
    reply = system.controller.send(_temp(1))
    assert reply is not None and reply.accepted


QUIRKY = make_legacy(seed=9, quirks=LEGACY_RADIO_QUIRKS)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=90),
            st.binary(min_size=MAX_FRAME_BYTES - 6, max_size=250).map(lambda b: HEAD + b),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_malformed_frames_never_change_therapy_even_when_the_radio_hangs(
    batch: list[bytes],
) -> None:
    """The fuzz property, with the quirk on: a hung radio is the only effect. (Random bytes
    almost never form a valid CRC-checked command from the paired serial; the legacy fuzz test
    in test_fuzz.py covers the valid-command case.)"""
    system = QUIRKY
    before = _therapy(system)
    for data in batch:
        system.adversary.inject(data)
    assert _therapy(system) == before
    system.pump_ep.power_cycle()
