"""The attack catalogue: real, documented attacks on the insulin and the hospital systems, run
against both profiles.

Each entry is a ``CatalogueAttack`` with a name, its ``system``, its real-world references, what
the attacker does, the goal, and the control of the secure profile that should stop it.
``trial(profile, patient, seed)`` runs one instance and returns a ``Trial`` (the
``AttackResult`` and the security events of the attacked run); ``run`` returns the result only.
Insulin entries (``Attack``) run on the closed loop over the radio (``lab.linked_loop``) against
an attack-free twin; hospital entries (``HospitalAttack``) on a ward in virtual time
(``hospital_ward``): the update path (``hospital_library``) and EHR auto-programming
(``hospital_orders``). ``docs/attacks.md`` has the tables and the measured matrices.
"""

from pumpguard.lab.attacks.availability import FLOOD_GOAL_PERCENT, Jamming, WakeupFlood
from pumpguard.lab.attacks.base import (
    ATTACK_MINUTE,
    DEFAULT_PATIENT,
    HARM_KEYS,
    HARM_MINUTES,
    Attack,
    AttackResult,
    CatalogueAttack,
    GlucoseTrace,
    Harm,
    InfusionHarm,
    System,
    Trial,
    Twin,
    Verdict,
    control_for,
    twin_run,
)
from pumpguard.lab.attacks.cgm import SensorSpoof, SpoofedCgm, SpoofedCgmLow
from pumpguard.lab.attacks.eavesdrop import Eavesdrop
from pumpguard.lab.attacks.forgery import ForgedBolus, MeterRemoteSpoof, PodCommands, ScanAndDump
from pumpguard.lab.attacks.frames import MalformedFrames, ReflectionCounter
from pumpguard.lab.attacks.hospital_library import (
    LibraryRollback,
    StaleMetadata,
    StolenSigningKey,
    TamperedLibrary,
    UnsignedFirmware,
    UnsignedLibraryPush,
)
from pumpguard.lab.attacks.hospital_orders import (
    OrderBeyondHardLimit,
    OrderForAnotherPatient,
    OrderFromUnauthenticatedHost,
    OrderReplay,
    OrderTamperedInTransit,
)
from pumpguard.lab.attacks.hospital_ward import HospitalAttack
from pumpguard.lab.attacks.pairing import PairingMitmAttack
from pumpguard.lab.attacks.replay import RemoteBolusReplay
from pumpguard.link import LinkProfile

__all__ = [
    "ATTACK_MINUTE",
    "CATALOGUE",
    "DEFAULT_PATIENT",
    "FLOOD_GOAL_PERCENT",
    "HARM_KEYS",
    "HARM_MINUTES",
    "HOSPITAL_CATALOGUE",
    "INSULIN_CATALOGUE",
    "Attack",
    "AttackResult",
    "CatalogueAttack",
    "Eavesdrop",
    "ForgedBolus",
    "GlucoseTrace",
    "Harm",
    "HospitalAttack",
    "InfusionHarm",
    "Jamming",
    "LibraryRollback",
    "MalformedFrames",
    "MeterRemoteSpoof",
    "OrderBeyondHardLimit",
    "OrderForAnotherPatient",
    "OrderFromUnauthenticatedHost",
    "OrderReplay",
    "OrderTamperedInTransit",
    "PairingMitmAttack",
    "PodCommands",
    "ReflectionCounter",
    "RemoteBolusReplay",
    "ScanAndDump",
    "SensorSpoof",
    "SpoofedCgm",
    "SpoofedCgmLow",
    "StaleMetadata",
    "StolenSigningKey",
    "System",
    "TamperedLibrary",
    "Trial",
    "Twin",
    "UnknownAttackError",
    "UnsignedFirmware",
    "UnsignedLibraryPush",
    "Verdict",
    "WakeupFlood",
    "attack_names",
    "catalogue",
    "control_for",
    "get_attack",
    "insulin_attack",
    "run_trial",
    "twin_run",
]

INSULIN_CATALOGUE: tuple[type[Attack], ...] = (
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
HOSPITAL_CATALOGUE: tuple[type[HospitalAttack], ...] = (
    UnsignedLibraryPush,
    TamperedLibrary,
    LibraryRollback,
    UnsignedFirmware,
    StolenSigningKey,
    StaleMetadata,
    OrderFromUnauthenticatedHost,
    OrderReplay,
    OrderTamperedInTransit,
    OrderBeyondHardLimit,
    OrderForAnotherPatient,
)
CATALOGUE: tuple[type[CatalogueAttack], ...] = (*INSULIN_CATALOGUE, *HOSPITAL_CATALOGUE)


class UnknownAttackError(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown attack {name!r}; known attacks: {', '.join(attack_names())}")
        self.name = name


def catalogue(system: System | None = None) -> tuple[type[CatalogueAttack], ...]:
    """The entries of ``system`` (every entry when None), in catalogue order."""
    return tuple(a for a in CATALOGUE if system is None or a.system is system)


def attack_names(system: System | None = None) -> tuple[str, ...]:
    return tuple(a.name for a in catalogue(system))


def get_attack(name: str) -> CatalogueAttack:
    """A fresh instance of the attack called ``name`` (an attack keeps state for one run)."""
    for attack in CATALOGUE:
        if attack.name == name:
            return attack()
    raise UnknownAttackError(name)


def insulin_attack(name: str) -> Attack:
    """A fresh instance of the insulin attack ``name``, for callers that drive its steps
    (``prepare``, ``launch``, ``verdict``) on a loop of their own."""
    for attack in INSULIN_CATALOGUE:
        if attack.name == name:
            return attack()
    raise UnknownAttackError(name)


def run_trial(
    name: str, profile: LinkProfile, *, patient: str = DEFAULT_PATIENT, seed: int = 1
) -> Trial:
    """Run one instance of ``name``: its result and the security events of its run."""
    return get_attack(name).trial(profile, patient, seed)
