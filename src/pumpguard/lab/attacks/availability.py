"""Availability attacks: jamming, and a wake-up flood that drains the pump's battery.

No cryptography stops a jammer; what the secure profile owes is detection (link loss at the
pump and at the controller) and a safe fallback (automation suspended, scheduled basal running).
``succeeded`` says whether the attacker denied the service it went for, in both profiles.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import ClassVar

from pumpguard.clock import MS_PER_MINUTE
from pumpguard.lab.attacks._tools import radio
from pumpguard.lab.attacks.base import ATTACK_MINUTE, Attack, Twin, Verdict
from pumpguard.lab.linked_loop import LinkedLoop
from pumpguard.link import Adversary, FrameKind, LegacyFrame, LinkProfile, SecureFrame
from pumpguard.link.pdu import AppKind

__all__ = ["FLOOD_GOAL_PERCENT", "Jamming", "WakeupFlood"]

JAM_MINUTES = 120
FLOOD_MINUTES = 60
FLOOD_RATE_PER_S = 20
FLOOD_GOAL_PERCENT = 2.0
"""Battery life the flooder means to take from the pump (sustained flood), in percent."""


class Jamming(Attack):
    name = "jamming"
    references = ("Paul, Kohno, Klonoff 2011 (jamming)",)
    description = (
        f"The attacker keeps the channel busy for {JAM_MINUTES} minutes: no CGM reading, "
        "command or answer gets through."
    )
    goal = "the link denied: no reading reaches the controller, no command reaches the pump"
    control = "link-loss-fallback"
    availability = True

    jam_minutes: ClassVar[int] = JAM_MINUTES
    delay_minutes: ClassVar[int] = 0
    """Minutes after ``ATTACK_MINUTE`` at which the jam starts (variants jam at other times)."""
    period_ms: ClassVar[int] = 10
    on_ms: ClassVar[int] = 10
    """The jammer's duty cycle: busy ``on_ms`` of every ``period_ms`` (10/10: always busy)."""

    def launch(self, loop: LinkedLoop) -> None:
        adversary = radio(loop, record=False)
        start = (loop.minute + self.delay_minutes) * MS_PER_MINUTE
        end = start + self.jam_minutes * MS_PER_MINUTE
        adversary.jam(period_ms=self.period_ms, on_ms=self.on_ms, start_ms=start, end_ms=end)

    def verdict(self, loop: LinkedLoop, twin: Twin) -> Verdict:
        lo = (ATTACK_MINUTE + self.delay_minutes) * MS_PER_MINUTE
        hi = lo + self.jam_minutes * MS_PER_MINUTE
        readings = [r for r in loop.taken_readings if lo < r.time_ms < hi]
        own = [
            c
            for i, c in enumerate(loop.link.pump.handled)
            if i in loop.radio.own and lo < c.at_us // 1000 < hi
        ]
        jammed = loop.medium.stats.lost_jammed
        return Verdict(
            not readings and not own,
            f"{jammed} frame receptions jammed; during the jam the controller got "
            f"{len(readings)} readings and the pump {len(own)} commands",
        )


class WakeupFlood(Attack):
    name = "wakeup-flood"
    references = ("Tandem t:connect app recall 2024 (BLE flood drained pump batteries)",)
    description = (
        f"For {FLOOD_MINUTES} minutes the attacker sends {FLOOD_RATE_PER_S} frames a second the "
        "pump must wake for: legacy, status requests with the sniffed controller serial (each "
        "answered); secure, forged session requests and replays of recorded frames."
    )
    goal = f"the pump's battery life cut by at least {FLOOD_GOAL_PERCENT:g} % (sustained flood)"
    control = "wakeup-budget"
    availability = True

    def __init__(self) -> None:
        self._adversary: Adversary | None = None

    def prepare(self, loop: LinkedLoop) -> None:
        self._adversary = radio(loop)

    def launch(self, loop: LinkedLoop) -> None:
        adversary = self._adversary
        assert adversary is not None
        a = loop.link.addresses
        recorded = [c.data for c in adversary.captures[-64:]]
        adversary.record = False
        rng = random.Random(loop.config.seed)
        start = loop.minute
        per_minute = FLOOD_RATE_PER_S * 60

        def frames() -> Iterator[bytes]:
            i = 0
            while True:
                if loop.profile is LinkProfile.LEGACY:
                    yield LegacyFrame(AppKind.STATUS_REQUEST, a.pump, a.controller).encode()
                elif i % 2 or not recorded:
                    body = rng.randbytes(16)
                    yield SecureFrame(FrameKind.SESSION_INIT, a.pump, a.controller, body).encode()
                else:
                    yield recorded[(i // 2) % len(recorded)]
                i += 1

        source = frames()

        def flood(loop: LinkedLoop, minute: int) -> None:
            if not start <= minute < start + FLOOD_MINUTES:
                return
            batch = [next(source) for _ in range(per_minute)]
            at = loop.clock.now_ms() * 1000 + 20_000
            adversary.flood(batch, interval_us=1_000_000 // FLOOD_RATE_PER_S, start_us=at)

        loop.hooks.append(flood)

    def verdict(self, loop: LinkedLoop, twin: Twin) -> Verdict:
        kept = battery_kept_percent(loop, twin)
        return Verdict(
            100 - kept >= FLOOD_GOAL_PERCENT,
            f"pump battery life under a sustained flood: {kept:.1f} % of normal "
            f"({100 - kept:.1f} % lost)",
        )


def battery_kept_percent(loop: LinkedLoop, twin: Twin) -> float:
    """Battery life with the flood's hourly radio charge, as a share of the twin's hour."""
    lo, hi = ATTACK_MINUTE - 1, ATTACK_MINUTE + FLOOD_MINUTES - 1
    hour_ms = FLOOD_MINUTES * MS_PER_MINUTE
    attacked = float(loop.pump_charge_uc[hi] - loop.pump_charge_uc[lo]) / hour_ms
    normal = float(twin.pump_charge_uc[hi] - twin.pump_charge_uc[lo]) / hour_ms
    pump_ma = float(loop.pump.model.delivering_draw_ma) + loop.link.pump.meter.listen_ma()
    return 100 * (pump_ma + normal) / (pump_ma + attacked)
