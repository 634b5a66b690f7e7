"""What the insulin pump is running: boluses (pending, delivering, finished), the temp basal,
and the rolling limits delivery is held to.

Amounts are exact fractions of units; times are integer milliseconds. A bolus delivers
``amount / duration`` per millisecond from its start, so it has delivered exactly its amount at
``start + duration``: a normal bolus at the pump's bolus speed, an extended one over its
programmed duration.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE
from pumpguard.devices.insulin.alarms import AlarmKind
from pumpguard.devices.insulin.commands import CommandSource, Rejection
from pumpguard.devices.insulin.log import BolusKind, BolusStatus, BolusView, TempBasalView

__all__ = ["RunningBolus", "TempBasal", "Window", "units_text"]

_ZERO = Fraction(0)


@dataclass(slots=True)
class RunningBolus:
    """A bolus and what it has delivered; kept after it ends, for the history."""

    bolus_id: int
    kind: BolusKind
    source: CommandSource
    command_id: str | None
    amount: Fraction
    requested_ms: int
    start_ms: int
    duration_ms: int
    status: BolusStatus
    delivered: Fraction = _ZERO
    end_ms: int | None = None
    end_reason: str = ""

    @property
    def active(self) -> bool:
        return self.status in (BolusStatus.PENDING, BolusStatus.DELIVERING)

    @property
    def remaining(self) -> Fraction:
        return self.amount - self.delivered

    def rate(self) -> Fraction:
        if self.status is not BolusStatus.DELIVERING:
            return _ZERO
        return self.amount * MS_PER_HOUR / self.duration_ms

    def view(self) -> BolusView:
        return BolusView(
            self.bolus_id,
            self.kind,
            self.source,
            self.command_id,
            self.amount,
            self.delivered,
            self.status,
            self.requested_ms,
            self.start_ms,
            self.duration_ms,
            self.end_ms,
            self.end_reason,
        )

    def describe(self) -> str:
        what = f"{self.kind} bolus #{self.bolus_id} of {units_text(self.amount)} U"
        if self.kind is BolusKind.EXTENDED:
            what += f" over {self.duration_ms // MS_PER_MINUTE} min"
        return what


@dataclass(frozen=True, slots=True)
class TempBasal:
    source: CommandSource
    command_id: str | None
    rate_u_h: Decimal | None
    percent: int | None
    start_ms: int
    end_ms: int

    def view(self) -> TempBasalView:
        return TempBasalView(
            self.source, self.command_id, self.rate_u_h, self.percent, self.start_ms, self.end_ms
        )

    def describe(self) -> str:
        what = f"{self.percent} %" if self.percent is not None else f"{self.rate_u_h} U/h"
        minutes = (self.end_ms - self.start_ms) // MS_PER_MINUTE
        return f"temp basal {what} for {minutes} min"


@dataclass(frozen=True, slots=True)
class Window:
    """A rolling delivery limit: what is delivered in ``length_ms`` may not exceed ``limit``."""

    name: str
    length_ms: int
    limit: Fraction
    alarm: AlarmKind
    rejection: Rejection


def units_text(value: Fraction | Decimal) -> str:
    """Units for a message, to three decimals (rounded half-even, for display only)."""
    exact = Fraction(value)
    text = Decimal(exact.numerator) / Decimal(exact.denominator)
    return f"{text.quantize(Decimal('0.001')).normalize():f}"
