"""Insulin on board and basal schedules: the insulin arithmetic a pump and its controllers share.

**Insulin on board (IOB)** is the part of the insulin already delivered that has not acted yet.
It is computed with the exponential insulin action curve of Dragan Maksimovic (LoopKit/Loop
issue #388, 2017), the curve used by Loop (``ExponentialInsulinModel``) and by oref0/OpenAPS
("rapid-acting" and "ultra-rapid" curves). With ``td`` the duration of insulin action and
``tp`` the time of peak activity (minutes)::

    tau = tp (1 - tp/td) / (1 - 2 tp/td)      time constant of the exponential decay
    a   = 2 tau / td                           rise time factor
    S   = 1 / (1 - a + (1 + a) exp(-td/tau))   scale factor: IOB(0) = 1, IOB(td) = 0
    activity(t) = (S / tau^2) t (1 - t/td) exp(-t/tau)                      (per minute)
    IOB(t)      = 1 - S (1 - a) ((t^2 / (tau td (1 - a)) - t/tau - 1) exp(-t/tau) + 1)

Loop also delays the curve (the preset ``rapidActingAdult``: 360 min action, 75 min peak,
10 min delay); during the delay nothing has acted and IOB is exactly 1.

Insulin delivered at a constant rate over an interval (basal, temp basal, a bolus given at the
pump's bolus speed, an extended bolus) is integrated over the curve exactly, with the closed-form
antiderivative of ``IOB(t)``; it is not cut into pulses. Arithmetic is ``Decimal`` at 40
significant digits (``exp`` is correctly rounded there), so results are reproducible bit for
bit; IOB is exactly 1 per unit during the delay and exactly 0 after ``delay + td``.

**Basal profiles** are 24-hour schedules of rates (U/h) starting at minutes after midnight in
the pump's local time; the first segment starts at 00:00 and each runs until the next one (the
last until midnight). Totals are exact fractions.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction

__all__ = [
    "MINUTES_PER_DAY",
    "RAPID_ACTING_ADULT",
    "BasalProfile",
    "BasalSegment",
    "InsulinCurve",
    "InsulinDelivery",
    "InsulinError",
]

MINUTES_PER_DAY = 1440
_MS_PER_MINUTE = 60_000
_MS_PER_HOUR = 3_600_000
_PREC = 40
_MAX_SEGMENTS = 48


class InsulinError(ValueError):
    """An insulin curve, delivery or basal profile that makes no sense."""


Number = Decimal | Fraction | int


def _dec(value: Number) -> Decimal:
    """Exactly, or to ``_PREC`` digits for a fraction without a finite decimal form."""
    if isinstance(value, Fraction):
        return Decimal(value.numerator) / Decimal(value.denominator)
    return Decimal(value)


def _is_number(value: object) -> bool:
    return isinstance(value, Decimal | Fraction | int) and not isinstance(value, bool)


@functools.lru_cache(maxsize=16)
def _terms(action_min: int, peak_min: int) -> tuple[Decimal, Decimal, Decimal]:
    with localcontext() as ctx:
        ctx.prec = _PREC
        td, tp = Decimal(action_min), Decimal(peak_min)
        tau = tp * (1 - tp / td) / (1 - 2 * tp / td)
        a = 2 * tau / td
        s = 1 / (1 - a + (1 + a) * (-td / tau).exp())
        return tau, a, s


@dataclass(frozen=True, slots=True)
class InsulinDelivery:
    """``units`` of insulin delivered at a constant rate from ``start_ms`` to ``end_ms``.

    A bolus given at once has ``start_ms == end_ms``.
    """

    start_ms: int
    end_ms: int
    units: Fraction | Decimal

    def __post_init__(self) -> None:
        if self.end_ms < self.start_ms:
            raise InsulinError("a delivery cannot end before it starts")
        units = self.units
        finite = _is_number(units) and not (isinstance(units, Decimal) and not units.is_finite())
        if not finite or units < 0:
            raise InsulinError("delivered units must be a finite number, not negative")


@dataclass(frozen=True, slots=True)
class InsulinCurve:
    """The exponential insulin action curve, with an optional delay (all in whole minutes)."""

    action_min: int = 360
    peak_min: int = 75
    delay_min: int = 0

    def __post_init__(self) -> None:
        for name in ("action_min", "peak_min", "delay_min"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InsulinError(f"{name} must be a whole number of minutes")
        if self.delay_min < 0:
            raise InsulinError("the delay cannot be negative")
        if not 0 < 2 * self.peak_min < self.action_min:
            raise InsulinError(
                f"the peak ({self.peak_min} min) must lie between 0 and half the duration of "
                f"action ({self.action_min} min) for the exponential curve"
            )

    @property
    def total_ms(self) -> int:
        """How long after delivery insulin still counts: delay plus duration of action."""
        return (self.delay_min + self.action_min) * _MS_PER_MINUTE

    def iob_fraction(self, minutes: Number) -> Decimal:
        """The fraction of a dose still on board ``minutes`` after it was given."""
        with localcontext() as ctx:
            ctx.prec = _PREC
            t = self._since_delay(minutes)
            if t <= 0:
                return Decimal(1)
            if t >= self.action_min:
                return Decimal(0)
            tau, a, s = _terms(self.action_min, self.peak_min)
            td = Decimal(self.action_min)
            poly = t * t / (tau * td * (1 - a)) - t / tau - 1
            return 1 - s * (1 - a) * (poly * (-t / tau).exp() + 1)

    def activity(self, minutes: Number) -> Decimal:
        """The fraction of a dose acting per minute, ``minutes`` after it was given."""
        with localcontext() as ctx:
            ctx.prec = _PREC
            t = self._since_delay(minutes)
            if t <= 0 or t >= self.action_min:
                return Decimal(0)
            tau, _, s = _terms(self.action_min, self.peak_min)
            return s / (tau * tau) * t * (1 - t / self.action_min) * (-t / tau).exp()

    def iob_minutes(self, minutes: Number) -> Decimal:
        """``integral_0^minutes iob_fraction(u) du``: what a constant infusion leaves on board.

        One unit per minute infused for ``m`` minutes leaves ``iob_minutes(m)`` units on board;
        an infusion from ``m1`` to ``m2`` minutes ago leaves the difference.
        """
        with localcontext() as ctx:
            ctx.prec = _PREC
            x = _dec(minutes)
            if x < 0:
                raise InsulinError("time since delivery cannot be negative")
            delay = Decimal(self.delay_min)
            if x <= delay:
                return x
            return delay + self._exp_integral(min(x - delay, Decimal(self.action_min)))

    def _exp_integral(self, y: Decimal) -> Decimal:
        """Closed form of ``integral_0^y IOB(u) du`` for the undelayed curve.

        ``IOB(u) = 1 - c - c P(u) exp(-u/tau)`` with ``c = S (1 - a)`` and the quadratic
        ``P(u) = A u^2 + B u - 1``; ``P(u) exp(-u/tau)`` integrates to
        ``-tau exp(-u/tau) Q(u)`` with ``Q = P + tau P' + tau^2 P''``.
        """
        tau, a, s = _terms(self.action_min, self.peak_min)
        td = Decimal(self.action_min)
        c = s * (1 - a)
        big_a = 1 / (tau * td * (1 - a))
        big_b = -1 / tau

        def q(u: Decimal) -> Decimal:
            return (
                big_a * u * u
                + (big_b + 2 * big_a * tau) * u
                + (-1 + big_b * tau + 2 * big_a * tau * tau)
            )

        poly_integral = -tau * ((-y / tau).exp() * q(y) - q(Decimal(0)))
        return (1 - c) * y - c * poly_integral

    def iob(self, deliveries: Iterable[InsulinDelivery], at_ms: int) -> Decimal:
        """Units on board at ``at_ms`` from ``deliveries``; insulin not yet given at ``at_ms``
        (a delivery starting later, or the part of one still running) does not count."""
        with localcontext() as ctx:
            ctx.prec = _PREC
            total = Decimal(0)
            for d in deliveries:
                end = min(d.end_ms, at_ms)
                if d.start_ms > at_ms or d.units == 0 or at_ms - end >= self.total_ms:
                    continue
                age = Decimal(at_ms - d.start_ms) / _MS_PER_MINUTE
                if d.end_ms == d.start_ms:
                    total += _dec(d.units) * self.iob_fraction(age)
                elif end > d.start_ms:
                    per_minute = _dec(d.units) * _MS_PER_MINUTE / (d.end_ms - d.start_ms)
                    since_end = Decimal(at_ms - end) / _MS_PER_MINUTE
                    total += per_minute * (self.iob_minutes(age) - self.iob_minutes(since_end))
            return +total

    def _since_delay(self, minutes: Number) -> Decimal:
        if not _is_number(minutes):
            raise InsulinError("time since delivery must be a number")
        x = _dec(minutes)
        if not x.is_finite() or x < 0:
            raise InsulinError("time since delivery must be a finite number, not negative")
        return x - self.delay_min


RAPID_ACTING_ADULT = InsulinCurve(action_min=360, peak_min=75, delay_min=10)
"""Loop's ``rapidActingAdult`` preset (Humalog/Novolog/Apidra in adults): 6 h, peak 75 min,
10 min delay. oref0's "rapid-acting" curve has the same peak, without the delay."""


