"""A device battery: charge in mAh, drained by the device's current draw, refilled on mains.

Exact decimal arithmetic over integer milliseconds, so that the time a battery crosses a
threshold can be computed in advance and a state machine can stop at that instant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from pumpguard.clock import MS_PER_HOUR

__all__ = ["Battery"]


@dataclass(slots=True)
class Battery:
    """``charge_mah`` of ``capacity_mah``; ``mains`` means external power (charging)."""

    capacity_mah: Decimal
    charge_mah: Decimal
    charge_current_ma: Decimal = Decimal(1000)
    mains: bool = False

    @property
    def fraction(self) -> Decimal:
        return self.charge_mah / self.capacity_mah

    def advance(self, dt_ms: int, load_ma: Decimal) -> None:
        """Drain at ``load_ma`` (or charge, on mains) for ``dt_ms``."""
        if self.mains:
            gained = self.charge_current_ma * dt_ms / MS_PER_HOUR
            self.charge_mah = min(self.capacity_mah, self.charge_mah + gained)
        else:
            used = load_ma * dt_ms / MS_PER_HOUR
            self.charge_mah = max(Decimal(0), self.charge_mah - used)

    def ms_until(self, level_mah: Decimal, load_ma: Decimal) -> int | None:
        """Whole milliseconds until the charge falls to ``level_mah`` (None: it will not)."""
        if self.mains or load_ma <= 0 or self.charge_mah <= level_mah:
            return None
        return math.ceil((self.charge_mah - level_mah) / load_ma * MS_PER_HOUR)
