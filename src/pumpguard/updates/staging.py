"""What happens to a verified update on the pump: stage, apply only when safe, report.

``StagedUpdate`` is a pure state machine: it never touches a pump, a file or the clock itself.
It starts from a ``VerifiedUpdate`` (downloading and verifying are one atomic step of the
client, so nothing unverified can ever be staged) and moves::

    verified -> staged -> applied -> reported                 (drug library)
    verified -> staged -> booted -> applied | rolled-back -> reported   (firmware, A/B slots)

When to apply depends on what is installed:

* a drug library is applied at once, idle or infusing (paused, KVO), because the pump binds
  each running programme to the library it was checked against for the programme's whole life
  (``devices.infusion``): installing changes which library *new* programmes are checked
  against, nothing about the infusions running. It waits only while a programme is being
  entered (a pre-filled programme awaiting confirmation, new, titration or secondary): the
  clinician is reading a verdict and a rate computed with the active library, and swapping it
  then would either have them confirm numbers the pump no longer stands behind or (what the
  firmware does if asked anyway) throw away what they typed. Entry takes seconds to minutes and
  the pump reminds after two, so the wait costs nothing measurable. An off or failed pump waits.
* firmware still needs an idle pump: booting another image stops the delivery mechanism. It
  is written to the inactive slot, booted, self-tested, and either committed or rolled back to
  the slot it came from; the running slot is never overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from pumpguard.devices.infusion.model import PumpState
from pumpguard.updates.client import VerifiedUpdate
from pumpguard.updates.targets import TargetDescription, UpdateKind

__all__ = [
    "ApplyDecision",
    "FirmwareSlots",
    "InstallReport",
    "Slot",
    "StagedUpdate",
    "UpdatePhase",
    "UpdateStateError",
    "can_apply",
]


class UpdatePhase(StrEnum):
    VERIFIED = "verified"
    STAGED = "staged"
    BOOTED = "booted"
    APPLIED = "applied"
    ROLLED_BACK = "rolled-back"
    REPORTED = "reported"


class ApplyDecision(StrEnum):
    """Whether an update may be applied now, and if not, why it waits."""

    APPLY = "apply"
    WAIT_INFUSING = "wait-infusing"
    WAIT_PROGRAMMING = "wait-programming"
    WAIT_NOT_READY = "wait-not-ready"


_LIBRARY_DECISIONS = {
    PumpState.IDLE: ApplyDecision.APPLY,
    PumpState.INFUSING: ApplyDecision.APPLY,
    PumpState.PAUSED: ApplyDecision.APPLY,
    PumpState.KVO: ApplyDecision.APPLY,
    PumpState.PROGRAMMING: ApplyDecision.WAIT_PROGRAMMING,
    PumpState.OFF: ApplyDecision.WAIT_NOT_READY,
    PumpState.FAILED: ApplyDecision.WAIT_NOT_READY,
}
_FIRMWARE_DECISIONS = {
    PumpState.IDLE: ApplyDecision.APPLY,
    PumpState.INFUSING: ApplyDecision.WAIT_INFUSING,
    PumpState.PAUSED: ApplyDecision.WAIT_INFUSING,
    PumpState.KVO: ApplyDecision.WAIT_INFUSING,
    PumpState.PROGRAMMING: ApplyDecision.WAIT_PROGRAMMING,
    PumpState.OFF: ApplyDecision.WAIT_NOT_READY,
    PumpState.FAILED: ApplyDecision.WAIT_NOT_READY,
}


def can_apply(
    state: PumpState,
    kind: UpdateKind = UpdateKind.DRUG_LIBRARY,
    *,
    awaiting_confirmation: bool = False,
) -> ApplyDecision:
    """The apply rule the pump calls with its state and ``InfusionPump.awaiting_confirmation``
    (a titration or secondary being entered while the pump infuses shows ``INFUSING``): a drug
    library goes in at once except during programming entry; firmware only on an idle pump."""
    if kind is UpdateKind.FIRMWARE:
        return _FIRMWARE_DECISIONS[state]
    decision = _LIBRARY_DECISIONS[state]
    if decision is ApplyDecision.APPLY and awaiting_confirmation:
        return ApplyDecision.WAIT_PROGRAMMING
    return decision


class Slot(StrEnum):
    A = "a"
    B = "b"

    @property
    def other(self) -> Slot:
        return Slot.B if self is Slot.A else Slot.A


@dataclass(frozen=True, slots=True)
class FirmwareSlots:
    """The pump's two firmware slots: the one it boots, and the spare the update is written to."""

    active: Slot
    active_version: int
    inactive_version: int | None = None

    def stage(self, version: int) -> FirmwareSlots:
        return replace(self, inactive_version=version)

    def switch(self) -> FirmwareSlots:
        if self.inactive_version is None:
            raise UpdateStateError("the inactive slot holds no image to boot")
        return FirmwareSlots(self.active.other, self.inactive_version, self.active_version)