@dataclass(frozen=True, slots=True)
class BasalSegment:
    """From ``start_min`` minutes after midnight (pump local time), ``rate_u_h`` units per hour."""

    start_min: int
    rate_u_h: Decimal


@dataclass(frozen=True, slots=True)
class BasalProfile:
    """A 24-hour basal schedule: segments sorted by start, the first at 00:00.

    Construction checks the structure (and refuses binary floats, NaN and negative rates);
    a pump checks its own resolution and limits on top.
    """

    segments: tuple[BasalSegment, ...]

    def __post_init__(self) -> None:
        problems = _profile_problems(self.segments)
        if problems:
            raise InsulinError("basal profile: " + "; ".join(problems))

    @classmethod
    def flat(cls, rate_u_h: Decimal | str | int) -> BasalProfile:
        return cls((BasalSegment(0, Decimal(rate_u_h)),))

    @classmethod
    def from_schedule(cls, schedule: Mapping[str, Decimal | str | int]) -> BasalProfile:
        """``{"00:00": "0.8", "06:30": "1.2"}``: start times as HH:MM, rates as decimals."""
        segments = []
        for text, rate in schedule.items():
            hours, sep, minutes = text.partition(":")
            if not sep or not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
                raise InsulinError(f"basal profile: start {text!r} is not HH:MM")
            if isinstance(rate, float):
                raise InsulinError("basal profile: rates must be decimals, not binary floats")
            try:
                value = Decimal(rate)
            except ArithmeticError as exc:
                raise InsulinError(f"basal profile: rate {rate!r} is not a number") from exc
            segments.append(BasalSegment(int(hours) * 60 + int(minutes), value))
        return cls(tuple(segments))

    def rate_at(self, minute_of_day: Number) -> Decimal:
        """The scheduled rate at a time of day (minutes after midnight, fractions allowed)."""
        minute = Fraction(minute_of_day) % MINUTES_PER_DAY
        rate = self.segments[0].rate_u_h
        for segment in self.segments:
            if segment.start_min > minute:
                break
            rate = segment.rate_u_h
        return rate

    def next_start_after(self, minute_of_day: Number) -> int:
        """Minutes after midnight of the next segment start strictly after ``minute_of_day``;
        ``MINUTES_PER_DAY`` for the midnight that starts the first segment again."""
        minute = Fraction(minute_of_day) % MINUTES_PER_DAY
        return next((s.start_min for s in self.segments if s.start_min > minute), MINUTES_PER_DAY)

    @property
    def max_rate_u_h(self) -> Decimal:
        return max(s.rate_u_h for s in self.segments)

    @property
    def daily_total_u(self) -> Fraction:
        return self._cumulative(MINUTES_PER_DAY)

    def max_total_in(self, window_min: int) -> Fraction:
        """The most insulin the schedule gives in any ``window_min`` minutes (across midnight).

        The total over ``[s, s + w]`` is piecewise linear in ``s`` with corners where ``s`` or
        ``s + w`` meets a segment start, so the maximum is at one of those.
        """
        if not 0 < window_min <= MINUTES_PER_DAY:
            raise InsulinError("the window must be between 1 minute and 24 hours")
        starts = [s.start_min for s in self.segments]
        candidates = set(starts) | {(b - window_min) % MINUTES_PER_DAY for b in starts}
        cumulative = self._cumulative
        return max(cumulative(s + window_min) - cumulative(s) for s in candidates)

    def _cumulative(self, minute: int) -> Fraction:
        """Units scheduled from midnight to ``minute`` (which may run into the next day)."""
        starts, before, rates = _prefix(self.segments)
        days, rest = divmod(minute, MINUTES_PER_DAY)
        i = bisect.bisect_right(starts, rest) - 1
        return days * before[-1] + before[i] + rates[i] * (rest - starts[i]) / 60


