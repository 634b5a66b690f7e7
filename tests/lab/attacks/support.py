"""Shared by the attack tests: running the matrix and the acceptance checks per result."""

from __future__ import annotations

from pumpguard.lab.attacks import INSULIN_CATALOGUE, Attack, AttackResult, Harm, get_attack
from pumpguard.link import LinkEventCode, LinkProfile

Matrix = dict[tuple[str, LinkProfile], AttackResult]

LEGACY_NOT_REPRODUCED: set[str] = set()
"""Attacks the legacy profile does not reproduce: none. (``malformed-frames`` was here until the
legacy pump got its configured SweynTooth quirk, ``LegacyQuirks.radio_hangs_on_bad_length``.)"""


def run_matrix(patient: str, seed: int) -> Matrix:
    return {
        (a.name, profile): get_attack(a.name).run(profile, patient, seed)
        for a in INSULIN_CATALOGUE
        for profile in LinkProfile
    }


def _harmful_or_disclosing(attack: type[Attack], result: AttackResult) -> bool:
    harm = result.harm
    assert isinstance(harm, Harm)
    dosed = (
        abs(harm.extra_insulin_u) > 0.05
        or harm.min_bg_mgdl < harm.baseline_min_bg_mgdl - 1
        or harm.minutes_above_250 > 0
    )
    return dosed or attack.passive or attack.availability or result.foreign_commands > 0


def check_legacy(attack: type[Attack], result: AttackResult) -> None:
    assert result.profile == "legacy" and result.system == "insulin"
    assert result.succeeded, result.evidence
    assert result.blocked_by is None
    assert _harmful_or_disclosing(attack, result), result


def check_secure(attack: type[Attack], result: AttackResult) -> None:
    assert result.profile == "secure"
    assert result.harm.minutes_below_54 <= 0, result
    if attack.availability:
        assert result.logged, result
        if result.succeeded:
            assert str(LinkEventCode.LINK_LOST) in result.events
        return
    assert not result.succeeded, result.evidence
    assert result.blocked_by is not None
    assert result.foreign_commands == 0
    assert result.harm.minutes_below_54 == 0
    assert result.logged != attack.passive, result
    if not attack.detection_only:
        assert result.harm.extra_insulin_u == 0.0, "a refused attack left therapy untouched"
