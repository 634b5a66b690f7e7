"""The mechanical and electrical capabilities of each pump type, and the states a pump shows."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from pumpguard.clinical import PumpKind
from pumpguard.clock import MS_PER_MINUTE

__all__ = ["PumpModel", "PumpState"]


class PumpState(StrEnum):
    """What the pump is doing, as shown on its screen."""

    OFF = "off"
    FAILED = "failed"
    IDLE = "idle"
    PROGRAMMING = "programming"
    INFUSING = "infusing"
    PAUSED = "paused"
    KVO = "kvo"


@dataclass(frozen=True, slots=True)
class PumpModel:
    """The mechanical and electrical capabilities of one pump type."""

    kind: PumpKind
    name: str
    min_rate_ml_h: Decimal
    max_rate_ml_h: Decimal
    kvo_rate_ml_h: Decimal
    max_vtbi_ml: Decimal
    pca_bolus_rate_ml_h: Decimal = Decimal(60)
    unconfirmed_timeout_ms: int = 2 * MS_PER_MINUTE
    battery_capacity_mah: Decimal = Decimal(3000)
    idle_draw_ma: Decimal = Decimal(30)
    infusing_draw_ma: Decimal = Decimal(150)
    low_battery_minutes: int = 30
    volume_step: Decimal = Decimal("0.01")

    def rate_step(self, rate_ml_h: Decimal) -> Decimal:
        """Rate resolution: 0.01 mL/h below 100 mL/h, 0.1 mL/h from 100 mL/h."""
        return Decimal("0.01") if rate_ml_h < 100 else Decimal("0.1")

    @classmethod
    def for_kind(cls, kind: PumpKind) -> PumpModel:
        return _MODELS[kind]


_MODELS = {
    PumpKind.LVP: PumpModel(
        PumpKind.LVP, "pumpguard LVP", Decimal("0.1"), Decimal(999), Decimal(1), Decimal(9999)
    ),
    PumpKind.SYRINGE: PumpModel(
        PumpKind.SYRINGE,
        "pumpguard syringe",
        Decimal("0.01"),
        Decimal(200),
        Decimal("0.1"),
        Decimal(60),
    ),
    PumpKind.PCA: PumpModel(
        PumpKind.PCA, "pumpguard PCA", Decimal("0.01"), Decimal(100), Decimal(0), Decimal(250)
    ),
}
