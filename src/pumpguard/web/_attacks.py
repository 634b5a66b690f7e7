"""The attack launcher: live attacks at the running server, and catalogue entries in the lab.

A live attack (``lab.live_attacks``) is a real network adversary against this server's own
listeners; it runs only when the stack was started with ``StackConfig.live_attacks`` (``up
--demo``), because it changes the live system. A lab launch runs a catalogue entry in virtual
time against both profiles and leaves the live hospital untouched. See ``docs/dashboard.md``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import FastAPI

from pumpguard.lab.attacks import (
    CATALOGUE,
    DEFAULT_PATIENT,
    AttackResult,
    UnknownAttackError,
    get_attack,
)
from pumpguard.lab.live_attacks import (
    LIVE_ATTACKS,
    LiveAttackError,
    LiveAttackResult,
    launch_live,
)
from pumpguard.link import LinkProfile
from pumpguard.server.errors import Forbidden, InvalidInput
from pumpguard.server.runtime import Stack

__all__ = [
    "LIVE_OFF",
    "AttackRow",
    "Launch",
    "LiveRow",
    "attack_rows",
    "launch",
    "launch_live_attack",
    "live_rows",
]

LIVE_OFF = (
    "Live attacks are off on this server: they change the live system (orders recorded, an "
    "account locked, alerts raised), so only `pumpguard up --demo` turns them on."
)


@dataclass(frozen=True, slots=True)
class AttackRow:
    name: str
    system: str
    reference: str
    goal: str
    control: str


@dataclass(frozen=True, slots=True)
class LiveRow:
    name: str
    surface: str
    description: str
    control: str
    rules: str
    lab_entry: str | None
    problem: str | None
    """Why it cannot run against this server; None when it can."""


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


def _live_stack(app: FastAPI) -> Stack | None:
    stack = getattr(app.state, "stack", None)
    if isinstance(stack, Stack) and stack.config.live_attacks:
        return stack
    return None


def live_rows(app: FastAPI) -> list[LiveRow] | None:
    """The live attacks and whether each can run here; None when live attacks are off."""
    stack = _live_stack(app)
    if stack is None:
        return None
    return [
        LiveRow(
            a.name,
            a.surface,
            a.description,
            a.control,
            ", ".join(a.rules),
            a.lab_entry,
            a.problem(stack),
        )
        for a in LIVE_ATTACKS
    ]


def launch_live_attack(app: FastAPI, name: str) -> LiveAttackResult:
    """Run a live attack at this server from a worker thread (its own event loop: the
    server's listeners keep serving on theirs)."""
    stack = _live_stack(app)
    if stack is None:
        raise Forbidden(LIVE_OFF)
    try:
        return asyncio.run(launch_live(stack, name))
    except LiveAttackError as exc:
        raise InvalidInput(str(exc)) from None
