"""The acceptance matrix: every attack against both profiles, measured against its twin."""

from __future__ import annotations

import pytest
from tests.lab.attacks.support import (
    LEGACY_NOT_REPRODUCED,
    Matrix,
    check_legacy,
    check_secure,
    run_matrix,
)

from pumpguard.lab.attacks import INSULIN_CATALOGUE, Attack, get_attack
from pumpguard.link import LinkEventCode, LinkProfile

ATTACKS = [pytest.param(a, id=a.name) for a in INSULIN_CATALOGUE]


@pytest.mark.parametrize("attack", ATTACKS)
def test_legacy_reproduces_the_attack(attack: type[Attack], matrix: Matrix) -> None:
    result = matrix[(attack.name, LinkProfile.LEGACY)]
    if attack.name in LEGACY_NOT_REPRODUCED:
        assert not result.succeeded and result.logged
        assert result.blocked_by == "frame-validation"
        return
    check_legacy(attack, result)


@pytest.mark.parametrize("attack", ATTACKS)
def test_secure_stops_or_detects_the_attack(attack: type[Attack], matrix: Matrix) -> None:
    check_secure(attack, matrix[(attack.name, LinkProfile.SECURE)])


def test_results_carry_the_issue_keys(matrix: Matrix) -> None:
    row = matrix[("forged-bolus", LinkProfile.SECURE)].to_json()
    assert {"name", "system", "reference", "profile", "succeeded", "blocked_by", "logged"} <= set(
        row
    )
    assert set(row["harm"]) >= {"extra_insulin_u", "min_bg_mgdl", "minutes_below_54"}


def test_jamming_is_an_availability_attack_detected_under_secure(matrix: Matrix) -> None:
    secure = matrix[("jamming", LinkProfile.SECURE)]
    legacy = matrix[("jamming", LinkProfile.LEGACY)]
    assert secure.availability and secure.succeeded and secure.blocked_by is None
    assert str(LinkEventCode.LINK_LOST) in secure.events
    assert not legacy.logged


def test_sweyntooth_hangs_the_legacy_radio_and_secure_refuses_it(matrix: Matrix) -> None:
    legacy = matrix[("malformed-frames", LinkProfile.LEGACY)]
    secure = matrix[("malformed-frames", LinkProfile.SECURE)]
    assert legacy.succeeded and "pump radio hung for" in legacy.evidence
    assert "crash: none" in legacy.evidence and legacy.foreign_commands == 0
    assert not secure.succeeded and secure.blocked_by == "frame-validation" and secure.logged
    assert "pump radio hung" not in secure.evidence


def test_the_flood_costs_the_secure_pump_less_battery(matrix: Matrix) -> None:
    secure = matrix[("wakeup-flood", LinkProfile.SECURE)]
    assert secure.blocked_by == "wakeup-budget"
    assert str(LinkEventCode.WAKEUP_BUDGET_EXHAUSTED) in secure.events


def test_eavesdropping_secure_decodes_nothing_and_cannot_be_logged(matrix: Matrix) -> None:
    secure = matrix[("eavesdrop", LinkProfile.SECURE)]
    assert "decoded 0 glucose readings, 0 dosing commands, 0 serials" in secure.evidence
    assert not secure.logged


@pytest.mark.slow
@pytest.mark.parametrize(("patient", "seed"), [("child#001", 2), ("adolescent#003", 3)])
def test_full_matrix_on_other_patients_and_seeds(patient: str, seed: int) -> None:
    found = run_matrix(patient, seed)
    for attack in INSULIN_CATALOGUE:
        if attack.name not in LEGACY_NOT_REPRODUCED:
            check_legacy(attack, found[(attack.name, LinkProfile.LEGACY)])
        check_secure(attack, found[(attack.name, LinkProfile.SECURE)])


def test_sensor_spoof_fallback_adds_no_time_below_54_for_a_child_prone_to_lows() -> None:
    """child#008 seed 5 spends 39 min below 54 mg/dL with no attack; the sensor spoof used to add
    12 more (limited mode's flat basal ran through falls the twin's AID suspended for). With the
    controller's meter low-glucose suspend (fingersticks every 30 min, suspend only) it adds
    none (measured: -39, the attacked run never goes below 54; minimum 54.2 mg/dL)."""
    result = get_attack("spoofed-cgm-sensor").run(LinkProfile.SECURE, "child#008", 5)
    assert result.logged and result.blocked_by == "cgm-plausibility"
    assert result.harm.minutes_below_54 <= 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 5])
def test_jamming_fallback_adds_no_time_below_54_for_a_child_prone_to_lows(seed: int) -> None:
    """child#008 spends 29-39 min a day below 54 mg/dL with no attack; a 2 h jam at 08:00 used
    to add 5, 3 and 5 minutes (seeds 1, 2, 5): after the jam the AID, seeing high glucose and
    little insulin on board, caught up at full strength (1.05 U/h where the twin ran 0.8). With
    the controller's half-strength recovery (``RECOVERY_MIN``) it adds none (measured on seed 5:
    -4 minutes, 52.6 against 52.3 mg/dL; the other figures in docs/attacks.md)."""
    result = get_attack("jamming").run(LinkProfile.SECURE, "child#008", seed)
    assert result.logged
    assert result.harm.minutes_below_54 <= 0
