"""Bolus calculator arithmetic (hand-computed) and settings guardrails."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from pumpguard.devices.controller import (
    BolusCalculator,
    BolusInputError,
    GuardrailError,
    TherapySettings,
)

BASE: dict[str, Any] = {
    "carb_ratio_g_per_u": 10.0,
    "isf_mgdl_per_u": 50.0,
    "basal_u_h": 1.0,
    "target_low_mgdl": 100.0,
    "target_high_mgdl": 120.0,
    "suspend_threshold_mgdl": 70.0,
    "max_bolus_u": 10.0,
}


def calc() -> BolusCalculator:
    return BolusCalculator(TherapySettings(**BASE))


@pytest.mark.parametrize(
    ("carbs", "bg", "iob", "expected"),
    [
        (60, 220, 1.0, "7.00"),  # 6 + (220-120)/50 - 1 = 7
        (45, 110, 0.0, "4.50"),  # in range: carbs only
        (30, 75, 0.0, "2.50"),  # 3 + (75-100)/50 = 2.5
        (34.9, 110, 0.0, "3.45"),  # 3.49 rounds down to the 0.05 step
        (20, 110, 5.0, "0"),  # IOB covers it: nothing
        (0, 270, 0.5, "2.50"),  # correction only: (270-120)/50 - 0.5
        (50, None, 0.0, "5.00"),  # no glucose: carbs only
    ],
)
def test_bolus_arithmetic(carbs: float, bg: float | None, iob: float, expected: str) -> None:
    rec = calc().recommend(carbs, bg, iob)
    assert rec.amount_u == Decimal(expected)
    assert not rec.capped


def test_bolus_capped_at_max_bolus() -> None:
    rec = calc().recommend(200, 300, 0)
    assert rec.unrounded_u == pytest.approx(23.6)
    assert rec.amount_u == Decimal("10.00")
    assert rec.capped


def test_no_bolus_below_suspend_threshold() -> None:
    rec = calc().recommend(60, 65, 0)
    assert rec.amount_u == 0
    assert "treat the low" in rec.note


@pytest.mark.parametrize(
    ("carbs", "bg", "iob", "match"),
    [
        (-1, 120, 0, "carbs"),
        (float("nan"), 120, 0, "carbs"),
        (300, 120, 0, "carbs"),
        (30, 700, 0, "glucose"),
        (30, float("inf"), 0, "glucose"),
        (30, 120, float("nan"), "insulin on board"),
    ],
)
def test_bolus_input_errors(carbs: float, bg: float, iob: float, match: str) -> None:
    with pytest.raises(BolusInputError, match=match):
        calc().recommend(carbs, bg, iob)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("suspend_threshold_mgdl", 60.0, "suspend threshold 60 mg/dL is outside"),
        ("suspend_threshold_mgdl", 111.0, "suspend threshold"),
        ("target_low_mgdl", 80.0, "correction range low"),
        ("target_high_mgdl", 200.0, "correction range high"),
        ("isf_mgdl_per_u", 5.0, "insulin sensitivity 5 mg/dL/U"),
        ("isf_mgdl_per_u", 600.0, "insulin sensitivity"),
        ("carb_ratio_g_per_u", 1.0, "carb ratio 1 g/U"),
        ("carb_ratio_g_per_u", 151.0, "carb ratio"),
        ("basal_u_h", 31.0, "scheduled basal 31 U/h"),
        ("basal_u_h", -0.1, "scheduled basal"),
        ("max_bolus_u", 31.0, "max bolus 31 U"),
        ("max_bolus_u", 0.0, "max bolus"),
        ("isf_mgdl_per_u", float("nan"), "finite"),
    ],
)
def test_guardrails_reject_unsafe_settings(field: str, value: float, match: str) -> None:
    with pytest.raises(GuardrailError, match=match):
        TherapySettings(**{**BASE, field: value})


def test_guardrails_list_every_problem_and_check_coherence() -> None:
    with pytest.raises(GuardrailError) as info:
        TherapySettings(**{**BASE, "isf_mgdl_per_u": 5.0, "carb_ratio_g_per_u": 200.0})
    assert len(info.value.problems) == 2
    with pytest.raises(GuardrailError, match="low is above"):
        TherapySettings(**{**BASE, "target_low_mgdl": 150.0, "target_high_mgdl": 120.0})
    with pytest.raises(GuardrailError, match="above max basal"):
        TherapySettings(**{**BASE, "basal_u_h": 5.0, "max_basal_u_h": 4.0})


def test_boundaries_are_allowed() -> None:
    TherapySettings(
        **{
            **BASE,
            "suspend_threshold_mgdl": 67.0,
            "target_low_mgdl": 87.0,
            "target_high_mgdl": 180.0,
            "isf_mgdl_per_u": 10.0,
            "carb_ratio_g_per_u": 150.0,
            "max_bolus_u": 30.0,
        }
    )


def test_max_safe_basal_and_low_threshold() -> None:
    s = TherapySettings(**{**BASE, "max_basal_u_h": 4.0})
    assert s.max_safe_basal_u_h == 3.0  # min(4, 3 x 1, 4 x 1)
    s = TherapySettings(**{**BASE, "max_basal_u_h": 2.0})
    assert s.max_safe_basal_u_h == 2.0
    # oref0: 100 - 0.5 (100 - 40) = 70; the user's 70 suspend threshold is the same.
    assert s.low_threshold_mgdl == 70.0
    s = TherapySettings(**{**BASE, "target_low_mgdl": 120.0, "suspend_threshold_mgdl": 70.0})
    assert s.low_threshold_mgdl == 80.0


def test_recent_bolus_leaves_out_the_correction_above_range_only() -> None:
    above = calc().recommend(60, 220, 1.0, correct_high=False)
    assert above.amount_u == Decimal("5.00")  # 6 - 1: the (220-120)/50 correction is left out
    assert above.correction_u == 0 and "recently" in above.note
    below = calc().recommend(30, 75, 0.0, correct_high=False)
    assert below.amount_u == Decimal("2.50")  # the correction below range still applies


def test_carbs_eaten_below_the_suspend_threshold() -> None:
    covered = BolusCalculator(TherapySettings(**{**BASE, "carbs_when_low": True}))
    rec = covered.recommend(60, 65, 0)
    assert rec.amount_u == Decimal("5.30")  # 6 + (65-100)/50 = 5.3
    no_carbs = covered.recommend(0, 65, 0)
    assert no_carbs.amount_u == 0 and "treat the low" in no_carbs.note
    assert calc().recommend(60, 65, 0).amount_u == 0  # off by default


@pytest.mark.parametrize("wait", [-1.0, 1441.0, True])
def test_correction_wait_guardrail(wait: float) -> None:
    with pytest.raises(GuardrailError, match="correction wait"):
        TherapySettings(**{**BASE, "correction_wait_min": wait})
