"""A device battery: charge in mAh, drained by the device's current draw, refilled on mains.

Charge is kept in mA x ms (current times integer milliseconds), which is exact, so the instant a
battery crosses a threshold can be computed in advance and a state machine stops exactly there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

from pumpguard.clock import MS_PER_HOUR

__all__ = ["Battery"]


@dataclass(slots=True)
class Battery:
    """A battery of ``capacity_mah``, full unless told otherwise; ``mains`` means charging."""

    capacity_mah: Decimal
    charge_current_ma: Decimal = Decimal(1000)
    mains: bool = False
    _charge: Decimal = field(init=False)

    def __post_init__(self) -> None:
        self._charge = self.capacity_mah * MS_PER_HOUR

    @property
    def charge_mah(self) -> Decimal:
        return self._charge / MS_PER_HOUR

    @property
    def fraction(self) -> Decimal:
        return self._charge / (self.capacity_mah * MS_PER_HOUR)

    def advance(self, dt_ms: int, load_ma: Decimal) -> None:
        """Drain at ``load_ma`` (or charge, on mains) for ``dt_ms``."""
        if self.mains:
            full = self.capacity_mah * MS_PER_HOUR
            self._charge = min(full, self._charge + self.charge_current_ma * dt_ms)
        else:
            self._charge = max(Decimal(0), self._charge - load_ma * dt_ms)

    def at_or_below(self, level_mah: Decimal) -> bool:
        return self._charge <= level_mah * MS_PER_HOUR

    def ms_until(self, level_mah: Decimal, load_ma: Decimal) -> int | None:
        """Whole milliseconds until the charge falls to ``level_mah`` (None: it will not)."""
        level = level_mah * MS_PER_HOUR
        if self.mains or load_ma <= 0 or self._charge <= level:
            return None
        return math.ceil((self._charge - level) / load_ma)
