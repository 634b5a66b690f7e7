"""Open-loop therapy: the scheduled basal runs on the pump; announced meals get a bolus from
the bolus calculator (the user's phone app, so boluses are REMOTE commands with ids).

Two rules decide the glucose the calculator corrects from (docs/devices/insulin-system.md has
the traces that led to them): no correction above range within ``correction_wait_min`` of the
last bolus (a post-meal peak is carbohydrate that bolus already covers: correcting it stacks
insulin), and none from a CGM reading at the top of its range, which means "HIGH", not 400."""

from __future__ import annotations

from collections.abc import Sequence

from pumpguard.clock import Clock
from pumpguard.devices.controller.bolus import BolusCalculator, BolusRecommendation
from pumpguard.devices.controller.link import PumpClient, PumpLink
from pumpguard.devices.controller.settings import TherapySettings
from pumpguard.devices.insulin import Bolus, CommandResult, CommandSource
from pumpguard.devices.sensors import CgmReading

__all__ = ["CGM_HIGH_MGDL", "STALE_MS", "BasalBolusController", "fresh_glucose"]

STALE_MS = 15 * 60_000
"""Glucose older than this is not used (Loop's 15-minute rule)."""

CGM_HIGH_MGDL = 400.0
"""The top of a CGM's reportable range: a reading there means "HIGH", an unknown value above
it, and is not corrected from (see ``announce_meal``)."""


def fresh_glucose(readings: Sequence[CgmReading], now_ms: int) -> CgmReading | None:
    """The newest reading if it is at most 15 minutes old (and not from the future)."""
    if not readings:
        return None
    latest = readings[-1]
    if not 0 <= now_ms - latest.time_ms <= STALE_MS:
        return None
    return latest


class BasalBolusController:
    """Meal boluses on request; the pump's scheduled basal does the rest."""

    source = CommandSource.REMOTE

    def __init__(
        self, clock: Clock, link: PumpLink, settings: TherapySettings, *, id_prefix: str
    ) -> None:
        self.clock = clock
        self.settings = settings
        self.calculator = BolusCalculator(settings)
        self.client = PumpClient(clock, link, id_prefix=id_prefix)
        self._readings: list[CgmReading] = []
        self.last_bolus_ms: int | None = None
        """When the last meal or correction bolus was accepted."""

    def receive(self, reading: CgmReading) -> None:
        """A new CGM reading (out-of-order or repeated readings are ignored)."""
        if not self._readings or reading.time_ms > self._readings[-1].time_ms:
            self._readings.append(reading)
            if len(self._readings) > 64:
                del self._readings[:32]

    def glucose(self) -> CgmReading | None:
        return fresh_glucose(self._readings, self.clock.now_ms())

    def announce_meal(self, carbs_g: float) -> tuple[BolusRecommendation, CommandResult | None]:
        """Compute and send the meal bolus (nothing is sent for a zero recommendation)."""
        self.client.sync()
        reading = self.glucose()
        now = self.clock.now_ms()
        wait_ms = self.settings.correction_wait_min * 60_000
        recent = self.last_bolus_ms is not None and now - self.last_bolus_ms < wait_ms
        glucose = None if reading is None else reading.glucose_mgdl
        if glucose is not None and glucose >= CGM_HIGH_MGDL:
            glucose = None
        rec = self.calculator.recommend(
            carbs_g,
            glucose,
            max(self.client.iob_u(), 0.0),
            correct_high=not recent and self.corrections_allowed(),
        )
        if rec.amount_u <= 0:
            return rec, None
        command = Bolus(rec.amount_u, source=self.source, command_id=self.client.next_id())
        result = self.client.send(command)
        if result is None or result.accepted:
            self.last_bolus_ms = now
        return rec, result

    def corrections_allowed(self) -> bool:
        """Whether a meal bolus may add a correction above range (subclasses restrict it)."""
        return True

    def step(self) -> None:
        """Called every minute; the open loop only settles lost answers."""
        if self.client.uncertain:
            self.client.resolve()
