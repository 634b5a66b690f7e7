"""The device loop's own logic, without a network: commands through the firmware's door and
sequence numbers that survive a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pumpguard.clinical import PumpKind, load_library
from pumpguard.clock import VirtualClock
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.devices.infusion import PumpState
from pumpguard.security_events import SecurityEventLog
from pumpguard.server.device_runtime import SeqReservation, SimulatedPump
from pumpguard.transport import (
    AckOutcome,
    CommandAction,
    CommandMessage,
    CommandOutcome,
    DeviceEvent,
    Session,
)
from pumpguard.transport.session import MessageHandler


async def _unreachable(handler: MessageHandler) -> Session:
    raise ConnectionRefusedError("no server in this test")


def _pump(clock: VirtualClock, seq: SeqReservation | None = None) -> SimulatedPump:
    pump = SimulatedPump(
        "PUMP-0001",
        PumpKind.LVP,
        _unreachable,
        clock=clock,
        events=SecurityEventLog(),
        library=load_library(EXAMPLE_LIBRARY),
        care_area="ICU",
        seq=seq,
    )
    pump.power_on()
    return pump


def _command(action: CommandAction, **parameters: str) -> CommandMessage:
    return CommandMessage(
        device_id="PUMP-0001",
        command_id=f"c-{action.value}",
        action=action,
        parameters=parameters,
        sent_at_ms=0,
    )


def _execute(pump: SimulatedPump, command: CommandMessage) -> CommandOutcome:
    return asyncio.run(pump._execute(command))


def test_a_prefilled_order_waits_for_the_clinician_and_is_reported() -> None:
    pump = _pump(VirtualClock(1_000_000))
    outcome = _execute(
        pump,
        _command(
            CommandAction.PREFILL_ORDER,
            drug="Heparin",
            dose="18",
            dose_unit="units/kg/h",
            vtbi_ml="250",
            weight_kg="80",
            patient_id="100001",
        ),
    )
    assert outcome.outcome is AckOutcome.ACCEPTED
    assert pump.firmware.state is PumpState.PROGRAMMING  # never started from the network
    events = [m for m in pump.outbox.pending if isinstance(m, DeviceEvent)]
    assert events[-1].event.value == "programmed"


def test_commands_the_firmware_or_the_loop_refuse() -> None:
    pump = _pump(VirtualClock(1_000_000))
    missing = _execute(pump, _command(CommandAction.PREFILL_ORDER, drug="Heparin"))
    assert (missing.outcome, missing.reason) == (
        AckOutcome.REJECTED,
        "parameters drug and dose_unit are required",
    )
    bad = _execute(
        pump,
        _command(
            CommandAction.PREFILL_ORDER,
            drug="Heparin",
            dose="-1",
            dose_unit="units/kg/h",
            vtbi_ml="250",
        ),
    )
    assert bad.reason == "parameter dose must be a positive number"
    resume = _execute(pump, _command(CommandAction.RESUME))
    assert (resume.outcome, resume.reason) == (
        AckOutcome.REJECTED,
        "delivery is restarted at the pump only",
    )
    library = _execute(pump, _command(CommandAction.INSTALL_LIBRARY))
    assert library.outcome is AckOutcome.REJECTED
    status = _execute(pump, _command(CommandAction.REQUEST_STATUS))
    assert status.outcome is AckOutcome.ACCEPTED


def test_sequence_numbers_keep_increasing_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "outbox-seq"
    clock = VirtualClock(1_000_000)
    first = _pump(clock, SeqReservation(state))
    for _ in range(700):  # more than half a reserved block: the reservation moves ahead
        first.send_status()
        first.step()
    used = first.outbox.next_seq - 1
    second = _pump(clock, SeqReservation(state))  # the pump restarts, its outbox lost
    assert second.outbox.next_seq > used
