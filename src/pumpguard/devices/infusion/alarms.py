"""Pump alarms: priority (IEC 60601-1-8), whether they stop delivery, and their IEEE 11073 code.

A stopping alarm halts the pump at once and delivery restarts only when a clinician at the pump
resumes it after the cause is gone: a pump never restarts itself after an occlusion or air.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pumpguard.devices.common import AlarmPriority

__all__ = ["Alarm", "AlarmKind", "AlarmPriority"]


class AlarmKind(Enum):
    """(text, priority, stops delivery, IEEE 11073-10101 event code, reference id).

    Codes are partition 3 (events): 196608 + term, as listed in NIST RTMMS and the IHE PCD TF.
    No term exists for the unconfirmed-programme and paused-too-long reminders; they carry no
    code rather than a borrowed one.
    """

    OCCLUSION = ("occlusion", AlarmPriority.HIGH, True, 196940, "MDC_EVT_FLUID_LINE_OCCL")
    AIR_IN_LINE = ("air-in-line", AlarmPriority.HIGH, True, 197200, "MDC_EVT_FLUID_LINE_AIR")
    DOOR_OPEN = ("door-open", AlarmPriority.HIGH, True, 197084, "MDC_EVT_DOOR_POSN_ERR")
    BATTERY_DEPLETED = ("battery-depleted", AlarmPriority.HIGH, True, 197336, "MDC_EVT_BATT_DEPL")
    SELF_TEST_FAILED = ("self-test-failed", AlarmPriority.HIGH, True, 196678, "MDC_EVT_MALF")
    RESERVOIR_EMPTY = ("reservoir-empty", AlarmPriority.HIGH, True, 196634, "MDC_EVT_EMPTY")
    BATTERY_LOW = ("battery-low", AlarmPriority.MEDIUM, False, 196802, "MDC_EVT_BATT_LO")
    VTBI_COMPLETE = ("vtbi-complete", AlarmPriority.MEDIUM, False, 197332, "MDC_EVT_VOL_INFUS_COMP")
    UNCONFIRMED_PROGRAMME = ("unconfirmed-programme", AlarmPriority.MEDIUM, False, None, "")
    RESERVOIR_LOW = (
        "reservoir-low",
        AlarmPriority.MEDIUM,
        False,
        197334,
        "MDC_EVT_VOL_INFUS_NEAR_COMP",
    )
    PAUSED_TOO_LONG = ("paused-too-long", AlarmPriority.MEDIUM, False, None, "")
    SECONDARY_COMPLETE = (
        "secondary-complete",
        AlarmPriority.LOW,
        False,
        197330,
        "MDC_EVT_CALLBACK",
    )

    def __init__(
        self, text: str, priority: AlarmPriority, stops: bool, mdc_code: int | None, mdc_ref: str
    ) -> None:
        self.text = text
        self.priority = priority
        self.stops_delivery = stops
        self.mdc_code = mdc_code
        self.mdc_ref = mdc_ref

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Alarm:
    """An active alarm; ``acknowledged`` silences it, the cause clearing ends it."""

    kind: AlarmKind
    since_ms: int
    acknowledged: bool = False
