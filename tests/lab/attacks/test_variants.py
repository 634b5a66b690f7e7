"""Variants of the catalogue's attacks that the catalogue does not run: another patient and seed,
another time, another frame type, guessed counters, a slow drift instead of a jump. Each must
reproduce under legacy and be stopped (or, for availability, detected with a safe fallback)
and logged under secure, with no added minutes below 54 mg/dL."""

from __future__ import annotations

import random
from typing import ClassVar

import pytest
from tests.lab.attacks.support import check_legacy, check_secure

from pumpguard.lab.attacks import (
    Attack,
    ForgedBolus,
    Jamming,
    ReflectionCounter,
    RemoteBolusReplay,
    SpoofedCgm,
    Twin,
    Verdict,
    get_attack,
)
from pumpguard.lab.attacks._tools import describe, foreign_accepted, forged_data, next_counter
from pumpguard.lab.linked_loop import LinkedLoop
from pumpguard.link import Capture, LinkProfile
from pumpguard.link.pdu import AppKind


@pytest.mark.parametrize("name", ["forged-bolus", "spoofed-cgm", "replay-bolus"])
def test_child_other_seed(name: str) -> None:
    attack = get_attack(name)
    check_legacy(type(attack), attack.run(LinkProfile.LEGACY, "child#001", 2))
    attack = get_attack(name)
    check_secure(type(attack), attack.run(LinkProfile.SECURE, "child#001", 2))


class AfternoonJamming(Jamming):
    """Seven hours later (15:00 to 17:00), while the AID of the twin suspends before a low."""

    name = "jamming-afternoon"
    delay_minutes = 7 * 60


class LateReplay(RemoteBolusReplay):
    """The breakfast bolus replayed six hours after it was recorded, not one."""

    name = "replay-bolus-6h"

    def launch(self, loop: LinkedLoop) -> None:
        start = loop.minute
        replay = super().launch

        def later(loop: LinkedLoop, minute: int) -> None:
            if minute == start + 5 * 60:
                replay(loop)

        loop.hooks.append(later)


class TempBasalReplay(RemoteBolusReplay):
    """The controller's automated temp basal frames, not its bolus, sent again."""

    name = "replay-temp-basal"

    def launch(self, loop: LinkedLoop) -> None:
        adversary = self._adversary
        assert adversary is not None
        controller = loop.link.addresses.controller
        mine = [c for c in adversary.captures if _from(c) == controller and _automated(c)]
        adversary.record = False
        for capture in mine[-8:]:
            adversary.replay(capture)

    def verdict(self, loop: LinkedLoop, twin: Twin) -> Verdict:
        foreign = foreign_accepted(loop)
        return Verdict(bool(foreign), f"pump accepted: {describe(foreign)}")


class GuessedCounterBolus(ForgedBolus):
    """As forged-bolus, and against the secure pump forged frames at the next counters too."""

    name = "forged-bolus-guessed-counter"

    def launch(self, loop: LinkedLoop) -> None:
        super().launch(loop)
        adversary = self._adversary
        assert adversary is not None
        if loop.profile is LinkProfile.SECURE:
            a = loop.link.addresses
            rng = random.Random(7)
            start = next_counter(adversary, a.controller) or 0
            for guess in range(start, start + 8):
                adversary.inject(forged_data(a.pump, a.controller, rng, guess))


class NextCounterReflection(ReflectionCounter):
    """The controller's frames re-sent with the counter moved exactly one ahead."""

    name = "reflection-counter-plus-one"
    shifts: ClassVar[tuple[int, ...]] = (1, 2)


class SlowDriftCgm(SpoofedCgm):
    """The false high grows by 2 mg/dL every 5 minutes (up to +120) instead of jumping."""

    name = "spoofed-cgm-slow-drift"
    _started: int | None = None
    _loop: LinkedLoop | None = None

    def launch(self, loop: LinkedLoop) -> None:
        self._started, self._loop = loop.minute, loop
        super().launch(loop)

    @property  # type: ignore[override]
    def shift_mgdl(self) -> int:
        if self._loop is None or self._started is None:
            return 120
        return min(120, 2 * ((self._loop.minute - self._started) // 5 + 1))


def _from(capture: Capture) -> int | None:
    frame = capture.legacy() or capture.secure()
    return None if frame is None else frame.src


def _automated(capture: Capture) -> bool:
    """In clear the attacker sees the kind; against ciphertext every controller frame is taken."""
    frame = capture.legacy()
    if frame is None:
        return capture.secure() is not None
    return frame.kind is AppKind.COMMAND_AUTOMATED


VARIANTS: list[tuple[type[Attack], str, int]] = [
    (AfternoonJamming, "child#001", 2),
    (LateReplay, "adult#001", 1),
    (TempBasalReplay, "adolescent#003", 3),
    (GuessedCounterBolus, "child#001", 2),
    (NextCounterReflection, "adult#001", 1),
    (SlowDriftCgm, "adolescent#003", 3),
]


@pytest.mark.parametrize(
    ("attack", "patient", "seed"), [pytest.param(*v, id=v[0].name) for v in VARIANTS]
)
def test_variant(attack: type[Attack], patient: str, seed: int) -> None:
    legacy = attack().run(LinkProfile.LEGACY, patient, seed)
    check_legacy(attack, legacy)
    secure = attack().run(LinkProfile.SECURE, patient, seed)
    check_secure(attack, secure)
    assert secure.harm.minutes_below_54 <= 0, secure
