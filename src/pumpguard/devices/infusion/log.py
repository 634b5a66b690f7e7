"""The pump's append-only event log.

Every change to delivery is one entry with its source, its time and the delivery state before
and after, so that the history answers who changed what, when, from what to what. Entries can
be appended and read, never edited or removed; each carries a sequence number so a gap or a
reordering is visible to whoever collects the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from pumpguard.devices.common import AppendOnlyLog
from pumpguard.devices.infusion.commands import CommandSource

__all__ = [
    "MDC_EVT_PUMP_DELIV_COMP",
    "MDC_EVT_PUMP_DELIV_START",
    "MDC_EVT_PUMP_DELIV_STOP",
    "MDC_EVT_PUMP_PROG_CLEARED",
    "DeliverySnapshot",
    "EventKind",
    "EventLog",
    "LogEntry",
]


class EventKind(StrEnum):
    """What happened. Delivery events carry before/after snapshots."""

    POWER_ON = "power-on"
    POWER_OFF = "power-off"
    SELF_TEST = "self-test"
    CARE_AREA = "care-area"
    LIBRARY_INSTALLED = "library-installed"
    LIBRARY_REFUSED = "library-refused"
    PROGRAMMED = "programmed"
    PROGRAMME_CANCELLED = "programme-cancelled"
    PROGRAMME_CLEARED = "programme-cleared"
    COMMAND_REJECTED = "command-rejected"
    OVERRIDE = "soft-limit-override"
    DELIVERY_START = "delivery-start"
    DELIVERY_CHANGE = "delivery-change"
    DELIVERY_STOP = "delivery-stop"
    DELIVERY_COMPLETE = "delivery-complete"
    PCA_DOSE = "pca-dose"
    PCA_DENIED = "pca-denied"
    ALARM_ON = "alarm-on"
    ALARM_ACK = "alarm-acknowledged"
    ALARM_OFF = "alarm-off"
    SENSOR = "sensor"
    MAINS = "mains"


@dataclass(frozen=True, slots=True)
class DeliverySnapshot:
    """What the pump is doing at one instant, as the log records it."""

    state: str
    channel: str | None
    drug: str | None
    rate_ml_h: Decimal
    volume_infused_ml: Decimal
    vtbi_remaining_ml: Decimal


@dataclass(frozen=True, slots=True)
class LogEntry:
    seq: int
    time_ms: int
    kind: EventKind
    source: CommandSource
    detail: str = ""
    before: DeliverySnapshot | None = None
    after: DeliverySnapshot | None = None
    mdc_code: int | None = None


class EventLog(AppendOnlyLog[LogEntry]):
    """Append-only; iteration yields entries in the order they happened."""

    def append(
        self,
        time_ms: int,
        kind: EventKind,
        source: CommandSource,
        detail: str = "",
        *,
        before: DeliverySnapshot | None = None,
        after: DeliverySnapshot | None = None,
        mdc_code: int | None = None,
    ) -> LogEntry:
        entry = LogEntry(self._next_seq(), time_ms, kind, source, detail, before, after, mdc_code)
        return self._add(entry)


MDC_EVT_PUMP_DELIV_START = 197288
MDC_EVT_PUMP_DELIV_STOP = 197290
MDC_EVT_PUMP_DELIV_COMP = 197292
MDC_EVT_PUMP_PROG_CLEARED = 197296
"""IHE PCD IPEC delivery events (IEEE 11073-10101, partition 3; NIST RTMMS)."""
