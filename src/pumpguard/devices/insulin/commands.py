"""What can be asked of the insulin pump, by whom, and what it answers.

Every command carries its ``source`` (who sent it) and, when it comes over a link, a
client-generated ``command_id``. The firmware uses the source to decide what is allowed (limits
are changed at the pump only; a remote bolus waits out a cancel window) and records it with every
change to delivery. The command id makes every command idempotent: the pump remembers the outcome
of each id, answers a repeated id with the original outcome and never acts twice, which is what
lets a controller that lost a confirmation ask and retry without double-dosing.

Each refusal has a name (``Rejection``) and the Bluetooth IDS response code it will carry on the
wire (``Rejection.ids_code``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar

from pumpguard.clinical import BasalProfile
from pumpguard.devices.insulin.ids import IdsOpcode, IdsResponseCode
from pumpguard.devices.insulin.limits import InsulinLimits

__all__ = [
    "AcknowledgeAlarm",
    "Bolus",
    "CancelBolus",
    "CancelTempBasal",
    "ChangeReservoir",
    "Command",
    "CommandResult",
    "CommandSource",
    "ExtendedBolus",
    "MeterGlucose",
    "Occlusion",
    "Rejection",
    "Resume",
    "SetBasalProfile",
    "SetCharging",
    "SetLimits",
    "SetTempBasal",
    "SetUtcOffset",
    "Suspend",
]


class CommandSource(StrEnum):
    """Who issued a command."""

    LOCAL = "local"
    """The buttons on the pump: the user, holding it."""
    REMOTE = "remote"
    """A phone or PC controller commanded by the user, over the radio."""
    AUTOMATED = "automated"
    """An automated insulin delivery (AID) controller, over the radio, with nobody pressing."""
    SYSTEM = "system"
    """The pump's own sensors and timers."""


