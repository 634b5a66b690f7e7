"""The attack launcher: a catalogue entry run in the lab against both profiles.

The run is the lab's (virtual time, its own simulated pumps, patient and radio), not the live
fleet: the verdict is measured, the live hospital is untouched. See ``docs/dashboard.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pumpguard.lab.attacks import (
    CATALOGUE,
    DEFAULT_PATIENT,
    AttackResult,
    UnknownAttackError,
    get_attack,
)
from pumpguard.link import LinkProfile
from pumpguard.server.errors import InvalidInput

__all__ = ["AttackRow", "Launch", "attack_rows", "launch"]


@dataclass(frozen=True, slots=True)
class AttackRow:
    name: str
    system: str
    reference: str
    goal: str
    control: str


@dataclass(frozen=True, slots=True)
class Launch:
    name: str
    patient: str
    results: tuple[AttackResult, ...]


def attack_rows() -> list[AttackRow]:
    return [
        AttackRow(a.name, str(a.system), ", ".join(a.references), a.goal, a.control)
        for a in CATALOGUE
    ]


def launch(name: str, seed: int = 1) -> Launch:
    """Run ``name`` once per profile, legacy first, on the default patient and ``seed``."""
    try:
        get_attack(name)
    except UnknownAttackError as exc:
        raise InvalidInput(str(exc)) from None
    results = tuple(
        get_attack(name).run(profile, DEFAULT_PATIENT, seed)
        for profile in (LinkProfile.LEGACY, LinkProfile.SECURE)
    )
    return Launch(name, DEFAULT_PATIENT, results)
