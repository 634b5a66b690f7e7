"""The insulin attack catalogue: real, documented attacks, run against both link profiles.

Each entry is an ``Attack`` with a name, its real-world references, what the attacker does, the
goal, and the control of the secure profile that should stop it. ``run(profile, patient, seed)``
runs the attack on the closed loop over the radio (``lab.linked_loop``) and returns an
``AttackResult`` measured against the attack-free twin. ``docs/attacks.md`` has the table and
the measured matrix.
"""

from pumpguard.lab.attacks.availability import FLOOD_GOAL_PERCENT, Jamming, WakeupFlood
from pumpguard.lab.attacks.base import (
    ATTACK_MINUTE,
    HARM_MINUTES,
    Attack,
    AttackResult,
    Harm,
    Twin,
    Verdict,
    control_for,
    twin_run,
)
from pumpguard.lab.attacks.cgm import SensorSpoof, SpoofedCgm, SpoofedCgmLow
from pumpguard.lab.attacks.eavesdrop import Eavesdrop
from pumpguard.lab.attacks.forgery import ForgedBolus, MeterRemoteSpoof, PodCommands, ScanAndDump
from pumpguard.lab.attacks.frames import MalformedFrames, ReflectionCounter
from pumpguard.lab.attacks.pairing import PairingMitmAttack
from pumpguard.lab.attacks.replay import RemoteBolusReplay

__all__ = [
    "ATTACK_MINUTE",
    "CATALOGUE",
    "FLOOD_GOAL_PERCENT",
    "HARM_MINUTES",
    "Attack",
    "AttackResult",
    "Eavesdrop",
    "ForgedBolus",
    "Harm",
    "Jamming",
    "MalformedFrames",
    "MeterRemoteSpoof",
    "PairingMitmAttack",
    "PodCommands",
    "ReflectionCounter",
    "RemoteBolusReplay",
    "ScanAndDump",
    "SensorSpoof",
    "SpoofedCgm",
    "SpoofedCgmLow",
    "Twin",
    "UnknownAttackError",
    "Verdict",
    "WakeupFlood",
    "attack_names",
    "control_for",
    "get_attack",
    "twin_run",
]

CATALOGUE: tuple[type[Attack], ...] = (
    Eavesdrop,
    RemoteBolusReplay,
    ForgedBolus,
    ScanAndDump,
    MeterRemoteSpoof,
    PairingMitmAttack,
    PodCommands,
    SpoofedCgm,
    SpoofedCgmLow,
    SensorSpoof,
    Jamming,
    WakeupFlood,
    MalformedFrames,
    ReflectionCounter,
)


class UnknownAttackError(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown attack {name!r}; known attacks: {', '.join(attack_names())}")
        self.name = name


def attack_names() -> tuple[str, ...]:
    return tuple(a.name for a in CATALOGUE)


def get_attack(name: str) -> Attack:
    """A fresh instance of the attack called ``name`` (an attack keeps state for one run)."""
    for attack in CATALOGUE:
        if attack.name == name:
            return attack()
    raise UnknownAttackError(name)
