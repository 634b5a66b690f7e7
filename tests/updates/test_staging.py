"""The apply rule: stage, apply only on an idle pump, A/B firmware with automatic rollback."""

from __future__ import annotations

from decimal import Decimal

import pytest
from tests.updates.conftest import Lab, installed_library, library_bytes, parse_library_bytes

from pumpguard.clinical import PumpKind
from pumpguard.devices.infusion import (
    Clear,
    Confirm,
    ContinuousProgramme,
    InfusionPump,
    InstallLibrary,
    Pause,
    PowerOn,
    Program,
    PumpState,
    SetCareArea,
)
from pumpguard.updates import (
    ApplyDecision,
    FirmwareSlots,
    Installed,
    Slot,
    StagedUpdate,
    UpdateKind,
    UpdatePhase,
    UpdateStateError,
    VerifiedUpdate,
    can_apply,
)

SALINE = ContinuousProgramme("Saline", Decimal(100), "mL/h", Decimal(250))


@pytest.mark.parametrize(
    ("state", "decision"),
    [
        (PumpState.IDLE, ApplyDecision.APPLY),
        (PumpState.INFUSING, ApplyDecision.WAIT_INFUSING),
        (PumpState.PAUSED, ApplyDecision.WAIT_INFUSING),
        (PumpState.KVO, ApplyDecision.WAIT_INFUSING),
        (PumpState.PROGRAMMING, ApplyDecision.WAIT_PROGRAMMING),
        (PumpState.OFF, ApplyDecision.WAIT_NOT_READY),
        (PumpState.FAILED, ApplyDecision.WAIT_NOT_READY),
    ],
)
def test_only_an_idle_pump_applies(state: PumpState, decision: ApplyDecision) -> None:
    assert can_apply(state) is decision


def test_every_pump_state_has_a_decision() -> None:
    assert {can_apply(state) for state in PumpState} <= set(ApplyDecision)


def _verified_library(lab: Lab, version: int = 2) -> VerifiedUpdate:
    path = lab.publish_library(version)
    outcome = lab.client(lab.mirror()).fetch(path, installed_library(version - 1))
    assert isinstance(outcome, VerifiedUpdate)
    return outcome


def _verified_firmware(lab: Lab, version: int = 5) -> VerifiedUpdate:
    lab.repo.propose_firmware("lvp-main", version, b"image " + bytes([version]))
    lab.repo.approve(UpdateKind.FIRMWARE, lab.signer("firmware-1"))
    lab.repo.approve(UpdateKind.FIRMWARE, lab.signer("firmware-2"))
    path = lab.repo.publish(UpdateKind.FIRMWARE).path
    outcome = lab.client(lab.mirror()).fetch(
        path, Installed(UpdateKind.FIRMWARE, "lvp-main", version - 1)
    )
    assert isinstance(outcome, VerifiedUpdate)
    return outcome


def test_a_library_never_changes_on_an_infusing_pump(lab: Lab) -> None:
    """Drives the real hospital pump firmware: the staged library waits through programming,
    infusion and pause, and goes in once the programme is cleared."""
    update = _verified_library(lab)
    assert update.library is not None
    pump = InfusionPump(PumpKind.LVP, lab.clock, library=parse_library_bytes(library_bytes(1)))
    pump.handle(PowerOn())
    pump.handle(SetCareArea("ICU"))
    staged = StagedUpdate(update, previous_version=1)
    staged.stage()
    assert pump.handle(Program(SALINE)).accepted
    assert staged.try_apply(pump.state) is ApplyDecision.WAIT_PROGRAMMING
    assert pump.handle(Confirm()).accepted
    assert staged.try_apply(pump.state) is ApplyDecision.WAIT_INFUSING
    lab.clock.advance(600_000)
    pump.handle(Pause())
    assert staged.try_apply(pump.state) is ApplyDecision.WAIT_INFUSING
    assert staged.phase is UpdatePhase.STAGED
    assert pump.library is not None and pump.library.version == 1
    pump.handle(Clear())
    assert staged.try_apply(pump.state) is ApplyDecision.APPLY
    assert staged.phase is UpdatePhase.APPLIED
    assert pump.handle(InstallLibrary(update.library)).accepted
    assert pump.library.version == 2
    report = staged.report(lab.clock.now_ms())
    assert (report.installed_version, report.previous_version) == (2, 1)
    assert report.phase is UpdatePhase.APPLIED
    assert staged.phase is UpdatePhase.REPORTED


def test_firmware_is_staged_in_the_inactive_slot_and_committed(lab: Lab) -> None:
    update = _verified_firmware(lab)
    staged = StagedUpdate(update, slots=FirmwareSlots(Slot.A, active_version=4))
    staged.stage()
    assert staged.slots == FirmwareSlots(Slot.A, 4, 5)
    assert staged.try_apply(PumpState.INFUSING) is ApplyDecision.WAIT_INFUSING
    assert staged.slots == FirmwareSlots(Slot.A, 4, 5)
    assert staged.try_apply(PumpState.IDLE) is ApplyDecision.APPLY
    assert staged.phase is UpdatePhase.BOOTED
    assert staged.slots == FirmwareSlots(Slot.B, 5, 4)
    assert staged.self_test(passed=True) is UpdatePhase.APPLIED
    report = staged.report(lab.clock.now_ms())
    assert (report.installed_version, report.previous_version) == (5, 4)


def test_firmware_that_fails_its_self_test_rolls_back(lab: Lab) -> None:
    update = _verified_firmware(lab)
    staged = StagedUpdate(update, slots=FirmwareSlots(Slot.B, active_version=4))
    staged.stage()
    staged.try_apply(PumpState.IDLE)
    assert staged.self_test(passed=False) is UpdatePhase.ROLLED_BACK
    assert staged.slots is not None and staged.slots.active is Slot.B
    assert staged.slots.active_version == 4
    report = staged.report(lab.clock.now_ms())
    assert report.phase is UpdatePhase.ROLLED_BACK
    assert report.installed_version == 4


def test_transitions_out_of_order_are_refused(lab: Lab) -> None:
    update = _verified_library(lab)
    staged = StagedUpdate(update, previous_version=1)
    with pytest.raises(UpdateStateError, match="verified, not staged"):
        staged.try_apply(PumpState.IDLE)
    with pytest.raises(UpdateStateError):
        staged.report(0)
    staged.stage()
    with pytest.raises(UpdateStateError):
        staged.stage()
    with pytest.raises(UpdateStateError):
        staged.self_test(passed=True)
    with pytest.raises(UpdateStateError, match="slots"):
        StagedUpdate(update, slots=FirmwareSlots(Slot.A, 1))
    firmware = _verified_firmware(lab)
    with pytest.raises(UpdateStateError, match="slots"):
        StagedUpdate(firmware)


def test_the_pump_itself_also_refuses_a_library_mid_infusion(lab: Lab) -> None:
    """Defence in depth: even if a caller ignored ``can_apply``, the firmware refuses."""
    update = _verified_library(lab, version=3)
    assert update.library is not None
    older = parse_library_bytes(library_bytes(2))
    pump = InfusionPump(PumpKind.LVP, lab.clock, library=older)
    pump.handle(PowerOn())
    pump.handle(SetCareArea("ICU"))
    pump.handle(Program(SALINE))
    pump.handle(Confirm())
    assert not pump.handle(InstallLibrary(update.library)).accepted
    assert pump.library is older
