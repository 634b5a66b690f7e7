"""The legacy profile reproduces the published attacks (it is meant to)."""

from __future__ import annotations

from decimal import Decimal

from tests.link.conftest import CGM, CONTROLLER, METER, PUMP, LegacySystem

from pumpguard.devices.insulin import Bolus, CommandSource, PumpState, Suspend
from pumpguard.devices.sensors import CgmReading
from pumpguard.link import AppKind, LegacyFrame, LegacyRemoteEndpoint, LinkEventCode, Role
from pumpguard.link.pdu import (
    CgmMeasurement,
    decode_cgm,
    decode_command,
    encode_cgm,
    encode_command,
)


def test_a_bolus_goes_through(legacy: LegacySystem) -> None:
    reply = legacy.controller.send(Bolus(Decimal("1.0"), CommandSource.REMOTE, "c-1"))
    assert reply is not None and reply.accepted and reply.bolus_id == 1


def test_eavesdropping_reads_serials_doses_and_glucose(legacy: LegacySystem) -> None:
    legacy.controller.send(Bolus(Decimal("2.35"), CommandSource.REMOTE, "c-1"))
    legacy.cgm.report(CgmReading(legacy.clock.now_ms(), 187.0, 1))
    frames = [c.legacy() for c in legacy.adversary.captures]
    seen = [f for f in frames if f is not None]
    assert {f.src for f in seen} >= {PUMP, CONTROLLER, CGM}
    command = next(f for f in seen if f.kind is AppKind.COMMAND_REMOTE)
    bolus = decode_command(command.payload, CommandSource.REMOTE, None).command
    assert isinstance(bolus, Bolus) and bolus.amount_u == Decimal("2.35")
    reading = next(f for f in seen if f.kind is AppKind.CGM_MEASUREMENT)
    assert decode_cgm(reading.payload, with_crc=False).glucose_mgdl == 187


def test_a_recorded_remote_bolus_replays(legacy: LegacySystem) -> None:
    legacy.controller.send(Bolus(Decimal("1.0"), CommandSource.REMOTE, "c-1"))
    recorded = next(
        c
        for c in legacy.adversary.captures
        if c.legacy() and c.legacy().kind is AppKind.COMMAND_REMOTE  # type: ignore[union-attr]
    )
    legacy.clock.advance(10 * 60_000)
    legacy.adversary.replay(recorded)
    boluses = [b for b in (legacy.pump.bolus(i) for i in (1, 2, 3)) if b is not None]
    assert len(boluses) == 2
    assert legacy.log.with_code(LinkEventCode.REPLAY) == ()


def test_a_forged_command_with_a_sniffed_serial_is_obeyed(legacy: LegacySystem) -> None:
    legacy.controller.read_status()
    sniffed = {c.legacy().src for c in legacy.adversary.captures if c.legacy()}  # type: ignore[union-attr]
    assert CONTROLLER in sniffed
    forged = LegacyFrame(
        AppKind.COMMAND_REMOTE, PUMP, CONTROLLER, encode_command(Suspend(CommandSource.REMOTE))
    )
    legacy.adversary.inject(forged.encode())
    assert legacy.pump.state is PumpState.SUSPENDED


def test_a_scan_finds_the_pump_without_knowing_its_serial(legacy: LegacySystem) -> None:
    attacker = LegacyRemoteEndpoint(
        legacy.medium,
        address=0x0BAD00,
        pump_address=0,
        sink=legacy.log,
        name="attacker",
        position_m=(3.0, 3.0),
    )
    assert attacker.scan() == [PUMP]


def test_an_unpaired_serial_is_refused_and_logged(legacy: LegacySystem) -> None:
    stranger = LegacyFrame(
        AppKind.COMMAND_REMOTE, PUMP, 0x0BAD00, encode_command(Suspend(CommandSource.REMOTE))
    )
    legacy.adversary.inject(stranger.encode())
    assert legacy.pump.state is PumpState.RUNNING
    assert len(legacy.log.with_code(LinkEventCode.UNKNOWN_SENDER)) == 1


def test_a_meter_remote_is_spoofed_once_its_serial_is_heard(legacy: LegacySystem) -> None:
    meter = LegacyRemoteEndpoint(
        legacy.medium,
        address=METER,
        pump_address=PUMP,
        sink=legacy.log,
        role=Role.METER_REMOTE,
        name="meter",
        position_m=(0.5, 0.5),
    )
    legacy.pump_ep.pair_by_serial(METER, Role.METER_REMOTE)
    meter.send(Bolus(Decimal("0.5"), CommandSource.REMOTE, "m-1"))
    heard = {c.legacy().src for c in legacy.adversary.captures if c.legacy()}  # type: ignore[union-attr]
    assert METER in heard
    legacy.clock.advance(10 * 60_000)
    spoofed = LegacyFrame(
        AppKind.COMMAND_REMOTE,
        PUMP,
        METER,
        encode_command(Bolus(Decimal("3.0"), CommandSource.REMOTE)),
    )
    legacy.adversary.inject(spoofed.encode())
    assert legacy.pump.bolus(2) is not None


def test_spoofed_cgm_readings_reach_the_controller(legacy: LegacySystem) -> None:
    fake = LegacyFrame(
        AppKind.CGM_MEASUREMENT, CONTROLLER, CGM, encode_cgm(CgmMeasurement(350, 1), with_crc=False)
    )
    legacy.adversary.inject(fake.encode())
    assert [r.glucose_mgdl for r in legacy.controller.readings] == [350.0]
