"""Time for every state machine in pumpguard, real or virtual.

Firmware, protocols and detectors never read the system time themselves: they are handed a
``Clock``. The lab drives a ``VirtualClock`` (days in seconds, exactly reproducible); a device
running against a live server gets a ``SystemClock``. Time is an integer number of milliseconds,
so no rounding of floating-point seconds can ever change a delivered volume.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["MS_PER_HOUR", "MS_PER_MINUTE", "Clock", "SystemClock", "VirtualClock"]

MS_PER_MINUTE = 60_000
MS_PER_HOUR = 3_600_000


@runtime_checkable
class Clock(Protocol):
    """A source of the current time in integer milliseconds since the Unix epoch."""

    def now_ms(self) -> int: ...


class VirtualClock:
    """A clock that moves only when told to, and never backwards."""

    def __init__(self, start_ms: int = 0) -> None:
        if start_ms < 0:
            raise ValueError("start_ms must not be negative")
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def advance(self, ms: int) -> int:
        if ms < 0:
            raise ValueError("a virtual clock cannot go backwards")
        self._now += ms
        return self._now

    def advance_to(self, when_ms: int) -> int:
        return self.advance(when_ms - self._now)


class SystemClock:
    """Real time that only moves forward at the rate of a monotonic clock.

    Anchored to the wall clock once, at construction, so timestamps read as dates; after that,
    a wall-clock step (NTP, a technician, an attacker) cannot shorten a PCA lockout or make a
    VTBI complete early, because intervals come from ``time.monotonic_ns``.
    """

    def __init__(self) -> None:
        self._wall_at_start = time.time_ns()
        self._mono_at_start = time.monotonic_ns()

    def now_ms(self) -> int:
        elapsed = time.monotonic_ns() - self._mono_at_start
        return (self._wall_at_start + elapsed) // 1_000_000
