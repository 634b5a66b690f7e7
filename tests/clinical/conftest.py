"""Shared fixtures for the clinical-domain tests: a small, valid drug library built in code.

The library is deliberately small but covers every rule the DERS check uses:

* ICU
  - Heparin 25,000 units in 250 mL (100 units/mL), units/kg/h, weight range 30-200 kg,
    continuous hard 2 / soft 10-25 / hard 40, bolus in units/kg soft 80 / hard 100.
  - Norepinephrine at two concentrations (4 mg and 8 mg in 250 mL), mcg/kg/min.
  - Nitroglycerin 50 mg in 250 mL (200 mcg/mL), mcg/min, soft 5-200 / hard 400.
  - Fentanyl PCA 1,000 mcg in 100 mL, mcg/h background, PCA rule in mcg.
  - Sodium chloride 0.9 % with no concentration, dosed in mL/h.
* Med-Surg
  - Heparin with tighter limits (hard max 25 units/kg/h).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pumpguard.clinical import FORMAT, DrugLibrary, parse_library

_LIBRARY: dict[str, Any] = {
    "format": FORMAT,
    "library_id": "test-lib",
    "version": 3,
    "name": "Test hospital drug library",
    "institution": "Test Hospital",
    "sources": [
        {"id": "ismp-2020", "citation": "ISMP Guidelines for Optimizing Safe IV Infusion, 2020"},
        {"id": "asp-2018", "citation": "ASHP standard concentrations, 2018"},
    ],
    "care_areas": [
        {
            "name": "ICU",
            "max_rate_ml_h": 999,
            "entries": [
                {
                    "name": "Heparin",
                    "code": "HEP25K",
                    "concentration": {"amount": 25000, "unit": "units", "volume_ml": 250},
                    "dose_unit": "units/kg/h",
                    "continuous": {"hard_min": 2, "soft_min": 10, "soft_max": 25, "hard_max": 40},
                    "bolus": {"dose_unit": "units/kg", "dose": {"soft_max": 80, "hard_max": 100}},
                    "weight_kg": {"min_kg": 30, "max_kg": 200},
                    "sources": ["ismp-2020"],
                },
                {
                    "name": "Norepinephrine",
                    "code": "NOREPI4",
                    "concentration": {"amount": 4, "unit": "mg", "volume_ml": 250},
                    "dose_unit": "mcg/kg/min",
                    "continuous": {"soft_min": 0.01, "soft_max": 1, "hard_max": 3},
                    "sources": ["ismp-2020", "asp-2018"],
                },
                {
                    "name": "Norepinephrine",
                    "code": "NOREPI8",
                    "concentration": {"amount": 8, "unit": "mg", "volume_ml": 250},
                    "dose_unit": "mcg/kg/min",
                    "continuous": {"soft_min": 0.01, "soft_max": 1, "hard_max": 3},
                },
                {
                    "name": "Nitroglycerin",
                    "code": "NTG50",
                    "concentration": {"amount": 50, "unit": "mg", "volume_ml": 250},
                    "dose_unit": "mcg/min",
                    "continuous": {"soft_min": 5, "soft_max": 200, "hard_max": 400},
                },
                {
                    "name": "Fentanyl PCA",
                    "code": "FENT-PCA",
                    "concentration": {"amount": 1000, "unit": "mcg", "volume_ml": 100},
                    "dose_unit": "mcg/h",
                    "continuous": {"soft_max": 50, "hard_max": 100},
                    "pca": {
                        "dose_unit": "mcg",
                        "demand_dose": {"soft_max": 50, "hard_max": 100},
                        "lockout_min": {"hard_min": 5, "hard_max": 60},
                        "hourly_limit": {"hard_max": 300},
                        "loading_dose": {"soft_max": 50, "hard_max": 100},
                    },
                    "pump_kinds": ["pca"],
                },
                {
                    "name": "Sodium chloride 0.9%",
                    "code": "NS",
                    "dose_unit": "mL/h",
                    "continuous": {"soft_max": 250, "hard_max": 500},
                    "vtbi_ml": {"hard_max": 1000},
                },
            ],
        },
        {
            "name": "Med-Surg",
            "entries": [
                {
                    "name": "Heparin",
                    "code": "HEP25K",
                    "concentration": {"amount": 25000, "unit": "units", "volume_ml": 250},
                    "dose_unit": "units/kg/h",
                    "continuous": {"soft_min": 10, "soft_max": 18, "hard_max": 25},
                }
            ],
        },
    ],
}


def build_library_dict() -> dict[str, Any]:
    """A fresh, mutable copy of the valid test library."""
    return copy.deepcopy(_LIBRARY)


@pytest.fixture
def library_dict() -> dict[str, Any]:
    """A fresh valid library as decoded JSON; tests may mutate it to introduce errors."""
    return build_library_dict()


@pytest.fixture(scope="session")
def library() -> DrugLibrary:
    """The valid test library, parsed (immutable, so shared by the whole session)."""
    return parse_library(build_library_dict(), "test library")
