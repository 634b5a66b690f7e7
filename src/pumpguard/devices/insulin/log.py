"""The insulin pump's append-only event log.

Every change to delivery is one entry with its source, command id, time and a snapshot of
delivery before and after. A snapshot names each running delivery (basal or temp basal, normal
bolus, extended bolus) with the source and command id that started it, so the log answers for
any unit delivered: who asked for it, and when. Amounts are exact fractions: between two entries
the pump delivered exactly the previous entry's total rate times the time between them, which
is how a collector (or a test) can check that nothing was delivered unlogged.

Entries can be appended and read, never edited or removed; each carries a gapless sequence
number, which is also the cursor a controller uses to fetch what it has not seen.

The hospital pump has a log of the same shape (``devices.infusion.log``); its entries describe
volumes of a drug on channels, these describe insulin units by delivery type, so the two keep
their own entry types rather than share one with optional fields for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from fractions import Fraction

from pumpguard.devices.common import AppendOnlyLog
from pumpguard.devices.insulin.commands import CommandSource
from pumpguard.devices.insulin.model import PumpState

__all__ = [
    "BolusKind",
    "BolusStatus",
    "BolusView",
    "DeliverySnapshot",
    "EventKind",
    "EventLog",
    "LogEntry",
    "TempBasalView",
]


class EventKind(StrEnum):
    """What happened. Delivery events carry before/after snapshots."""

    STARTED = "started"
    BASAL_CHANGE = "basal-change"
    """The schedule moved to another segment (a percent temp basal follows it)."""
    BASAL_PROFILE = "basal-profile"
    LIMITS = "limits"
    TIME = "time-zone"
    TEMP_BASAL_START = "temp-basal-start"
    TEMP_BASAL_END = "temp-basal-end"
    TEMP_BASAL_CANCEL = "temp-basal-cancel"
    LIMITED_MODE = "limited-mode"
    """Automation lost: the temp basal just started is the pump's limited mode."""
    BOLUS_REQUESTED = "bolus-requested"
    """A remote bolus accepted into its cancel window: nothing delivered yet."""
    BOLUS_START = "bolus-start"
    BOLUS_COMPLETE = "bolus-complete"
    BOLUS_CANCEL = "bolus-cancel"
    SUSPEND = "suspend"
    RESUME = "resume"
    DELIVERY_STOP = "delivery-stop"
    """All delivery stopped by an alarm."""
    RESERVOIR = "reservoir-change"
    COMMAND_REJECTED = "command-rejected"
    COMMAND_REPLAYED = "command-replayed"
    """A command id seen before: answered from history, nothing done again."""
    ALARM_ON = "alarm-on"
    ALARM_ACK = "alarm-acknowledged"
    ALARM_OFF = "alarm-off"
    SENSOR = "sensor"
    METER_GLUCOSE = "meter-glucose"
    """A fingerstick entered at the pump; in limited mode it may hold the basal at zero."""
    CHARGING = "charging"


class BolusKind(StrEnum):
    NORMAL = "normal"
    EXTENDED = "extended"


class BolusStatus(StrEnum):
    PENDING = "pending"
    """Accepted from the phone, waiting out its cancel window."""
    DELIVERING = "delivering"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class BolusView:
    """One bolus as it stood at one instant."""

    bolus_id: int
    kind: BolusKind
    source: CommandSource
    command_id: str | None
    amount_u: Fraction
    delivered_u: Fraction
    status: BolusStatus
    requested_ms: int
    start_ms: int
    """When delivery started, or (pending) when it is due to start."""
    duration_ms: int
    end_ms: int | None = None
    end_reason: str = ""

    @property
    def rate_u_h(self) -> Fraction:
        """The rate it delivers at while delivering: amount over duration."""
        return self.amount_u * 3_600_000 / self.duration_ms

    @property
    def remaining_u(self) -> Fraction:
        return self.amount_u - self.delivered_u


@dataclass(frozen=True, slots=True)
class TempBasalView:
    source: CommandSource
    command_id: str | None
    rate_u_h: Decimal | None
    percent: int | None
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class DeliverySnapshot:
    """What the pump is delivering at one instant, as the log records it."""

    state: PumpState
    suspended_by: CommandSource | None
    basal_u_h: Fraction
    """The basal being delivered: scheduled or temporary, zero when not running."""
    scheduled_u_h: Decimal
    temp: TempBasalView | None
    bolus: BolusView | None
    extended: BolusView | None
    bolus_u_h: Fraction
    extended_u_h: Fraction
    delivered_u: Fraction
    """Everything delivered since the pump started (an odometer)."""
    reservoir_u: Fraction

    @property
    def total_u_h(self) -> Fraction:
        return self.basal_u_h + self.bolus_u_h + self.extended_u_h


@dataclass(frozen=True, slots=True)
class LogEntry:
    seq: int
    time_ms: int
    kind: EventKind
    source: CommandSource
    detail: str = ""
    command_id: str | None = None
    bolus_id: int | None = None
    before: DeliverySnapshot | None = None
    after: DeliverySnapshot | None = None


class EventLog(AppendOnlyLog[LogEntry]):
    """Append-only; iteration yields entries in the order they happened."""

    def append(
        self,
        time_ms: int,
        kind: EventKind,
        source: CommandSource,
        detail: str = "",
        *,
        command_id: str | None = None,
        bolus_id: int | None = None,
        before: DeliverySnapshot | None = None,
        after: DeliverySnapshot | None = None,
    ) -> LogEntry:
        entry = LogEntry(
            self._next_seq(),
            time_ms,
            kind,
            source,
            detail,
            command_id,
            bolus_id,
            before,
            after,
        )
        return self._add(entry)