@dataclass(frozen=True, slots=True)
class Bolus:
    """A normal bolus, delivered at the pump's bolus speed (from the phone: after a cancel
    window with an alert on the pump)."""

    IDS_OPCODE: ClassVar[IdsOpcode | None] = IdsOpcode.SET_BOLUS
    amount_u: Decimal
    source: CommandSource = CommandSource.LOCAL
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class ExtendedBolus:
    """An extended (square-wave) bolus: ``amount_u`` spread evenly over ``duration_min``."""

    IDS_OPCODE: ClassVar[IdsOpcode | None] = IdsOpcode.SET_BOLUS
    amount_u: Decimal
    duration_min: int
    source: CommandSource = CommandSource.LOCAL
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class CancelBolus:
    """Cancel one bolus (by the id the pump gave it) or, without an id, every bolus this
    source may cancel. A pending remote bolus cancelled in its window delivers nothing."""

    IDS_OPCODE: ClassVar[IdsOpcode | None] = IdsOpcode.CANCEL_BOLUS
    bolus_id: int | None = None
    source: CommandSource = CommandSource.LOCAL
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class SetTempBasal:
    """A temporary basal for ``duration_min``: an absolute ``rate_u_h`` or a ``percent`` of the
    scheduled rate (exactly one of the two); a percent follows the schedule's segments."""

    IDS_OPCODE: ClassVar[IdsOpcode | None] = IdsOpcode.SET_TBR_ADJUSTMENT
    duration_min: int
    rate_u_h: Decimal | None = None
    percent: int | None = None
    source: CommandSource = CommandSource.LOCAL
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class CancelTempBasal:
    IDS_OPCODE: ClassVar[IdsOpcode | None] = IdsOpcode.CANCEL_TBR_ADJUSTMENT
    source: CommandSource = CommandSource.LOCAL
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class Suspend:
    """Stop all delivery: running and pending boluses and the temp basal are cancelled."""

    IDS_OPCODE: ClassVar[IdsOpcode | None] = IdsOpcode.SET_THERAPY_CONTROL_STATE
    source: CommandSource = CommandSource.LOCAL
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class Resume:
    """Restart the scheduled basal (boluses and temp basals are not resumed)."""

    IDS_OPCODE: ClassVar[IdsOpcode | None] = IdsOpcode.SET_THERAPY_CONTROL_STATE
    source: CommandSource = CommandSource.LOCAL
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class StartLimitedMode:
    """Automation is lost (no link to the controller, or no CGM data it may dose on): run the
    pump's *limited mode*, a percent temp basal at the adaptive rate the pump learns from its
    own recent basal delivery, never above the scheduled basal, for ``LIMITED_MODE_MINUTES``.

    Omnipod 5 "Automated Mode: Limited" delivers the lower of the adaptive and the scheduled
    basal rate while CGM data is missing (Omnipod 5 user guide, section 21.5); MiniMed
    670G/780G "Safe Basal" is the same idea and ends after at most 4 hours (780G). The rate is
    computed by the pump from its history, so nothing but this request has to cross the radio.
    Only the automated controller (or the pump's own link watchdog, in its name) asks for it.
    """

    IDS_OPCODE: ClassVar[IdsOpcode | None] = IdsOpcode.SET_THERAPY_CONTROL_STATE
    source: CommandSource = CommandSource.AUTOMATED
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class SetBasalProfile:
    IDS_OPCODE: ClassVar[IdsOpcode | None] = None
    profile: BasalProfile
    source: CommandSource = CommandSource.LOCAL
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class SetLimits:
    """The pump's dose limits; accepted from the buttons on the pump only."""

    IDS_OPCODE: ClassVar[IdsOpcode | None] = IdsOpcode.SET_MAX_BOLUS_AMOUNT
    limits: InsulinLimits
    source: CommandSource = CommandSource.LOCAL
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class SetUtcOffset:
    """The pump's time zone, which places the basal profile in the day."""

    IDS_OPCODE: ClassVar[IdsOpcode | None] = None
    offset_min: int
    source: CommandSource = CommandSource.LOCAL
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class MeterGlucose:
    """A fingerstick glucose value entered on the pump's keypad (LOCAL only, never over the
    radio). Logged; while limited mode runs, it may stop the limited-mode basal
    (``MeterSuspendRule``, the pump's ``meter_rule``), never add insulin."""

    IDS_OPCODE: ClassVar[IdsOpcode | None] = None
    glucose_mgdl: Decimal
    source: CommandSource = CommandSource.LOCAL
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class AcknowledgeAlarm:
    """Silence alarms and clear those whose cause is gone."""

    IDS_OPCODE: ClassVar[IdsOpcode | None] = None
    source: CommandSource = CommandSource.LOCAL
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeReservoir:
    """A new reservoir holding ``units`` (done at the pump, while delivery is suspended)."""

    IDS_OPCODE: ClassVar[IdsOpcode | None] = None
    units: Decimal
    source: CommandSource = CommandSource.LOCAL
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class Occlusion:
    """The pressure sensor reports an occlusion starting (``active``) or ending."""

    IDS_OPCODE: ClassVar[IdsOpcode | None] = None
    active: bool
    source: CommandSource = CommandSource.SYSTEM
    command_id: str | None = None


@dataclass(frozen=True, slots=True)
class SetCharging:
    """The battery is on its charger (it charges) or not."""

    IDS_OPCODE: ClassVar[IdsOpcode | None] = None
    connected: bool
    source: CommandSource = CommandSource.SYSTEM
    command_id: str | None = None


Command = (
    Bolus
    | ExtendedBolus
    | CancelBolus
    | SetTempBasal
    | CancelTempBasal
    | Suspend
    | Resume
    | StartLimitedMode
    | SetBasalProfile
    | SetLimits
    | SetUtcOffset
    | AcknowledgeAlarm
    | MeterGlucose
    | ChangeReservoir
    | Occlusion
    | SetCharging
)


