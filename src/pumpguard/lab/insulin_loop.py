"""The closed (or open) insulin loop: virtual patients, CGMs, controllers and insulin pumps.

Per patient the loop composes one CGM transmitter, one controller and one insulin pump (the
firmware of ``devices.insulin``); the patients themselves are one vectorised physiology
``Cohort``. A ``VirtualClock`` moves minute by minute; every minute, in order:

1. each CGM senses its patient's glucose and, every 5 minutes, hands a reading to the
   controller;
2. meals due this minute are announced to the controller (``basal-bolus`` and ``aid``: a
   calculator bolus), the controller runs (``aid``: a cycle every 5 minutes);
3. every hour, a user whose reservoir is below 50 U changes it at the pump (suspend, new
   300 U reservoir, resume), as people do every few days;
4. the clock advances one minute; each pump integrates its delivery exactly, and the insulin
   it delivered in that minute goes, with the carbohydrate handed over, into ``Cohort.step``.

Devices talk by direct calls (no radio yet). Settings come from each virtual patient's own
parameters (basal rate, carb ratio, correction factor, as simglucose's basal-bolus controller
uses them), rounded to the pump's steps and, where outside Loop's guardrails, clamped into them
(an ISF below 10 mg/dL/U becomes 10: a smaller correction, the safe side).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import TextIO

import numpy as np
import numpy.typing as npt

from pumpguard.clinical import BasalProfile
from pumpguard.clock import MS_PER_MINUTE, VirtualClock
from pumpguard.devices.controller import (
    AidController,
    BasalBolusController,
    DirectLink,
    TherapySettings,
)
from pumpguard.devices.insulin import (
    AcknowledgeAlarm,
    ChangeReservoir,
    InsulinPump,
    Resume,
    Suspend,
)
from pumpguard.devices.sensors import CgmTransmitter
from pumpguard.physiology import (
    MINUTES_PER_DAY,
    Cohort,
    FixedScenario,
    GlycemicMetrics,
    Meal,
    PatientGroup,
    RandomMealScenario,
    Scenario,
    VirtualPatient,
    get_patients,
    summarise,
)

__all__ = [
    "ControllerKind",
    "LoopConfig",
    "LoopResult",
    "MealSyntaxError",
    "parse_meals",
    "run_loop",
    "settings_for",
]

FloatArray = npt.NDArray[np.float64]

_MEAL = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*=\s*(\d+(?:\.\d+)?)\s*$")


class ControllerKind(StrEnum):
    NONE = "none"
    BASAL_BOLUS = "basal-bolus"
    AID = "aid"


class MealSyntaxError(ValueError):
    """A ``--meals`` text that is not ``HH:MM=grams,...``."""


def parse_meals(text: str) -> FixedScenario:
    """``"07:00=45,12:00=70,18:30=80"``: daily meals at local times with grams of carbs."""
    meals = []
    for part in text.split(","):
        match = _MEAL.match(part)
        if match is None:
            raise MealSyntaxError(
                f"meal {part.strip()!r} is not HH:MM=grams (for example 07:00=45)"
            )
        hours, minutes, grams = int(match[1]), int(match[2]), float(match[3])
        if hours > 23 or minutes > 59:
            raise MealSyntaxError(f"meal {part.strip()!r}: {match[1]}:{match[2]} is not a time")
        if not 0 < grams <= 250:
            raise MealSyntaxError(f"meal {part.strip()!r}: grams must be above 0 and at most 250")
        meals.append(Meal(hours * 60 + minutes, grams))
    return FixedScenario(tuple(sorted(meals)))


def _step(value: float, step: Decimal) -> Decimal:
    return max(step, (Decimal(str(value)) / step).to_integral_value() * step)


CORRECTION_WAIT_MIN = 180.0
"""No correction above range within 3 h of the last bolus (the stacking rule; see
docs/devices/insulin-system.md)."""


MAX_BOLUS_U = {PatientGroup.CHILD: 5.0, PatientGroup.ADOLESCENT: 10.0, PatientGroup.ADULT: 15.0}
"""Max bolus by age group: AndroidAPS's hard limits for a child (5 U) and a teenager (10 U);
adults 15 U (AndroidAPS allows 17 U)."""


def settings_for(patient: VirtualPatient, *, smb: bool = False) -> TherapySettings:
    """Therapy settings from a virtual patient's parameters, within the guardrails."""
    basal = float(_step(patient.basal_u_per_h, Decimal("0.025")))
    return TherapySettings(
        carb_ratio_g_per_u=min(max(patient.carb_ratio_g_per_u, 2.0), 150.0),
        isf_mgdl_per_u=min(max(patient.correction_factor_mgdl_per_u, 10.0), 500.0),
        basal_u_h=basal,
        target_low_mgdl=100.0,
        target_high_mgdl=140.0,
        suspend_threshold_mgdl=75.0,
        max_bolus_u=MAX_BOLUS_U[patient.group],
        max_basal_u_h=min(12.0, max(4.0 * basal, 0.5)),
        max_iob_u=max(1.0, 2.0 * basal),
        smb=smb,
        correction_wait_min=CORRECTION_WAIT_MIN,
        carbs_when_low=True,
    )