@functools.lru_cache(maxsize=64)
def _prefix(
    segments: tuple[BasalSegment, ...],
) -> tuple[list[int], list[Fraction], list[Fraction]]:
    """Segment starts, units scheduled before each (and, last, in the whole day), rates."""
    starts = [s.start_min for s in segments]
    rates = [Fraction(s.rate_u_h) for s in segments]
    before = [Fraction(0)]
    for start, end, rate in zip(starts, [*starts[1:], MINUTES_PER_DAY], rates, strict=True):
        before.append(before[-1] + rate * (end - start) / 60)
    return starts, before, rates


def _profile_problems(segments: object) -> list[str]:
    if not isinstance(segments, tuple) or not segments:
        return ["needs a tuple of at least one segment"]
    if len(segments) > _MAX_SEGMENTS:
        return [f"at most {_MAX_SEGMENTS} segments"]
    problems = []
    previous = -1
    for index, segment in enumerate(segments, start=1):
        if not isinstance(segment, BasalSegment):
            problems.append(f"segment {index} is not a BasalSegment")
            continue
        start, rate = segment.start_min, segment.rate_u_h
        if not isinstance(start, int) or isinstance(start, bool):
            problems.append(f"segment {index}: start must be whole minutes after midnight")
        elif not 0 <= start < MINUTES_PER_DAY:
            problems.append(f"segment {index}: start {start} min is not within the day")
        elif start <= previous:
            problems.append(f"segment {index}: starts are not in increasing order")
        else:
            previous = start
        if not isinstance(rate, Decimal | int) or isinstance(rate, bool):
            problems.append(
                f"segment {index}: rate must be a Decimal (binary floats cannot hold 0.025)"
            )
        elif not Decimal(rate).is_finite() or rate < 0:
            problems.append(f"segment {index}: rate must be a finite number, not negative")
    first = segments[0]
    if isinstance(first, BasalSegment) and first.start_min != 0:
        problems.append("the first segment must start at 00:00")
    return problems
