"""Controllers of the insulin pump: bolus calculator, open-loop basal-bolus, AID."""

from pumpguard.devices.controller.aid import AidController, Decision, MeterReading
from pumpguard.devices.controller.basal_bolus import (
    CGM_HIGH_MGDL,
    STALE_MS,
    BasalBolusController,
    fresh_glucose,
)
from pumpguard.devices.controller.bolus import (
    BolusCalculator,
    BolusInputError,
    BolusRecommendation,
)
from pumpguard.devices.controller.iob import InsulinHistory
from pumpguard.devices.controller.link import DirectLink, PumpClient, PumpLink
from pumpguard.devices.controller.settings import (
    GUARDRAILS,
    Guardrail,
    GuardrailError,
    TherapySettings,
)

__all__ = [
    "CGM_HIGH_MGDL",
    "GUARDRAILS",
    "STALE_MS",
    "AidController",
    "BasalBolusController",
    "BolusCalculator",
    "BolusInputError",
    "BolusRecommendation",
    "Decision",
    "DirectLink",
    "Guardrail",
    "GuardrailError",
    "InsulinHistory",
    "MeterReading",
    "PumpClient",
    "PumpLink",
    "TherapySettings",
    "fresh_glucose",
]
