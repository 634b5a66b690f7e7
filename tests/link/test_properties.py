"""Properties over random interleavings of honest use and attacks, and the energy arithmetic."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.link.conftest import PUMP, make_secure

from pumpguard.devices.insulin import (
    Bolus,
    CancelTempBasal,
    Command,
    CommandSource,
    EventKind,
    Resume,
    SetTempBasal,
    Suspend,
)
from pumpguard.link import NRF52_CLASS, EnergyMeter, EnergyUse, airtime_us

_REMOTE = (CommandSource.REMOTE, CommandSource.AUTOMATED)


def _honest(kind: int, n: int) -> Command:
    command_id = f"h-{n}"
    return [
        SetTempBasal(30, Decimal("0.5"), None, CommandSource.AUTOMATED, command_id),
        CancelTempBasal(CommandSource.AUTOMATED, command_id),
        Suspend(CommandSource.REMOTE, command_id),
        Resume(CommandSource.REMOTE, command_id),
        Bolus(Decimal("0.1"), CommandSource.REMOTE, command_id),
    ][kind]


actions = st.lists(
    st.one_of(
        st.tuples(st.just("honest"), st.integers(0, 4)),
        st.tuples(st.just("replay"), st.integers(0, 10_000)),
        st.tuples(
            st.just("mutate"), st.integers(0, 10_000), st.integers(0, 63), st.integers(1, 255)
        ),
        st.tuples(st.just("advance"), st.integers(1, 30)),
        st.tuples(st.just("jam"), st.integers(1, 50)),
        st.tuples(st.just("reconnect")),
    ),
    min_size=1,
    max_size=14,
)


@settings(max_examples=40, deadline=None)
@given(actions)
def test_attacks_never_add_a_command_to_the_pump(script: list[tuple[object, ...]]) -> None:
    system = make_secure(seed=31)
    system.pair_controller()
    assert system.controller.connect(PUMP)
    honest = 0
    for action in script:
        captures = system.adversary.captures
        match action:
            case ("honest", int(kind)):
                honest += 1
                system.controller.send(_honest(kind, honest))
            case ("replay", int(i)) if captures:
                system.adversary.replay(captures[i % len(captures)])
            case ("mutate", int(i), int(pos), int(xor)) if captures:
                data = bytearray(captures[i % len(captures)].data)
                data[pos % len(data)] ^= xor
                system.adversary.inject(bytes(data))
            case ("advance", int(minutes)):
                system.clock.advance(minutes * 60_000)
            case ("jam", int(ms)):
                system.adversary.jam(period_ms=ms, on_ms=ms, end_ms=system.clock.now_ms() + ms)
            case ("reconnect",):
                system.controller.connect(PUMP)
    radio = [e for e in system.pump.log if e.source in _REMOTE and e.command_id is not None]
    assert len({e.command_id for e in radio}) <= honest
    assert not [e for e in radio if e.kind is EventKind.COMMAND_REPLAYED]


def test_energy_meter_charges_the_datasheet_figures() -> None:
    meter = EnergyMeter(NRF52_CLASS)
    meter.wake()
    assert meter.charge_uc[EnergyUse.WAKE] == pytest.approx(360 * 3.7 / 1000)
    assert meter.charge_uc[EnergyUse.RX] == pytest.approx(140 * 5.4 / 1000)
    meter.receive(31)
    assert meter.charge_uc[EnergyUse.RX] == pytest.approx((140 + airtime_us(31)) * 5.4 / 1000)
    assert airtime_us(31) == 328
    meter.transmit(31)
    assert meter.charge_uc[EnergyUse.TX] == pytest.approx((140 + 150 + 328) * 5.3 / 1000)
    meter.x25519()
    assert meter.charge_uc[EnergyUse.CRYPTO] == pytest.approx(14_200 * 3.7 / 1000)
    before = meter.charge_uc[EnergyUse.CRYPTO]
    meter.aead(14)  # one data block: B0, one CBC-MAC block, one CTR block, the tag's keystream
    assert meter.charge_uc[EnergyUse.CRYPTO] - before == pytest.approx(5 * 7.2 * 3.7 / 1000)
    assert meter.wakes == 1
    assert meter.total_mj == pytest.approx(meter.total_uc * 3.0 / 1000)
