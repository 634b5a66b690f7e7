"""Insulin pump alarms and alerts: priority (IEC 60601-1-8) and whether they stop delivery.

A stopping alarm halts all delivery at once (running and pending boluses and the temp basal are
cancelled, never resumed) and latches: delivery restarts only when the user at the pump has
acknowledged it, its cause is gone and the user resumes. Two alerts tell the user about what was
done from afar and clear themselves when it is over: a remote bolus waiting in its cancel window
(the vibrating alert Animas used as a compensating control for its meter remote), and a delivery
suspended by the phone or the automated controller.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pumpguard.devices.common import AlarmPriority

__all__ = ["Alarm", "AlarmKind", "AlarmPriority"]


class AlarmKind(Enum):
    """(text, priority, stops delivery, clears itself when its condition ends)."""

    OCCLUSION = ("occlusion", AlarmPriority.HIGH, True, False)
    RESERVOIR_EMPTY = ("reservoir-empty", AlarmPriority.HIGH, True, False)
    BATTERY_DEPLETED = ("battery-depleted", AlarmPriority.HIGH, True, False)
    TWO_HOUR_LIMIT = ("two-hour-limit-reached", AlarmPriority.HIGH, True, False)
    DAILY_LIMIT = ("daily-limit-reached", AlarmPriority.HIGH, True, False)
    REMOTE_BOLUS = ("remote-bolus-pending", AlarmPriority.MEDIUM, False, True)
    REMOTE_SUSPEND = ("suspended-remotely", AlarmPriority.MEDIUM, False, True)
    RESERVOIR_LOW = ("reservoir-low", AlarmPriority.MEDIUM, False, False)
    BATTERY_LOW = ("battery-low", AlarmPriority.MEDIUM, False, False)
    LIMITED_MODE_ENDED = ("limited-mode-ended", AlarmPriority.MEDIUM, False, True)
    """Limited mode ran its bounded time and the scheduled basal runs again: the user is asked
    to check the link and the CGM (the 780G asks for a BG when it leaves Safe Basal). It ends
    when automation doses again or when acknowledged at the pump."""

    def __init__(
        self, text: str, priority: AlarmPriority, stops: bool, self_clearing: bool
    ) -> None:
        self.text = text
        self.priority = priority
        self.stops_delivery = stops
        self.self_clearing = self_clearing

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Alarm:
    """An active alarm; ``acknowledged`` silences it, the cause ending (then an
    acknowledgement, unless it clears itself) ends it."""

    kind: AlarmKind
    since_ms: int
    acknowledged: bool = False
