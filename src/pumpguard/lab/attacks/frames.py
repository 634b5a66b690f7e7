"""Frame-level attacks: malformed and oversized frames, reflection and counter manipulation."""

from __future__ import annotations

import random
from typing import ClassVar

import numpy as np

from pumpguard.clock import MS_PER_MINUTE
from pumpguard.lab.attacks._tools import describe, foreign_accepted, radio
from pumpguard.lab.attacks.base import Attack, Twin, Verdict
from pumpguard.lab.linked_loop import LinkedLoop
from pumpguard.link import Adversary, Capture, LegacyPumpEndpoint, LinkProfile
from pumpguard.link.e2e import append_crc
from pumpguard.link.pdu import AppKind

__all__ = ["MalformedFrames", "ReflectionCounter"]

_CORPUS = 300


class MalformedFrames(Attack):
    name = "malformed-frames"
    references = (
        "SweynTooth 2020 (Garbelini et al., USENIX ATC 2020; CVE-2019-16336, CVE-2019-17519)",
    )
    description = (
        f"{_CORPUS} malformed frames at the pump and the controller: random bytes, truncated "
        "and oversized frames, bit flips of recorded frames, and frames with a correct "
        "CRC (legacy) but a broken application PDU (unknown opcode, bad lengths, NaN "
        "amounts) from the controller's serial."
    )
    goal = "a device crashed or its radio hung, or therapy changed"
    control = "frame-validation"

    def __init__(self) -> None:
        self._adversary: Adversary | None = None
        self.crash: str | None = None

    def prepare(self, loop: LinkedLoop) -> None:
        self._adversary = radio(loop)

    def launch(self, loop: LinkedLoop) -> None:
        adversary = self._adversary
        assert adversary is not None
        recorded = [c.data for c in adversary.captures[-40:]]
        adversary.record = False
        rng = random.Random(loop.config.seed * 31)
        a = loop.link.addresses
        for frame in malformed_corpus(rng, recorded, a.pump, a.controller, _CORPUS):
            try:
                adversary.inject(frame)
            except Exception as exc:  # a crash is the finding, not a test failure
                self.crash = f"{type(exc).__name__}: {exc}"
                return

    def verdict(self, loop: LinkedLoop, twin: Twin) -> Verdict:
        foreign = foreign_accepted(loop)
        changed = not np.array_equal(loop.insulin_u, twin.insulin_u)
        hung_min = _hung_minutes(loop)
        hang = ""
        if hung_min:
            r = loop.radio
            hang = (
                f"pump radio hung for {hung_min} min (SweynTooth length quirk) while its "
                f"firmware went on delivering; the controller lost {r.sent - r.answered} "
                f"command answers and {r.history_lost} history reads; "
            )
        return Verdict(
            self.crash is not None or bool(foreign) or changed or hung_min > 0,
            f"{hang}crash: {self.crash or 'none'}; commands accepted: {describe(foreign)}; "
            f"insulin delivery {'changed' if changed else 'identical to the twin'}",
        )


def _hung_minutes(loop: LinkedLoop) -> int:
    """Minutes the legacy pump's radio was hung (0 without the quirk, and always in secure)."""
    pump = loop.link.pump
    if not isinstance(pump, LegacyPumpEndpoint):
        return 0
    pump.radio_hung  # noqa: B018 - applies a power cycle that is due
    now = loop.clock.now_ms()
    total = sum((now if end is None else end) - start for start, end in pump.hangs)
    return total // MS_PER_MINUTE


def malformed_corpus(
    rng: random.Random, recorded: list[bytes], pump: int, controller: int, size: int
) -> list[bytes]:
    """Frames no correct decoder may accept (seeded)."""
    head = bytes([0x10]) + pump.to_bytes(3, "big") + controller.to_bytes(3, "big")
    bad_pdus = [
        b"\xff\xff",  # unknown opcode
        b"\x4b\x11\x00\x33",  # set bolus, operand cut short
        b"\x4b\x11\x00\x33\xff\x07\x00\x00\x00\x00",  # amount NaN
        b"\x4b\x11\x07\x33\x19\xf0\x00\x00\x00\x00",  # flags not zero
        b"\xff\x0f\x00\x99\x19\xf0\x1e\x00",  # temp basal of unknown type
        b"\x5a\x0f\x33",  # stop therapy: refused over the radio
    ]
    out: list[bytes] = []
    while len(out) < size:
        pick = len(out) % 6
        if pick == 0:
            out.append(rng.randbytes(rng.randrange(0, 80)))
        elif pick == 1 and recorded:
            frame = rng.choice(recorded)
            out.append(frame[: rng.randrange(0, max(1, len(frame) - 1))])
        elif pick == 2:
            out.append(head + rng.randbytes(rng.randrange(60, 250)))
        elif pick == 3 and recorded:
            flipped = bytearray(rng.choice(recorded))
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
            out.append(bytes(flipped))
        elif pick == 4:
            out.append(append_crc(head + rng.choice(bad_pdus)))
        else:
            out.append(bytes([rng.choice([0x5D, 0x60, 0x61, 0x70, 0x71])]) + rng.randbytes(5))
    return out


class ReflectionCounter(Attack):
    name = "reflection-counter"
    references = ("insulin-link specification 4.4 (reflection, counter manipulation)",)
    description = (
        "The attacker sends the pump's own recent frames back to it, and re-sends the "
        "controller's most recent command frames with the counter field rewritten (secure: "
        "bytes 7-8, pushed 100 ahead and 1 back; legacy frames have no counter, so they are "
        "re-sent as they are)."
    )
    goal = "the pump acts on a frame that is not a fresh one from its controller"
    control = "replay-window"
    shifts: ClassVar[tuple[int, ...]] = (100, -1)
    """How far the counter of each re-sent controller frame is moved (secure)."""

    def __init__(self) -> None:
        self._adversary: Adversary | None = None

    def prepare(self, loop: LinkedLoop) -> None:
        self._adversary = radio(loop)

    def launch(self, loop: LinkedLoop) -> None:
        adversary = self._adversary
        assert adversary is not None
        a = loop.link.addresses
        adversary.record = False
        from_pump = [c for c in adversary.captures if _src(c) == a.pump][-4:]
        from_controller = [
            c
            for c in adversary.captures
            if _src(c) == a.controller and (loop.profile is LinkProfile.SECURE or _is_command(c))
        ][-4:]
        for capture in from_pump:
            adversary.replay(capture)
        for capture in from_controller:
            if loop.profile is LinkProfile.LEGACY:
                adversary.replay(capture)
                continue
            for shift in self.shifts:
                data = bytearray(capture.data)
                counter = (int.from_bytes(data[7:9], "little") + shift) & 0xFFFF
                data[7:9] = counter.to_bytes(2, "little")
                adversary.inject(bytes(data))

    def verdict(self, loop: LinkedLoop, twin: Twin) -> Verdict:
        foreign = foreign_accepted(loop)
        return Verdict(bool(foreign), f"pump accepted: {describe(foreign)}")


def _is_command(capture: Capture) -> bool:
    """In clear (legacy) the attacker sees which frames are commands."""
    frame = capture.legacy()
    return frame is not None and frame.kind in (AppKind.COMMAND_REMOTE, AppKind.COMMAND_AUTOMATED)


def _src(capture: Capture) -> int | None:
    frame = capture.legacy() or capture.secure()
    return None if frame is None else frame.src
