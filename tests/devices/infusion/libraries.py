"""Library versions for the binding tests: the device-test library (v7) and variants whose
limits are tighter, looser, or whose care area or bag differs, so that a programme checked
against one of them behaves visibly differently under another."""

from __future__ import annotations

import copy
from enum import StrEnum
from typing import Any

from tests.devices.conftest import LIBRARY

from pumpguard.clinical import DrugLibrary, parse_library

__all__ = ["Variant", "variant_library"]


class Variant(StrEnum):
    SAME = "same"
    TIGHT = "tight"
    LOOSE = "loose"
    NO_ICU = "no-icu"
    OTHER_BAG = "other-bag"


def _entry(document: dict[str, Any], area: str, code: str) -> dict[str, Any]:
    care_area = next(a for a in document["care_areas"] if a["name"] == area)
    entry: dict[str, Any] = next(e for e in care_area["entries"] if e["code"] == code)
    return entry


def variant_library(version: int, variant: Variant) -> DrugLibrary:
    document = copy.deepcopy(LIBRARY)
    document["version"] = version
    heparin = _entry(document, "ICU", "HEP")
    saline = _entry(document, "ICU", "NS")
    vancomycin = _entry(document, "ICU", "VANC")
    pca = _entry(document, "Med-Surg", "MOR-PCA")["pca"]
    if variant is Variant.TIGHT:
        heparin["continuous"] = {"hard_min": 5, "soft_min": 8, "soft_max": 15, "hard_max": 20}
        saline["continuous"] = {"soft_max": 100, "hard_max": 150}
        vancomycin["continuous"] = {"soft_max": 500, "hard_max": 800}
        document["care_areas"][0]["max_rate_ml_h"] = 120
        pca["demand_dose"] = {"soft_max": 1, "hard_max": 1.5}
        pca["lockout_min"] = {"hard_min": 10, "soft_min": 12, "hard_max": 30}
        pca["hourly_limit"] = {"soft_max": 4, "hard_max": 5}
    elif variant is Variant.LOOSE:
        heparin["continuous"] = {"hard_min": 1, "soft_min": 5, "soft_max": 45, "hard_max": 60}
        saline["continuous"] = {"soft_max": 600, "hard_max": 900}
        vancomycin["continuous"] = {"soft_max": 1500, "hard_max": 2000}
        pca["demand_dose"] = {"soft_max": 4, "hard_max": 5}
        pca["lockout_min"] = {"hard_min": 2, "soft_min": 3, "hard_max": 30}
        pca["hourly_limit"] = {"soft_max": 12, "hard_max": 15}
    elif variant is Variant.NO_ICU:
        del document["care_areas"][0]
    elif variant is Variant.OTHER_BAG:
        heparin["concentration"] = {"amount": 25000, "unit": "units", "volume_ml": 500}
    return parse_library(document)