@dataclass(frozen=True)
class LoopConfig:
    patients: Sequence[str]
    days: int
    scenario: Scenario
    controller: ControllerKind
    cgm_seed: int = 0
    smb: bool = False
    rescue_carbs: bool = False
    """The "rule of 15" scenario option (off unless asked for): see ``RESCUE_G``."""

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if not self.patients:
            raise ValueError("at least one patient")


@dataclass
class LoopResult:
    names: tuple[str, ...]
    bg: FloatArray
    """True (model) glucose after each minute, shape (patients, minutes)."""
    cgm: FloatArray
    """The CGM value on display each minute (NaN before the first reading)."""
    insulin_u: FloatArray
    carbs_g: FloatArray
    metrics: list[GlycemicMetrics] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    rescues: int = 0
    """Rescue-carb treatments taken (only with ``LoopConfig.rescue_carbs``)."""

    @property
    def cohort(self) -> dict[str, float]:
        """Pooled over every patient-minute (equal lengths: the mean of the patients)."""
        pooled = summarise(self.bg.reshape(1, -1))[0].as_dict()
        return {k: float(v) for k, v in pooled.items()}

    def write_trace(self, handle: TextIO) -> None:
        handle.write("patient,minute,bg_mgdl,cgm_mgdl,insulin_u,carbs_g\n")
        for i, name in enumerate(self.names):
            for m in range(self.bg.shape[1]):
                cgm = self.cgm[i, m]
                handle.write(
                    f"{name},{m},{self.bg[i, m]:.2f},{'' if np.isnan(cgm) else f'{cgm:.0f}'},"
                    f"{self.insulin_u[i, m]:.5f},{self.carbs_g[i, m]:g}\n"
                )


RESCUE_G = 15.0
RESCUE_BELOW_MGDL = 70.0
RESCUE_EVERY_MIN = 15
"""With ``rescue_carbs``, a patient whose CGM shows below 70 mg/dL eats 15 g of fast carbs, and
again after 15 minutes if still below ("rule of 15", ADA Standards of Care, hypoglycaemia
treatment). Rescue carbs are not announced to the controller (nobody boluses for them). A
scenario option for studies of hypoglycaemia treatment, off by default and reported separately:
the controllers' figures are measured without it."""

REFILL_BELOW_U = Decimal(50)
"""The user changes the reservoir (at the pump) once it holds less than this."""


