"""The apply rule: a drug library goes in at once except during programming entry (the pump
binds running programmes to their own library); firmware only on an idle pump, A/B slots with
automatic rollback."""

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
    Rejection,
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
    ("state", "library", "firmware"),
    [
        (PumpState.IDLE, ApplyDecision.APPLY, ApplyDecision.APPLY),
        (PumpState.INFUSING, ApplyDecision.APPLY, ApplyDecision.WAIT_INFUSING),
        (PumpState.PAUSED, ApplyDecision.APPLY, ApplyDecision.WAIT_INFUSING),
        (PumpState.KVO, ApplyDecision.APPLY, ApplyDecision.WAIT_INFUSING),
        (PumpState.PROGRAMMING, ApplyDecision.WAIT_PROGRAMMING, ApplyDecision.WAIT_PROGRAMMING),
        (PumpState.OFF, ApplyDecision.WAIT_NOT_READY, ApplyDecision.WAIT_NOT_READY),
        (PumpState.FAILED, ApplyDecision.WAIT_NOT_READY, ApplyDecision.WAIT_NOT_READY),
    ],
)
def test_a_library_applies_in_any_ready_state_firmware_only_when_idle(
    state: PumpState, library: ApplyDecision, firmware: ApplyDecision
) -> None:
    """Replaces the old rule (a library only on an idle pump)."""
    assert can_apply(state) is library
    assert can_apply(state, UpdateKind.DRUG_LIBRARY) is library
    assert can_apply(state, UpdateKind.FIRMWARE) is firmware
    assert can_apply(state, UpdateKind.FIRMWARE, awaiting_confirmation=True) is firmware


@pytest.mark.parametrize("state", [PumpState.INFUSING, PumpState.PAUSED, PumpState.KVO])
def test_a_library_waits_while_a_programme_is_entered_on_an_infusing_pump(
    state: PumpState,
) -> None:
    """A titration or a secondary pre-filled on a running pump: the state says infusing."""
    assert can_apply(state, awaiting_confirmation=True) is ApplyDecision.WAIT_PROGRAMMING


def test_every_pump_state_has_a_decision() -> None:
    for kind in UpdateKind:
        for pending in (False, True):
            decisions = {can_apply(s, kind, awaiting_confirmation=pending) for s in PumpState}
            assert decisions <= set(ApplyDecision)


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


def _apply(staged: StagedUpdate, pump: InfusionPump) -> ApplyDecision:
    return staged.try_apply(pump.state, awaiting_confirmation=pump.awaiting_confirmation)


def test_a_library_goes_in_during_an_infusion_and_binds_only_new_programmes(lab: Lab) -> None:
    """Drives the real hospital pump firmware (replaces the old rule, which waited for the
    programme to be cleared): the staged library waits while a programme is entered, goes in
    while the pump infuses, the running infusion keeps v1, the next programme starts on v2."""
    update = _verified_library(lab)
    assert update.library is not None
    pump = InfusionPump(PumpKind.LVP, lab.clock, library=parse_library_bytes(library_bytes(1)))
    pump.handle(PowerOn())
    pump.handle(SetCareArea("ICU"))
    staged = StagedUpdate(update, previous_version=1)
    staged.stage()
    assert pump.handle(Program(SALINE)).accepted
    assert _apply(staged, pump) is ApplyDecision.WAIT_PROGRAMMING
    assert pump.handle(Confirm()).accepted
    lab.clock.advance(600_000)
    titration = ContinuousProgramme("Saline", Decimal(120), "mL/h", Decimal(250))
    assert pump.handle(Program(titration)).accepted
    assert pump.state is PumpState.INFUSING
    assert _apply(staged, pump) is ApplyDecision.WAIT_PROGRAMMING
    assert pump.handle(Confirm()).accepted
    assert staged.phase is UpdatePhase.STAGED
    rate = pump.delivering_rate_ml_h
    assert _apply(staged, pump) is ApplyDecision.APPLY
    assert staged.phase is UpdatePhase.APPLIED
    assert pump.handle(InstallLibrary(update.library)).accepted
    assert pump.library is not None and pump.library.version == 2
    assert pump.delivering_rate_ml_h == rate
    assert [r.library_version for r in pump.running_programmes()] == [1]
    report = staged.report(lab.clock.now_ms())
    assert (report.installed_version, report.previous_version) == (2, 1)
    assert report.phase is UpdatePhase.APPLIED
    assert staged.phase is UpdatePhase.REPORTED
    pump.handle(Pause())
    pump.handle(Clear())
    assert pump.handle(Program(SALINE)).accepted
    assert pump.handle(Confirm()).accepted
    assert [r.library_version for r in pump.running_programmes()] == [2]


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


def test_the_pump_itself_refuses_an_older_verified_library_mid_infusion(lab: Lab) -> None:
    """Defence in depth: a correctly signed but older library (still listed in the role) is
    refused by the firmware too, infusing or not, and the running programme is untouched."""
    update = _verified_library(lab, version=3)
    assert update.library is not None
    newer = parse_library_bytes(library_bytes(4))
    pump = InfusionPump(PumpKind.LVP, lab.clock, library=newer)
    pump.handle(PowerOn())
    pump.handle(SetCareArea("ICU"))
    pump.handle(Program(SALINE))
    pump.handle(Confirm())
    rate = pump.delivering_rate_ml_h
    assert pump.handle(InstallLibrary(update.library)).rejection is Rejection.DOWNGRADE
    assert pump.library is newer
    assert pump.delivering_rate_ml_h == rate
    assert [r.library_version for r in pump.running_programmes()] == [4]
