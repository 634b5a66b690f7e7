"""What the pump endpoints record for the attack catalogue, and the CGM's session renewal."""

from __future__ import annotations

from decimal import Decimal

from tests.link.conftest import CONTROLLER, PUMP, LegacySystem, SecureSystem

from pumpguard.devices.insulin import Bolus, CommandSource
from pumpguard.devices.sensors import CgmReading
from pumpguard.link import LegacyFrame
from pumpguard.link.pdu import AppKind, encode_command

MINUTE = 60_000


def test_the_legacy_pump_records_every_command_it_hands_to_the_firmware(
    legacy: LegacySystem,
) -> None:
    legacy.controller.send(Bolus(Decimal("1.5"), CommandSource.REMOTE, "c-1"))
    forged = Bolus(Decimal(3), CommandSource.REMOTE, "x")
    frame = LegacyFrame(AppKind.COMMAND_REMOTE, PUMP, CONTROLLER, encode_command(forged))
    legacy.adversary.inject(frame.encode())
    handled = legacy.pump_ep.handled
    assert [type(h.command) for h in handled] == [Bolus, Bolus]
    assert all(h.peer == CONTROLLER for h in handled)
    assert handled[0].result.accepted
    assert handled[1].command.amount_u == Decimal(3)  # type: ignore[union-attr]


def test_the_secure_pump_records_only_authenticated_commands(secure: SecureSystem) -> None:
    assert secure.controller.send(Bolus(Decimal(1), CommandSource.REMOTE, "c-1"))
    forged = LegacyFrame(
        AppKind.COMMAND_REMOTE, PUMP, CONTROLLER, encode_command(Bolus(Decimal(3)))
    ).encode()
    secure.adversary.inject(forged)
    assert [h.command.amount_u for h in secure.pump_ep.handled] == [Decimal(1)]  # type: ignore[union-attr]


def test_a_cgm_gets_through_again_after_a_long_jam(secure: SecureSystem) -> None:
    secure.pair_cgm()
    assert secure.cgm.connect(secure.controller.address)
    clock = secure.clock

    def report_every_5_min(count: int) -> None:
        for _ in range(count):
            clock.advance(5 * MINUTE)
            secure.cgm.report(CgmReading(clock.now_ms(), 110.0, 1))
            secure.medium.settle()

    report_every_5_min(2)
    taken = len(secure.controller.readings)
    assert taken == 2
    secure.adversary.jam(period_ms=10, on_ms=10, end_ms=clock.now_ms() + 120 * MINUTE)
    report_every_5_min(23)
    assert len(secure.controller.readings) == taken
    report_every_5_min(12)
    assert len(secure.controller.readings) > taken
