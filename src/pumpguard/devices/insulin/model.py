"""What the insulin pump can do mechanically and electrically, and the states it shows.

Numbers and their sources are in docs/devices/insulin.md. Where a number is a modelling choice
rather than a published device specification, the document says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from pumpguard.clinical import RAPID_ACTING_ADULT, InsulinCurve
from pumpguard.clock import MS_PER_HOUR

__all__ = ["InsulinPumpModel", "PumpState"]


class PumpState(StrEnum):
    """What the pump is doing.

    ``suspended`` was asked for by a command (the user, the phone or the automated controller);
    ``stopped`` is a stop by an alarm (occlusion, empty reservoir, flat battery, a delivery
    limit reached), which only the user at the pump restarts.
    """

    RUNNING = "running"
    SUSPENDED = "suspended"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class InsulinPumpModel:
    """The capabilities of one insulin pump type (U-100 insulin)."""

    name: str = "pumpguard insulin pump"
    units_per_ml: int = 100
    reservoir_capacity_u: Decimal = Decimal(300)
    low_reservoir_u: Decimal = Decimal(20)
    bolus_step_u: Decimal = Decimal("0.05")
    basal_step_u_h: Decimal = Decimal("0.025")
    bolus_speed_u_h: Decimal = Decimal(90)
    extended_minutes: tuple[int, int, int] = (30, 480, 30)
    """Extended bolus duration: (shortest, longest, step) in minutes."""
    temp_basal_minutes: tuple[int, int, int] = (30, 1440, 30)
    """Temporary basal duration: (shortest, longest, step) in minutes."""
    temp_basal_percent: tuple[int, int] = (200, 10)
    """Percent temporary basal: (highest, step); 0 % is allowed."""
    profile_step_minutes: int = 30
    remote_cancel_window_ms: int = 30_000
    history_capacity: int = 1024
    max_command_id_length: int = 64
    battery_capacity_mah: Decimal = Decimal(1200)
    idle_draw_ma: Decimal = Decimal(1)
    delivering_draw_ma: Decimal = Decimal(2)
    bolus_draw_ma: Decimal = Decimal(30)
    low_battery_hours: int = 24
    insulin: InsulinCurve = field(default=RAPID_ACTING_ADULT)

    def __post_init__(self) -> None:
        per_step = self.bolus_step_u * MS_PER_HOUR / self.bolus_speed_u_h
        if per_step != per_step.to_integral_value():
            raise ValueError("one bolus step must take a whole number of milliseconds")
