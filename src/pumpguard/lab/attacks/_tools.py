"""The attacker's kit: a radio on the medium, frame builders, and what the pump did for whom."""

from __future__ import annotations

import random
from decimal import Decimal

from pumpguard.devices.insulin import Bolus, Command, CommandSource, IdsResponseCode
from pumpguard.lab.linked_loop import LinkedLoop
from pumpguard.link import (
    Adversary,
    Capture,
    FrameKind,
    HandledCommand,
    LegacyFrame,
    LinkProfile,
)
from pumpguard.link.pdu import AppKind, PduError, decode_response, encode_command

ATTACKER_ADDRESS = 0x666666
HARMFUL_BOLUS_U = Decimal(15)
"""What a dose attacker asks for: just under the pump's default 17 U maximum bolus."""


def radio(loop: LinkedLoop, *, record: bool = True) -> Adversary:
    """The attacker's radio, 5 m from the patient, hearing every device (30 m range)."""
    return Adversary(loop.medium, position_m=(5.0, 5.0), range_m=30.0, record=record)


def legacy_command(dst: int, src: int, command: Command) -> bytes:
    kind = (
        AppKind.COMMAND_AUTOMATED
        if getattr(command, "source", None) is CommandSource.AUTOMATED
        else AppKind.COMMAND_REMOTE
    )
    return LegacyFrame(kind, dst, src, encode_command(command)).encode()


def harmful_bolus() -> Bolus:
    return Bolus(HARMFUL_BOLUS_U, source=CommandSource.REMOTE, command_id="attacker")


def forged_data(dst: int, src: int, rng: random.Random, counter: int | None = None) -> bytes:
    """A secure data frame made without keys: right header, guessed ciphertext and tag."""
    c = rng.randrange(1 << 16) if counter is None else counter & 0xFFFF
    header = bytes([FrameKind.DATA]) + dst.to_bytes(3, "big") + src.to_bytes(3, "big")
    return header + c.to_bytes(2, "little") + rng.randbytes(22)


def next_counter(adversary: Adversary, src: int) -> int | None:
    """The counter ``src`` will use next, read from its last frame heard (it is in clear)."""
    for capture in reversed(adversary.captures):
        frame = capture.secure()
        if frame is not None and frame.kind is FrameKind.DATA and frame.src == src:
            return frame.counter16 + 1
    return None


def heard_success(captures: list[Capture]) -> bool:
    """Whether the pump's answer the attacker heard (in clear: legacy only) was a success."""
    for capture in captures:
        frame = capture.legacy()
        if frame is not None and frame.kind is AppKind.COMMAND_RESPONSE:
            try:
                return decode_response(frame.payload).code is IdsResponseCode.SUCCESS
            except PduError:
                return False
    return False


def smaller(amount: Decimal) -> Decimal:
    """The next bolus an attacker tries after a refusal: half, at least 1 U."""
    return max(Decimal(1), (amount / 2).quantize(Decimal("0.5")))


def bolus_until_accepted(adversary: Adversary, dst: int, src: int) -> None:
    """Legacy frames asking for a harmful bolus as ``src``; the attacker listens to the answer
    (in clear on a legacy link) and halves the dose after each refusal, down to 1 U."""
    amount = HARMFUL_BOLUS_U
    while True:
        heard = len(adversary.captures)
        bolus = Bolus(amount, source=CommandSource.REMOTE, command_id="attacker")
        adversary.inject(legacy_command(dst, src, bolus))
        if heard_success(adversary.captures[heard:]) or amount <= 1:
            return
        amount = smaller(amount)


def dose_attempt(loop: LinkedLoop, adversary: Adversary, command: Command, seed: int) -> None:
    """Send ``command`` to the pump as the controller, the only ways each profile allows an
    attacker without keys: a legacy frame with the sniffed serial (both profiles: the secure
    pump must refuse it; a bolus is retried smaller after a refusal the attacker hears) and,
    against a secure pump, a forged data frame as well."""
    a = loop.link.addresses
    if isinstance(command, Bolus):
        bolus_until_accepted(adversary, a.pump, a.controller)
    else:
        adversary.inject(legacy_command(a.pump, a.controller, command))
    if loop.profile is LinkProfile.SECURE:
        counter = next_counter(adversary, a.controller)
        adversary.inject(forged_data(a.pump, a.controller, random.Random(seed), counter))


def foreign_accepted(loop: LinkedLoop, kind: type | None = None) -> list[HandledCommand]:
    """Commands the pump accepted that the controller never sent (optionally of one type)."""
    return [
        c
        for c in loop.radio.foreign()
        if c.result.accepted and (kind is None or isinstance(c.command, kind))
    ]


def describe(handled: list[HandledCommand]) -> str:
    names = [type(c.command).__name__ for c in handled]
    counts = {n: names.count(n) for n in dict.fromkeys(names)}
    return ", ".join(f"{n} x{k}" for n, k in counts.items()) or "none"


def bolus_units(loop: LinkedLoop, handled: list[HandledCommand]) -> float:
    """Insulin the pump has delivered so far for these (bolus) commands."""
    total = 0.0
    for c in handled:
        if c.result.bolus_id is not None:
            view = loop.pump.bolus(c.result.bolus_id)
            if view is not None:
                total += float(view.delivered_u)
    return total