class Rejection(StrEnum):
    """Why the pump refused a command; ``ids_code`` is the IDS response code it maps to."""

    INVALID = "invalid"
    """A number that is not a finite decimal, not on the pump's step, a missing command id."""
    OUT_OF_RANGE = "out-of-range"
    """A number outside what the pump supports (zero or negative dose, duration, percent)."""
    MAX_BOLUS = "max-bolus"
    MAX_BASAL = "max-basal"
    MAX_IOB = "max-iob"
    TWO_HOUR_LIMIT = "two-hour-limit"
    DAILY_LIMIT = "daily-limit"
    RESERVOIR = "reservoir"
    """Not enough insulin in the reservoir for the dose (or for one more millisecond)."""
    BOLUS_ACTIVE = "bolus-active"
    SUSPENDED = "suspended"
    WRONG_STATE = "wrong-state"
    NOTHING_TO_CANCEL = "nothing-to-cancel"
    ALARM_ACTIVE = "alarm-active"
    NOT_PERMITTED = "not-permitted"
    """This source may not issue this command (or act on what another source started)."""
    INCONSISTENT = "inconsistent"
    """Settings that contradict each other or the therapy already running."""
    ID_REUSED = "id-reused"
    """A command id already used for a different command."""
    UNSUPPORTED = "unsupported"

    @property
    def ids_code(self) -> IdsResponseCode:
        return _IDS_CODES[self]


_IDS_CODES = {
    Rejection.INVALID: IdsResponseCode.INVALID_OPERAND,
    Rejection.OUT_OF_RANGE: IdsResponseCode.PARAMETER_OUT_OF_RANGE,
    Rejection.MAX_BOLUS: IdsResponseCode.PARAMETER_OUT_OF_RANGE,
    Rejection.MAX_BASAL: IdsResponseCode.PARAMETER_OUT_OF_RANGE,
    Rejection.MAX_IOB: IdsResponseCode.PLAUSIBILITY_CHECK_FAILED,
    Rejection.TWO_HOUR_LIMIT: IdsResponseCode.PLAUSIBILITY_CHECK_FAILED,
    Rejection.DAILY_LIMIT: IdsResponseCode.PLAUSIBILITY_CHECK_FAILED,
    Rejection.RESERVOIR: IdsResponseCode.PROCEDURE_NOT_APPLICABLE,
    Rejection.BOLUS_ACTIVE: IdsResponseCode.MAX_BOLUS_NUMBER_REACHED,
    Rejection.SUSPENDED: IdsResponseCode.PROCEDURE_NOT_APPLICABLE,
    Rejection.WRONG_STATE: IdsResponseCode.PROCEDURE_NOT_APPLICABLE,
    Rejection.NOTHING_TO_CANCEL: IdsResponseCode.PROCEDURE_NOT_APPLICABLE,
    Rejection.ALARM_ACTIVE: IdsResponseCode.PROCEDURE_NOT_APPLICABLE,
    Rejection.NOT_PERMITTED: IdsResponseCode.PROCEDURE_NOT_APPLICABLE,
    Rejection.INCONSISTENT: IdsResponseCode.PLAUSIBILITY_CHECK_FAILED,
    Rejection.ID_REUSED: IdsResponseCode.PLAUSIBILITY_CHECK_FAILED,
    Rejection.UNSUPPORTED: IdsResponseCode.OPCODE_NOT_SUPPORTED,
}


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The pump's answer.

    ``bolus_id`` names the bolus a bolus command created (what ``CancelBolus`` and the history
    take); ``replayed`` is set when this is the remembered answer to a repeated command id.
    """

    accepted: bool
    message: str
    rejection: Rejection | None = None
    command_id: str | None = None
    bolus_id: int | None = None
    replayed: bool = False

    @property
    def ids_code(self) -> IdsResponseCode:
        if self.rejection is None:
            return IdsResponseCode.SUCCESS
        return self.rejection.ids_code
