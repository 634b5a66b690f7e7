"""The insulin actually delivered, as a step function of time: what the limits are checked on.

Rate ``rates[i]`` held from ``starts[i]`` to the next start (the last one up to ``end``).
``cumulative[i]`` is everything delivered before ``starts[i]``, so the amount delivered in any
interval is a difference of two exact numbers: a rolling 2-hour or 24-hour total costs one
binary search, whatever happened in between. The pump appends every integration step; steps at
the same rate merge into one segment.

Exact and cheap: rates are kept as integers over one common denominator (``den``: a rate is
``n / den`` U/h) and amounts as integers over ``den x ms per hour`` (U), so a step of delivery
is one integer multiplication. A rate whose denominator does not divide ``den`` (an extended
bolus over an unusual duration) widens ``den`` and rescales what is stored, so nothing is ever
rounded. The readings are the same exact ``Fraction`` values as before.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from fractions import Fraction

from pumpguard.clinical import InsulinDelivery
from pumpguard.clock import MS_PER_HOUR

__all__ = ["Ledger"]


class Ledger:
    def __init__(self, start_ms: int) -> None:
        self._den = 1
        self._starts: list[int] = [start_ms]
        self._rates: list[int] = [0]
        self._cumulative: list[int] = [0]
        self._end = start_ms
        self._total = 0

    @property
    def end_ms(self) -> int:
        return self._end

    @property
    def total_u(self) -> Fraction:
        return Fraction(self._total, self._den * MS_PER_HOUR)

    @property
    def per_unit(self) -> int:
        """Integer amounts per unit of insulin (``den x ms per hour``)."""
        return self._den * MS_PER_HOUR

    def units_between(self, start_ms: int, end_ms: int) -> int:
        """``between`` as an integer over ``per_unit`` (valid until the next ``scaled``)."""
        return self._units_before(end_ms) - self._units_before(start_ms)

    def rate_units_at(self, when_ms: int) -> int:
        """``rate_at`` as integer amounts per millisecond (valid until the next ``scaled``)."""
        if when_ms < self._starts[0] or when_ms >= self._end:
            return 0
        return self._rates[bisect.bisect_right(self._starts, when_ms) - 1]

    def scaled(self, rate_u_h: Fraction) -> int:
        """``rate_u_h`` as integer amounts per millisecond, widening ``den`` if it must."""
        return self._scaled(rate_u_h)

    def _scaled(self, rate_u_h: Fraction) -> int:
        """``rate_u_h`` as an integer over ``den`` (widening ``den`` if it must)."""
        q = rate_u_h.denominator
        if self._den % q:
            factor = math.lcm(self._den, q) // self._den
            self._den *= factor
            self._rates = [r * factor for r in self._rates]
            self._cumulative = [c * factor for c in self._cumulative]
            self._total *= factor
        return rate_u_h.numerator * (self._den // q)

    def add(self, start_ms: int, end_ms: int, rate_u_h: Fraction) -> None:
        """Record delivery at ``rate_u_h`` from ``start_ms`` (the end so far) to ``end_ms``."""
        if start_ms != self._end or end_ms < start_ms:
            raise ValueError("delivery is recorded contiguously and forwards in time")
        if end_ms == start_ms:
            return
        rate = self._scaled(rate_u_h)
        if rate != self._rates[-1]:
            if self._starts[-1] == start_ms:
                self._rates[-1] = rate
            else:
                self._cumulative.append(self._total)
                self._starts.append(start_ms)
                self._rates.append(rate)
        self._total += rate * (end_ms - start_ms)
        self._end = end_ms

    def _units_before(self, when_ms: int) -> int:
        if when_ms <= self._starts[0]:
            return self._cumulative[0]
        when_ms = min(when_ms, self._end)
        i = bisect.bisect_right(self._starts, when_ms) - 1
        return self._cumulative[i] + self._rates[i] * (when_ms - self._starts[i])

    def cumulative_at(self, when_ms: int) -> Fraction:
        """Units delivered before ``when_ms`` (clamped to the recorded span)."""
        return Fraction(self._units_before(when_ms), self._den * MS_PER_HOUR)

    def between(self, start_ms: int, end_ms: int) -> Fraction:
        units = self._units_before(end_ms) - self._units_before(start_ms)
        return Fraction(units, self._den * MS_PER_HOUR)

    def rate_at(self, when_ms: int) -> Fraction:
        """The rate delivered during the millisecond starting at ``when_ms`` (zero outside)."""
        if when_ms < self._starts[0] or when_ms >= self._end:
            return Fraction(0)
        return Fraction(self._rates[bisect.bisect_right(self._starts, when_ms) - 1], self._den)

    def next_change_after(self, when_ms: int) -> int | None:
        """The first time after ``when_ms`` at which the recorded rate changes."""
        i = bisect.bisect_right(self._starts, when_ms)
        return self._starts[i] if i < len(self._starts) else None

    def deliveries_since(self, since_ms: int) -> Iterator[InsulinDelivery]:
        """The recorded delivery from ``since_ms`` on, one constant-rate piece per segment."""
        ends = [*self._starts[1:], self._end]
        scale = self._den * MS_PER_HOUR
        for start, end, rate in zip(self._starts, ends, self._rates, strict=True):
            start = max(start, since_ms)
            if end <= start or rate == 0:
                continue
            yield InsulinDelivery(start, end, Fraction(rate * (end - start), scale))

    def changes_in(self, after_ms: int, until_ms: int) -> list[int]:
        """The times in ``(after_ms, until_ms]`` at which the recorded rate changes."""
        lo = bisect.bisect_right(self._starts, after_ms)
        hi = bisect.bisect_right(self._starts, until_ms)
        return self._starts[lo:hi]

    def reach(self, start_ms: int, amount: Fraction) -> int | None:
        """The first time by which at least ``amount`` has been delivered since ``start_ms``
        (None if the record does not hold that much)."""
        need = -(-amount.numerator * self.per_unit // amount.denominator)
        if need <= 0:
            return start_ms
        ends = [*self._starts[1:], self._end]
        got = 0
        for i in range(max(0, bisect.bisect_right(self._starts, start_ms) - 1), len(ends)):
            begin = max(self._starts[i], start_ms)
            rate = self._rates[i]
            if ends[i] <= begin or rate <= 0:
                continue
            here = rate * (ends[i] - begin)
            if got + here >= need:
                return begin - (-(need - got) // rate)
            got += here
        return None

    def forget_before(self, when_ms: int) -> None:
        """Drop segments that ended before ``when_ms`` (the cumulative totals stay absolute)."""
        i = bisect.bisect_right(self._starts, when_ms) - 1
        if i > 0:
            del self._starts[:i], self._rates[:i], self._cumulative[:i]
