"""Forged commands: the pump obeys whoever uses a paired serial (or none is needed)."""

from __future__ import annotations

import random
from decimal import Decimal

from pumpguard.devices.insulin import Bolus, CommandSource, SetTempBasal
from pumpguard.lab.attacks._tools import (
    ATTACKER_ADDRESS,
    bolus_units,
    bolus_until_accepted,
    describe,
    dose_attempt,
    foreign_accepted,
    forged_data,
    harmful_bolus,
    heard_success,
    legacy_command,
    next_counter,
    radio,
    smaller,
)
from pumpguard.lab.attacks.base import Attack, Twin, Verdict
from pumpguard.lab.linked_loop import METER_ADDRESS, LinkedLoop
from pumpguard.link import (
    BROADCAST,
    Adversary,
    FrameKind,
    LegacyFrame,
    LegacyPumpEndpoint,
    LinkProfile,
    Role,
    SecureFrame,
)
from pumpguard.link.pdu import AppKind

__all__ = ["ForgedBolus", "MeterRemoteSpoof", "PodCommands", "ScanAndDump"]


class _DoseAttack(Attack):
    def __init__(self) -> None:
        self._adversary: Adversary | None = None
        self._seed = 0
        self.found: list[int] = []

    def prepare(self, loop: LinkedLoop) -> None:
        self._adversary = radio(loop)
        self._seed = loop.config.seed

    def _bolus_verdict(self, loop: LinkedLoop) -> Verdict:
        boluses = foreign_accepted(loop, Bolus)
        return Verdict(
            bool(boluses),
            f"pump accepted {len(boluses)} bolus(es) nobody at the controller asked for, "
            f"{bolus_units(loop, boluses):.2f} U delivered",
        )


class ForgedBolus(_DoseAttack):
    name = "forged-bolus"
    references = ("CVE-2019-10964", "Radcliffe 2011")
    description = (
        "With the controller's and the pump's serials sniffed from the air, the attacker sends "
        f"a {harmful_bolus().amount_u} U bolus command as the controller, halved after each "
        "refusal it hears (down to 1 U)."
    )
    goal = "a bolus delivered that the patient did not ask for"
    control = "aead"

    def launch(self, loop: LinkedLoop) -> None:
        assert self._adversary is not None
        dose_attempt(loop, self._adversary, harmful_bolus(), self._seed)

    def verdict(self, loop: LinkedLoop, twin: Twin) -> Verdict:
        return self._bolus_verdict(loop)


_DUMP_MINUTES = 30


class ScanAndDump(_DoseAttack):
    name = "scan-dump"
    references = ("Barnaby Jack 2011",)
    description = (
        "The attacker asks every pump in range for its serial (a broadcast scan), then sends "
        "boluses, one a minute for 30 minutes, to empty the reservoir into the patient: 17 U, "
        "halved after each refusal it hears (the pump's own limits still apply)."
    )
    goal = "the pump found without knowing its serial, and boluses delivered"
    control = "no-downgrade"

    def launch(self, loop: LinkedLoop) -> None:
        adversary = self._adversary
        assert adversary is not None
        adversary.inject(LegacyFrame(AppKind.SCAN, BROADCAST, ATTACKER_ADDRESS).encode())
        found = [
            f.src
            for c in adversary.captures
            if (f := c.legacy()) is not None
            and f.kind is AppKind.SCAN_REPLY
            and f.dst == ATTACKER_ADDRESS
        ]
        self.found = found
        pump = found[0] if found else loop.link.addresses.pump
        controller = loop.link.addresses.controller
        start = loop.minute
        amount = [Decimal(17)]

        def dump(loop: LinkedLoop, minute: int) -> None:
            if minute - start >= _DUMP_MINUTES:
                return
            command = Bolus(amount[0], source=CommandSource.REMOTE, command_id="attacker")
            heard = len(adversary.captures)
            adversary.inject(legacy_command(pump, controller, command))
            if loop.profile is LinkProfile.SECURE:
                rng = random.Random(self._seed * 100 + minute)
                adversary.inject(
                    forged_data(pump, controller, rng, next_counter(adversary, controller))
                )
            if not heard_success(adversary.captures[heard:]):
                amount[0] = smaller(amount[0])

        loop.hooks.append(dump)

    def verdict(self, loop: LinkedLoop, twin: Twin) -> Verdict:
        boluses = foreign_accepted(loop, Bolus)
        found = bool(self.found)
        return Verdict(
            found and bool(boluses),
            f"scan {'answered with the pump serial' if found else 'unanswered'}; pump accepted "
            f"{len(boluses)} attacker bolus(es), {bolus_units(loop, boluses):.2f} U delivered",
        )


class PodCommands(_DoseAttack):
    name = "pod-commands"
    references = ("CVE-2020-10627 (ICSMA-20-079-01; the issue names it CVE-2020-10597)",)
    description = (
        "Unauthenticated delivery commands: the attacker sets a 10 U/h temp basal for 2 hours "
        "(the pump's maximum basal rate), as the controller."
    )
    goal = "delivery changed by a command the patient did not give"
    control = "aead"

    def launch(self, loop: LinkedLoop) -> None:
        assert self._adversary is not None
        command = SetTempBasal(
            120, rate_u_h=Decimal(10), source=CommandSource.REMOTE, command_id="attacker"
        )
        dose_attempt(loop, self._adversary, command, self._seed)

    def verdict(self, loop: LinkedLoop, twin: Twin) -> Verdict:
        temps = foreign_accepted(loop, SetTempBasal)
        return Verdict(
            bool(temps), f"pump accepted attacker commands: {describe(foreign_accepted(loop))}"
        )


class MeterRemoteSpoof(_DoseAttack):
    name = "meter-remote-spoof"
    references = ("CVE-2016-5085",)
    description = (
        "The attacker learns the meter-remote's weak pairing value (its serial, sent in clear "
        "whenever the meter talks to the pump) and sends a bolus as the meter (15 U, halved "
        "after each refusal it hears). Against the "
        "secure profile, which has no meter-remote pairing, it tries to pair as one and to "
        "send as one."
    )
    goal = "a bolus delivered, accepted as coming from the meter-remote"
    control = "pairing-window"
    meter_remote = True

    def launch(self, loop: LinkedLoop) -> None:
        adversary = self._adversary
        assert adversary is not None
        a = loop.link.addresses
        heard = {
            f.src
            for c in adversary.captures
            if (f := c.legacy()) is not None and f.dst == a.pump and f.src != a.controller
        }
        meter = next(iter(heard), METER_ADDRESS)
        if loop.profile is LinkProfile.SECURE:
            role = bytes([0x03])
            request = SecureFrame(FrameKind.PAIR_REQUEST, a.pump, meter, role + bytes(32))
            adversary.inject(request.encode())
            adversary.inject(forged_data(a.pump, meter, random.Random(self._seed), 1))
        bolus_until_accepted(adversary, a.pump, meter)

    def verdict(self, loop: LinkedLoop, twin: Twin) -> Verdict:
        boluses = [c for c in foreign_accepted(loop, Bolus) if c.peer == METER_ADDRESS]
        return Verdict(
            bool(boluses),
            f"pump accepted {len(boluses)} bolus(es) from the meter-remote's serial, "
            f"{bolus_units(loop, boluses):.2f} U delivered ({_paired(loop)})",
        )


def _paired(loop: LinkedLoop) -> str:
    pump = loop.link.pump
    roles = pump.paired.values() if isinstance(pump, LegacyPumpEndpoint) else ()
    return "meter-remote paired by serial" if Role.METER_REMOTE in roles else "no meter pairing"
