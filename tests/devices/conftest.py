"""A small drug library and pump factory for the device tests.

Limits are chosen so that tests can land on each side of each limit with round numbers:
Heparin 100 units/mL at 80 kg: 1 unit/kg/h = 0.8 mL/h, hard max 40 units/kg/h = 32 mL/h.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from pumpguard.clinical import FORMAT, DrugLibrary, PumpKind, parse_library
from pumpguard.clock import VirtualClock
from pumpguard.devices.infusion import InfusionPump, PowerOn, SetCareArea

LIBRARY: dict[str, Any] = {
    "format": FORMAT,
    "library_id": "device-tests",
    "version": 7,
    "name": "Device test library",
    "care_areas": [
        {
            "name": "ICU",
            "entries": [
                {
                    "name": "Heparin",
                    "code": "HEP",
                    "concentration": {"amount": 25000, "unit": "units", "volume_ml": 250},
                    "dose_unit": "units/kg/h",
                    "continuous": {"hard_min": 2, "soft_min": 10, "soft_max": 25, "hard_max": 40},
                    "weight_kg": {"min_kg": 30, "max_kg": 200},
                    "vtbi_ml": {"hard_max": 500},
                },
                {
                    "name": "Saline",
                    "code": "NS",
                    "dose_unit": "mL/h",
                    "continuous": {"soft_max": 250, "hard_max": 500},
                },
                {
                    "name": "Vancomycin",
                    "code": "VANC",
                    "concentration": {"amount": 1000, "unit": "mg", "volume_ml": 200},
                    "dose_unit": "mg/h",
                    "continuous": {"soft_max": 1000, "hard_max": 1500},
                    "max_duration_min": 240,
                    "pump_kinds": ["lvp"],
                },
            ],
        },
        {
            "name": "Med-Surg",
            "entries": [
                {
                    "name": "Morphine",
                    "code": "MOR-PCA",
                    "concentration": {"amount": 30, "unit": "mg", "volume_ml": 30},
                    "dose_unit": "mg/h",
                    "continuous": {"soft_max": 0, "hard_max": 1},
                    "pca": {
                        "dose_unit": "mg",
                        "demand_dose": {"soft_max": 2, "hard_max": 3},
                        "lockout_min": {"hard_min": 5, "soft_min": 6, "hard_max": 30},
                        "hourly_limit": {"soft_max": 8, "hard_max": 10},
                        "loading_dose": {"hard_max": 4},
                    },
                    "pump_kinds": ["pca"],
                }
            ],
        },
    ],
}


def make_library(version: int = 7) -> DrugLibrary:
    return parse_library({**LIBRARY, "version": version})


@pytest.fixture
def library() -> DrugLibrary:
    return make_library()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(1_700_000_000_000)


PumpFactory = Callable[..., InfusionPump]


@pytest.fixture
def make_pump(library: DrugLibrary, clock: VirtualClock) -> PumpFactory:
    """A powered pump in a care area, ready to be programmed."""

    def build(kind: PumpKind = PumpKind.LVP, care_area: str = "ICU", **kwargs: Any) -> InfusionPump:
        pump = InfusionPump(kind, clock, library=library, **kwargs)
        assert pump.handle(PowerOn()).accepted
        assert pump.handle(SetCareArea(care_area)).accepted
        return pump

    return build


KG80 = Decimal(80)
