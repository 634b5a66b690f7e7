"""Therapy-data eavesdropping: a receiver in range decodes glucose, doses and serials."""

from __future__ import annotations

from pumpguard.devices.insulin import CommandSource
from pumpguard.lab.attacks._tools import radio
from pumpguard.lab.attacks.base import Attack, Twin, Verdict
from pumpguard.lab.linked_loop import LinkedLoop
from pumpguard.link import Adversary, FrameError, LegacyFrame
from pumpguard.link.pdu import AppKind, PduError, decode_cgm, decode_command

__all__ = ["Eavesdrop"]


class Eavesdrop(Attack):
    name = "eavesdrop"
    references = ("CVE-2016-5084", "CVE-2018-10634")
    description = (
        "A receiver within range records every frame for 24 h and decodes what it can: serial "
        "numbers, glucose readings, bolus and temp-basal commands."
    )
    goal = "therapy data (glucose or doses) and the devices' serials decoded from the air"
    control = "aead"
    passive = True

    def __init__(self) -> None:
        self._adversary: Adversary | None = None

    def launch(self, loop: LinkedLoop) -> None:
        self._adversary = radio(loop)

    def verdict(self, loop: LinkedLoop, twin: Twin) -> Verdict:
        assert self._adversary is not None
        glucose, doses = 0, 0
        serials: set[int] = set()
        for capture in self._adversary.captures:
            frame = capture.legacy()
            if frame is None:
                continue
            try:
                if frame.kind is AppKind.CGM_MEASUREMENT:
                    decode_cgm(frame.payload, with_crc=False)
                    glucose += 1
                elif frame.kind in (AppKind.COMMAND_REMOTE, AppKind.COMMAND_AUTOMATED):
                    decode_command(frame.payload, _source(frame), None)
                    doses += 1
                else:
                    continue
            except (PduError, FrameError):
                continue
            serials.update((frame.src, frame.dst))
        frames = len(self._adversary.captures)
        return Verdict(
            (glucose + doses) > 0 and bool(serials),
            f"{frames} frames heard; decoded {glucose} glucose readings, {doses} dosing "
            f"commands, {len(serials)} serials",
        )


def _source(frame: LegacyFrame) -> CommandSource:
    if frame.kind is AppKind.COMMAND_AUTOMATED:
        return CommandSource.AUTOMATED
    return CommandSource.REMOTE
