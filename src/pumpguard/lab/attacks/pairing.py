"""Pairing-time attacks: eavesdrop the pairing, or sit in its middle."""

from __future__ import annotations

import random

from pumpguard.devices.insulin import Bolus
from pumpguard.lab.attacks._tools import (
    bolus_units,
    bolus_until_accepted,
    foreign_accepted,
    radio,
)
from pumpguard.lab.attacks.base import Attack, Twin, Verdict
from pumpguard.lab.linked_loop import LinkedLoop
from pumpguard.link import (
    Adversary,
    LegacyPumpEndpoint,
    PairingMitm,
    Role,
    SecureControllerEndpoint,
    SecurePumpEndpoint,
)
from pumpguard.link.pdu import AppKind

__all__ = ["PairingMitmAttack"]

_LISTEN_MINUTES = 10


class PairingMitmAttack(Attack):
    name = "pairing-mitm"
    references = ("CVE-2022-32537",)
    description = (
        "The attacker is in range while the user pairs the controller with the pump. Legacy "
        "(a serial typed in): it learns the pairing from the first frames and, 10 minutes "
        "later, boluses as the controller. Secure (numeric comparison): it replaces both "
        "public keys, commitments and nonces (PairingMitm); the user compares the 6-digit "
        "numbers on both screens and confirms only if they match."
    )
    goal = "a pairing the attacker can use: a bolus delivered, or the attacker's key paired"
    control = "numeric-comparison"

    def __init__(self) -> None:
        self._adversary: Adversary | None = None
        self._mitm: PairingMitm | None = None
        self._learnt: int | None = None
        self.paired_with_attacker = False

    def launch(self, loop: LinkedLoop) -> None:
        adversary = self._adversary = radio(loop)
        pump, controller = loop.link.pump, loop.link.controller
        if isinstance(pump, LegacyPumpEndpoint):
            pump.pair_by_serial(loop.link.addresses.controller, Role.CONTROLLER)
            start = loop.minute

            def use_pairing(loop: LinkedLoop, minute: int) -> None:
                if minute - start != _LISTEN_MINUTES:
                    return
                for capture in adversary.captures:
                    frame = capture.legacy()
                    if frame is not None and frame.kind in (
                        AppKind.COMMAND_REMOTE,
                        AppKind.COMMAND_AUTOMATED,
                        AppKind.STATUS_REQUEST,
                    ):
                        self._learnt = frame.src
                        bolus_until_accepted(adversary, frame.dst, frame.src)
                        return

            loop.hooks.append(use_pairing)
            return
        assert isinstance(pump, SecurePumpEndpoint)
        assert isinstance(controller, SecureControllerEndpoint)
        a = loop.link.addresses
        keys = random.Random(loop.config.seed * 7919)
        self._mitm = PairingMitm(
            adversary, initiator=a.controller, responder=a.pump, random_bytes=keys.randbytes
        )
        pump.open_pairing_window()
        controller.pair_with_pump()
        same = pump.pairing_code is not None and pump.pairing_code == controller.pairing_code
        pump.confirm_pairing(same)
        controller.confirm_pairing(same)
        adversary.stop_intercepting()
        peer = pump.peers.get(a.controller)
        self.paired_with_attacker = (
            peer is not None and peer.ltk == self._mitm.ltk_with_responder is not None
        )

    def verdict(self, loop: LinkedLoop, twin: Twin) -> Verdict:
        boluses = foreign_accepted(loop, Bolus)
        if self._mitm is not None:
            return Verdict(
                self.paired_with_attacker,
                "the pump holds the attacker's key"
                if self.paired_with_attacker
                else "the numbers differed; the user rejected the pairing; the old pairing "
                "stays in use",
            )
        learnt = "serial learnt" if self._learnt is not None else "no serial heard"
        return Verdict(
            bool(boluses),
            f"{learnt}; pump accepted {len(boluses)} attacker bolus(es), "
            f"{bolus_units(loop, boluses):.2f} U delivered",
        )
