"""Virtual patients: the UVA/Padova type 1 diabetes model over a cohort, with what goes around it.

Pure and deterministic (randomness is always seeded), NumPy throughout, no I/O except reading
the shipped patient parameter file. Devices and the lab drive a ``Cohort`` minute by minute
from their virtual clock; ``Cohort.run`` replays whole input arrays.

* ``patients``: the 30 simglucose virtual patients and their parameters (MIT-licensed numbers);
* ``model``: the model itself, vectorised over the cohort, checked against simglucose;
* ``scenarios``: fixed and seeded random meals, basal-bolus open-loop therapy;
* ``sensors``: CGM (Breton-Kovatchev noise, lag, sampling) and meter error models;
* ``metrics``: consensus glycemic metrics (TIR, TBR, TAR, CV, GMI, LBGI, HBGI);
* ``icgm``: the iCGM accuracy criteria A-K as a checker over paired readings.
"""

from pumpguard.physiology.icgm import (
    CriterionResult,
    IcgmReport,
    Outcome,
    check_icgm,
    clopper_pearson,
)
from pumpguard.physiology.metrics import (
    GlycemicMetrics,
    coefficient_of_variation,
    gmi,
    hbgi,
    lbgi,
    mean_glucose,
    risk_function,
    summarise,
    time_above,
    time_below,
    time_in_range,
)
from pumpguard.physiology.model import EAT_RATE_G_PER_MIN, Cohort, InputError, StateIndex
from pumpguard.physiology.patients import (
    PMOL_PER_U,
    STATE_SIZE,
    PatientGroup,
    UnknownPatientError,
    VirtualPatient,
    get_patient,
    get_patients,
    load_patients,
    patient_names,
)
from pumpguard.physiology.scenarios import (
    DEFAULT_MEAL_SLOTS,
    MINUTES_PER_DAY,
    FixedScenario,
    Meal,
    MealSlot,
    RandomMealScenario,
    Scenario,
    carbs_array,
    standard_therapy,
)
from pumpguard.physiology.sensors import (
    BRETON_KOVATCHEV_2008,
    ISO15197_REQUIRED_PCT,
    BgmMeter,
    BgmModel,
    CgmModel,
    CgmSensor,
    JohnsonSU,
    iso15197_within_pct,
)

__all__ = [
    "BRETON_KOVATCHEV_2008",
    "DEFAULT_MEAL_SLOTS",
    "EAT_RATE_G_PER_MIN",
    "ISO15197_REQUIRED_PCT",
    "MINUTES_PER_DAY",
    "PMOL_PER_U",
    "STATE_SIZE",
    "BgmMeter",
    "BgmModel",
    "CgmModel",
    "CgmSensor",
    "Cohort",
    "CriterionResult",
    "FixedScenario",
    "GlycemicMetrics",
    "IcgmReport",
    "InputError",
    "JohnsonSU",
    "Meal",
    "MealSlot",
    "Outcome",
    "PatientGroup",
    "RandomMealScenario",
    "Scenario",
    "StateIndex",
    "UnknownPatientError",
    "VirtualPatient",
    "carbs_array",
    "check_icgm",
    "clopper_pearson",
    "coefficient_of_variation",
    "get_patient",
    "get_patients",
    "gmi",
    "hbgi",
    "iso15197_within_pct",
    "lbgi",
    "load_patients",
    "mean_glucose",
    "patient_names",
    "risk_function",
    "standard_therapy",
    "summarise",
    "time_above",
    "time_below",
    "time_in_range",
]
