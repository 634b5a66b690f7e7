"""The simulated clinician who answers auto-programmed orders at the pump (``up --demo``).

An order only pre-fills a pump; this nurse is the human step the design requires before any
delivery starts. She acts through the keypad like anyone at the bedside (``Confirm``,
``Cancel``, ``Program`` for an edit), so the firmware's rules still decide what is allowed and
the pump reports what she did through its ordinary event log. Her choices are seeded by
``NurseSettings.seed``, the pump and the order, so a demo run can be replayed.
"""

from __future__ import annotations

import dataclasses
import random
from decimal import ROUND_DOWN, Decimal

from pumpguard.devices.infusion import Cancel, Confirm, InfusionPump, Program
from pumpguard.server.device_runtime import SimulatedPump, Workload
from pumpguard.server.ehr_gateway import NurseSettings

__all__ = ["bedside_nurse"]

_EDIT_FACTOR = Decimal("0.9")
_REASON = "order reviewed at the bedside"


def _confirm(firmware: InfusionPump) -> bool:
    verdict = firmware.pending_verdict
    reason = _REASON if verdict is not None and verdict.is_soft else None
    return firmware.handle(Confirm(override_reason=reason)).accepted


def bedside_nurse(settings: NurseSettings, inner: Workload | None = None) -> Workload:
    """A workload that answers a pre-filled order after the configured delay and otherwise
    leaves the pump to ``inner`` (the ward's own nurse, if any)."""
    due: dict[tuple[str, str], int] = {}

    def act(pump: SimulatedPump) -> None:
        order = pump.pending_order
        firmware = pump.firmware
        if order is None or not firmware.awaiting_confirmation:
            if inner is not None:
                inner(pump)
            return
        rng = random.Random(f"{settings.seed}:{pump.ident}:{order}")
        delay_ms = int(settings.confirm_after_s * rng.uniform(0.5, 1.5) * 1000)
        now = pump.clock.now_ms()
        key = (pump.ident, order)
        if now < due.setdefault(key, now + delay_ms):
            return
        del due[key]
        roll = rng.random()
        programme = pump.pending_programme
        if roll < settings.reject_probability:
            firmware.handle(Cancel())
            return
        if roll < settings.reject_probability + settings.edit_probability and programme:
            dose = (programme.dose * _EDIT_FACTOR).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
            if dose > 0:
                firmware.handle(Program(dataclasses.replace(programme, dose=dose)))
        if not _confirm(firmware):
            firmware.handle(Cancel())

    return act
