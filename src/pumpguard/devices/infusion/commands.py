"""What can be asked of an infusion pump, by whom, and what it answers.

Every command carries its ``source``. The firmware uses it to decide what is allowed (only a
clinician at the keypad confirms a programme or restarts delivery; only the patient's button
asks for a PCA dose) and records it in the event log with every change to delivery, because
"who changed this dose?" is the first question after an incident or an attack.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from pumpguard.clinical import Concentration, DersResult, DrugLibrary

__all__ = [
    "AcknowledgeAlarm",
    "Cancel",
    "Channel",
    "Clear",
    "Command",
    "CommandResult",
    "CommandSource",
    "Confirm",
    "ContinuousProgramme",
    "InstallLibrary",
    "Pause",
    "PcaDemand",
    "PcaProgramme",
    "PowerOff",
    "PowerOn",
    "Program",
    "Rejection",
    "Resume",
    "SensorChange",
    "SensorKind",
    "SetCareArea",
    "SetMains",
]


class CommandSource(StrEnum):
    """Who issued a command."""

    KEYPAD = "keypad"
    AUTO_PROGRAMME = "auto-programme"
    REMOTE = "remote"
    PATIENT = "patient"
    SYSTEM = "system"


class Channel(StrEnum):
    """An LVP runs a primary infusion and may interrupt it for a secondary (piggyback)."""

    PRIMARY = "primary"
    SECONDARY = "secondary"


class SensorKind(StrEnum):
    """Hardware sensor conditions the delivery mechanism reports."""

    OCCLUSION = "occlusion"
    AIR_IN_LINE = "air-in-line"
    DOOR_OPEN = "door-open"


@dataclass(frozen=True, slots=True)
class ContinuousProgramme:
    """A continuous infusion: a dose rate of one drug until ``vtbi_ml`` has run in.

    For drugs dosed in mL/h the dose *is* the flow rate. ``care_area``, when given (an EHR order
    carries one), must match the pump's; ``concentration`` picks between entries of one drug.
    """

    drug: str
    dose: Decimal
    dose_unit: str
    vtbi_ml: Decimal
    weight_kg: Decimal | None = None
    concentration: Concentration | None = None
    care_area: str | None = None
    channel: Channel = Channel.PRIMARY
    order_id: str | None = None
    patient_id: str | None = None


@dataclass(frozen=True, slots=True)
class PcaProgramme:
    """Patient-controlled analgesia from a reservoir of ``vtbi_ml``."""

    drug: str
    demand_dose: Decimal
    lockout_min: Decimal
    hourly_limit: Decimal
    vtbi_ml: Decimal
    dose_unit: str = "mg"
    basal_rate: Decimal = Decimal(0)
    loading_dose: Decimal = Decimal(0)
    weight_kg: Decimal | None = None
    concentration: Concentration | None = None
    care_area: str | None = None
    order_id: str | None = None
    patient_id: str | None = None


@dataclass(frozen=True, slots=True)
class PowerOn:
    source: CommandSource = CommandSource.KEYPAD


@dataclass(frozen=True, slots=True)
class PowerOff:
    source: CommandSource = CommandSource.KEYPAD


@dataclass(frozen=True, slots=True)
class SetCareArea:
    care_area: str
    source: CommandSource = CommandSource.KEYPAD


@dataclass(frozen=True, slots=True)
class Program:
    """Pre-fill a programme (new, titration of the running one, or a secondary)."""

    programme: ContinuousProgramme | PcaProgramme
    source: CommandSource = CommandSource.KEYPAD


@dataclass(frozen=True, slots=True)
class Confirm:
    """The clinician at the pump accepts the pending programme and starts it."""

    override_reason: str | None = None
    source: CommandSource = CommandSource.KEYPAD


@dataclass(frozen=True, slots=True)
class Cancel:
    """Discard the pending (unconfirmed) programme; delivery is unchanged."""

    source: CommandSource = CommandSource.KEYPAD


@dataclass(frozen=True, slots=True)
class Clear:
    """Stop and forget the paused or KVO programme so that a new bag can be programmed."""

    source: CommandSource = CommandSource.KEYPAD


@dataclass(frozen=True, slots=True)
class Pause:
    source: CommandSource = CommandSource.KEYPAD


@dataclass(frozen=True, slots=True)
class Resume:
    source: CommandSource = CommandSource.KEYPAD


@dataclass(frozen=True, slots=True)
class PcaDemand:
    source: CommandSource = CommandSource.PATIENT


@dataclass(frozen=True, slots=True)
class AcknowledgeAlarm:
    """Silence and, where the cause is gone, clear an alarm."""

    source: CommandSource = CommandSource.KEYPAD


@dataclass(frozen=True, slots=True)
class SensorChange:
    """A sensor condition starting (``active``) or ending."""

    kind: SensorKind
    active: bool
    source: CommandSource = CommandSource.SYSTEM


@dataclass(frozen=True, slots=True)
class SetMains:
    """Mains power connected (the battery charges) or disconnected."""

    connected: bool
    source: CommandSource = CommandSource.SYSTEM


@dataclass(frozen=True, slots=True)
class InstallLibrary:
    library: DrugLibrary
    source: CommandSource = CommandSource.SYSTEM


Command = (
    PowerOn
    | PowerOff
    | SetCareArea
    | Program
    | Confirm
    | Cancel
    | Clear
    | Pause
    | Resume
    | PcaDemand
    | AcknowledgeAlarm
    | SensorChange
    | SetMains
    | InstallLibrary
)


class Rejection(StrEnum):
    """Why a pump refused a command. ``err_code`` is the IHE PCD ERR-5 code where one fits."""

    POWERED_OFF = "powered-off"
    SELF_TEST_FAILED = "self-test-failed"
    WRONG_STATE = "wrong-state"
    NOT_AT_PUMP = "not-at-pump"
    NO_LIBRARY = "no-library"
    NO_CARE_AREA = "no-care-area"
    DERS_BLOCKED = "ders-blocked"
    OVERRIDE_REASON_REQUIRED = "override-reason-required"
    RATE_OUT_OF_RANGE = "rate-out-of-range"
    UNSUPPORTED = "unsupported"
    INVALID = "invalid"
    NOTHING_PENDING = "nothing-pending"
    ALARM_ACTIVE = "alarm-active"
    LOCKOUT = "lockout"
    HOURLY_LIMIT = "hourly-limit"
    RESERVOIR_EMPTY = "reservoir-empty"
    INFUSING = "infusing"
    DOWNGRADE = "downgrade"

    @property
    def err_code(self) -> int | None:
        return _REJECTION_ERR.get(self)


_REJECTION_ERR = {
    Rejection.INFUSING: 9002,
    Rejection.RATE_OUT_OF_RANGE: 9005,
    Rejection.WRONG_STATE: 9017,
    Rejection.UNSUPPORTED: 9017,
    Rejection.INVALID: 9017,
    Rejection.ALARM_ACTIVE: 9017,
    Rejection.POWERED_OFF: 9007,
    Rejection.NO_LIBRARY: 9010,
}


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The pump's answer: accepted, or refused with a named reason and a readable message."""

    accepted: bool
    message: str
    rejection: Rejection | None = None
    ders: DersResult | None = None

    @property
    def err_code(self) -> int | None:
        if self.rejection is Rejection.DERS_BLOCKED and self.ders is not None:
            return self.ders.err_code
        return None if self.rejection is None else self.rejection.err_code
