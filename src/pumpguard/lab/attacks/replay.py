"""Remote-bolus replay: a recorded bolus command sent again later."""

from __future__ import annotations

from pumpguard.devices.insulin import Bolus, IdsOpcode
from pumpguard.lab.attacks._tools import bolus_units, foreign_accepted, radio
from pumpguard.lab.attacks.base import ATTACK_MINUTE, Attack, Twin, Verdict
from pumpguard.lab.linked_loop import LinkedLoop
from pumpguard.link import Adversary, Capture
from pumpguard.link.pdu import AppKind, request_opcode

__all__ = ["RemoteBolusReplay"]

_MEAL_MINUTE = 7 * 60
_RECENT = 6


class RemoteBolusReplay(Attack):
    name = "replay-bolus"
    references = ("CVE-2018-14781", "CVE-2016-5086")
    description = (
        "The attacker records the controller's frames around breakfast (07:00) and, an hour "
        "later, sends them again, together with the controller's most recent frames."
    )
    goal = "a bolus delivered that the patient did not ask for"
    control = "replay-window"

    def __init__(self) -> None:
        self._adversary: Adversary | None = None

    def prepare(self, loop: LinkedLoop) -> None:
        self._adversary = radio(loop)

    def launch(self, loop: LinkedLoop) -> None:
        adversary = self._adversary
        assert adversary is not None
        controller = loop.link.addresses.controller
        mine = [c for c in adversary.captures if _src(c) == controller]
        lo, hi = _MEAL_MINUTE * 60_000_000, (_MEAL_MINUTE + 2) * 60_000_000
        chosen = [c for c in mine if lo <= c.at_us < hi and _is_bolus(c)] or [
            c for c in mine if lo <= c.at_us < hi
        ]
        adversary.record = False
        for capture in chosen + mine[-_RECENT:]:
            adversary.replay(capture)

    def verdict(self, loop: LinkedLoop, twin: Twin) -> Verdict:
        boluses = foreign_accepted(loop, Bolus)
        return Verdict(
            bool(boluses),
            f"{len(boluses)} replayed bolus(es) accepted by the pump, "
            f"{bolus_units(loop, boluses):.2f} U delivered (attack at minute {ATTACK_MINUTE})",
        )


def _src(capture: Capture) -> int | None:
    frame = capture.legacy() or capture.secure()
    return None if frame is None else frame.src


def _is_bolus(capture: Capture) -> bool:
    """A legacy attacker reads the opcode; against ciphertext the attacker goes by timing."""
    frame = capture.legacy()
    if frame is None or frame.kind is not AppKind.COMMAND_REMOTE:
        return False
    return request_opcode(frame.payload) is IdsOpcode.SET_BOLUS
