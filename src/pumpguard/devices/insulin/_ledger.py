"""The insulin actually delivered, as a step function of time: what the limits are checked on.

Rate ``rates[i]`` (U/h) held from ``starts[i]`` to the next start (the last one up to ``end``).
``cumulative[i]`` is everything delivered before ``starts[i]``, so the amount delivered in any
interval is a difference of two exact fractions: a rolling 2-hour or 24-hour total costs one
binary search, whatever happened in between. The pump appends every integration step; steps at
the same rate merge into one segment.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from fractions import Fraction

from pumpguard.clinical import InsulinDelivery
from pumpguard.clock import MS_PER_HOUR

__all__ = ["Ledger"]

_ZERO = Fraction(0)


class Ledger:
    def __init__(self, start_ms: int) -> None:
        self._starts: list[int] = [start_ms]
        self._rates: list[Fraction] = [_ZERO]
        self._cumulative: list[Fraction] = [_ZERO]
        self._end = start_ms

    @property
    def end_ms(self) -> int:
        return self._end

    @property
    def total_u(self) -> Fraction:
        return self.cumulative_at(self._end)

    def add(self, start_ms: int, end_ms: int, rate_u_h: Fraction) -> None:
        """Record delivery at ``rate_u_h`` from ``start_ms`` (the end so far) to ``end_ms``."""
        if start_ms != self._end or end_ms < start_ms:
            raise ValueError("delivery is recorded contiguously and forwards in time")
        if end_ms == start_ms:
            return
        if rate_u_h != self._rates[-1]:
            if self._starts[-1] == start_ms:
                self._rates[-1] = rate_u_h
            else:
                self._cumulative.append(self.cumulative_at(start_ms))
                self._starts.append(start_ms)
                self._rates.append(rate_u_h)
        self._end = end_ms

    def cumulative_at(self, when_ms: int) -> Fraction:
        """Units delivered before ``when_ms`` (clamped to the recorded span)."""
        if when_ms <= self._starts[0]:
            return self._cumulative[0]
        when_ms = min(when_ms, self._end)
        i = bisect.bisect_right(self._starts, when_ms) - 1
        return self._cumulative[i] + self._rates[i] * (when_ms - self._starts[i]) / MS_PER_HOUR

    def between(self, start_ms: int, end_ms: int) -> Fraction:
        return self.cumulative_at(end_ms) - self.cumulative_at(start_ms)

    def rate_at(self, when_ms: int) -> Fraction:
        """The rate delivered during the millisecond starting at ``when_ms`` (zero outside)."""
        if when_ms < self._starts[0] or when_ms >= self._end:
            return _ZERO
        return self._rates[bisect.bisect_right(self._starts, when_ms) - 1]

    def next_change_after(self, when_ms: int) -> int | None:
        """The first time after ``when_ms`` at which the recorded rate changes."""
        i = bisect.bisect_right(self._starts, when_ms)
        return self._starts[i] if i < len(self._starts) else None

    def deliveries_since(self, since_ms: int) -> Iterator[InsulinDelivery]:
        """The recorded delivery from ``since_ms`` on, one constant-rate piece per segment."""
        ends = [*self._starts[1:], self._end]
        for start, end, rate in zip(self._starts, ends, self._rates, strict=True):
            start = max(start, since_ms)
            if end <= start or rate == 0:
                continue
            yield InsulinDelivery(start, end, rate * (end - start) / MS_PER_HOUR)

    def forget_before(self, when_ms: int) -> None:
        """Drop segments that ended before ``when_ms`` (the cumulative totals stay absolute)."""
        i = bisect.bisect_right(self._starts, when_ms) - 1
        if i > 0:
            del self._starts[:i], self._rates[:i], self._cumulative[:i]