@dataclass(frozen=True, slots=True)
class InstallReport:
    """What the pump reports to the server once an update is finished, applied or not."""

    target: TargetDescription
    phase: UpdatePhase
    installed_version: int
    previous_version: int | None
    time_ms: int


class UpdateStateError(RuntimeError):
    """A transition that the current phase does not allow (a bug in the caller)."""


class StagedUpdate:
    """One verified update on its way to being installed; see the module docstring."""

    def __init__(
        self,
        update: VerifiedUpdate,
        *,
        previous_version: int | None = None,
        slots: FirmwareSlots | None = None,
    ) -> None:
        is_firmware = update.target.kind is UpdateKind.FIRMWARE
        if is_firmware and slots is None:
            raise UpdateStateError("a firmware update needs the pump's A/B slots")
        if not is_firmware and slots is not None:
            raise UpdateStateError("a drug library is not installed into firmware slots")
        self._update = update
        self._previous = slots.active_version if slots is not None else previous_version
        self._slots = slots
        self._phase = UpdatePhase.VERIFIED

    @property
    def update(self) -> VerifiedUpdate:
        return self._update

    @property
    def phase(self) -> UpdatePhase:
        return self._phase

    @property
    def slots(self) -> FirmwareSlots | None:
        return self._slots

    def _expect(self, *phases: UpdatePhase) -> None:
        if self._phase not in phases:
            allowed = ", ".join(p.value for p in phases)
            raise UpdateStateError(f"the update is {self._phase.value}, not {allowed}")

    def stage(self) -> None:
        """Keep the verified update aside (firmware: write it into the inactive slot)."""
        self._expect(UpdatePhase.VERIFIED)
        if self._slots is not None:
            self._slots = self._slots.stage(self._update.target.version)
        self._phase = UpdatePhase.STAGED

    def try_apply(self, state: PumpState, *, awaiting_confirmation: bool = False) -> ApplyDecision:
        """Apply if ``can_apply`` allows it for this update's kind; otherwise stay staged and
        say why."""
        self._expect(UpdatePhase.STAGED)
        decision = can_apply(
            state, self._update.target.kind, awaiting_confirmation=awaiting_confirmation
        )
        if decision is not ApplyDecision.APPLY:
            return decision
        if self._slots is not None:
            self._slots = self._slots.switch()
            self._phase = UpdatePhase.BOOTED
        else:
            self._phase = UpdatePhase.APPLIED
        return decision

    def self_test(self, passed: bool) -> UpdatePhase:
        """Firmware only: commit the booted image, or boot back into the previous slot."""
        self._expect(UpdatePhase.BOOTED)
        if self._slots is None:
            raise UpdateStateError("only firmware is self-tested")
        if passed:
            self._phase = UpdatePhase.APPLIED
        else:
            self._slots = self._slots.switch()
            self._phase = UpdatePhase.ROLLED_BACK
        return self._phase

    def report(self, now_ms: int) -> InstallReport:
        """The report for the server: the version the pump now really runs."""
        self._expect(UpdatePhase.APPLIED, UpdatePhase.ROLLED_BACK)
        outcome = self._phase
        version = self._update.target.version if outcome is UpdatePhase.APPLIED else self._previous
        if version is None:
            raise UpdateStateError("a rolled-back update must know the version it returned to")
        self._phase = UpdatePhase.REPORTED
        return InstallReport(self._update.target, outcome, version, self._previous, now_ms)