def _refill(pump: InsulinPump) -> str | None:
    """The user's reservoir change: suspend, new 300 U reservoir, acknowledge, resume."""
    if pump.reservoir_u >= REFILL_BELOW_U or pump.status().bolus is not None:
        return None
    capacity = pump.model.reservoir_capacity_u
    for command in (Suspend(), ChangeReservoir(capacity), AcknowledgeAlarm(), Resume()):
        result = pump.handle(command)
        if not result.accepted and not isinstance(command, AcknowledgeAlarm):
            return f"{pump.serial}: reservoir change failed at {type(command).__name__}: " + (
                result.message
            )
    return None


def run_loop(config: LoopConfig, progress: Callable[[int, int], None] | None = None) -> LoopResult:
    """Run the loop; ``progress(minutes_done, minutes_total)`` is called once per hour."""
    patients = get_patients(config.patients)
    n = len(patients)
    minutes = config.days * MINUTES_PER_DAY
    carbs = config.scenario.carbs(n, minutes)
    clock = VirtualClock(0)
    cohort = Cohort(patients)
    pumps: list[InsulinPump] = []
    cgms: list[CgmTransmitter] = []
    controllers: list[BasalBolusController | None] = []
    for i, patient in enumerate(patients):
        settings = settings_for(patient, smb=config.smb)
        pump = InsulinPump(
            clock,
            BasalProfile.flat(Decimal(str(settings.basal_u_h))),
            serial=f"PUMP-{i + 1:03d}",
        )
        pumps.append(pump)
        cgms.append(
            CgmTransmitter(clock, seed=config.cgm_seed * 1000 + i, warmup_min=0, serial=f"CGM-{i}")
        )
        link = DirectLink(pump)
        if config.controller is ControllerKind.NONE:
            controllers.append(None)
        elif config.controller is ControllerKind.BASAL_BOLUS:
            controllers.append(BasalBolusController(clock, link, settings, id_prefix=f"bb{i}"))
        else:
            aid = AidController(clock, link, settings, id_prefix=f"aid{i}")
            aid.keep_decisions = False
            controllers.append(aid)
    bg_out = np.empty((n, minutes))
    cgm_out = np.full((n, minutes), np.nan)
    insulin_out = np.empty((n, minutes))
    bg = cohort.bg_mgdl
    delivered = np.array([float(p.delivered_u) for p in pumps])
    refill_alerts: list[str] = []
    last_rescue = np.full(n, -RESCUE_EVERY_MIN)
    rescues = 0
    for m in range(minutes):
        meal_now = carbs[:, m].copy()
        for i in range(n):
            reading = cgms[i].sense(float(bg[i]))
            controller = controllers[i]
            if controller is None:
                continue
            if reading is not None:
                controller.receive(reading)
            if meal_now[i] > 0:
                controller.announce_meal(float(meal_now[i]))
            controller.step()
        for i in range(n):
            latest = cgms[i].latest
            if latest is not None:
                cgm_out[i, m] = latest.glucose_mgdl
        if m % 60 == 30:
            for pump in pumps:
                problem = _refill(pump)
                if problem is not None:
                    refill_alerts.append(problem)
        clock.advance(MS_PER_MINUTE)
        now_delivered = np.array([float(p.delivered_u) for p in pumps])
        insulin = now_delivered - delivered
        delivered = now_delivered
        insulin_out[:, m] = insulin
        if config.rescue_carbs:
            shown = cgm_out[:, m]
            treat = (shown < RESCUE_BELOW_MGDL) & (m - last_rescue >= RESCUE_EVERY_MIN)
            if treat.any():
                carbs[treat, m] += RESCUE_G
                last_rescue[treat] = m
                rescues += int(treat.sum())
        bg = cohort.step(carbs[:, m], np.maximum(insulin, 0.0))
        bg_out[:, m] = bg
        if progress is not None and (m + 1) % 60 == 0:
            progress(m + 1, minutes)
    alerts = [a for c in controllers if c is not None for a in c.client.alerts] + refill_alerts
    return LoopResult(
        cohort.names, bg_out, cgm_out, insulin_out, carbs, summarise(bg_out), alerts, rescues
    )


def random_scenario(seed: int) -> RandomMealScenario:
    return RandomMealScenario(seed)
