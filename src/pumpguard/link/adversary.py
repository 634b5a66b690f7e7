"""An adversary's radio: sniff, record, replay, inject, relay and modify in flight, jam, flood.

It is a node like any other on the ``RadioMedium`` (so range and collisions apply to it too),
with no keys and no pairing: only what it hears and what it can compute. Attacks are built from
these verbs; ``PairingMitm`` is the one that needs a little protocol knowledge (it swaps public
keys, commitments and nonces during a pairing, as a man in the middle of LE Secure Connections
numeric comparison would).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from pumpguard.link.crypto import (
    PairingKeys,
    commitment,
    derive_pairing_keys,
    pairing_check,
    private_key,
    public_bytes,
    shared_secret,
)
from pumpguard.link.frames import (
    ADDRESS_BYTES,
    FrameError,
    FrameKind,
    LegacyFrame,
    SecureFrame,
    decode_legacy,
    decode_secure,
)
from pumpguard.link.medium import (
    PASS,
    InterceptPass,
    InterceptRule,
    Jammer,
    PlacedNode,
    RadioMedium,
    Transmission,
)

__all__ = ["Adversary", "Capture", "PairingMitm"]


@dataclass(frozen=True, slots=True)
class Capture:
    at_us: int
    data: bytes

    def legacy(self) -> LegacyFrame | None:
        try:
            return decode_legacy(self.data)
        except FrameError:
            return None

    def secure(self) -> SecureFrame | None:
        try:
            return decode_secure(self.data)
        except FrameError:
            return None


class Adversary(PlacedNode):
    """A radio in the attacker's hands."""

    def __init__(
        self,
        medium: RadioMedium,
        *,
        name: str = "adversary",
        position_m: tuple[float, float] = (0.0, 0.0),
        range_m: float = 30.0,
        record: bool = True,
    ) -> None:
        super().__init__(name, position_m, range_m)
        self.medium = medium
        self.record = record
        self.captures: list[Capture] = []
        medium.attach(self)

    def on_frame(self, data: bytes, at_us: int) -> None:
        if self.record:
            self.captures.append(Capture(at_us, data))

    def sniffed(self, keep: Callable[[Capture], bool] | None = None) -> list[Capture]:
        return [c for c in self.captures if keep is None or keep(c)]

    def inject(
        self,
        frame: bytes,
        *,
        at_us: int | None = None,
        carrier_sense: bool = True,
        settle: bool = True,
    ) -> Transmission:
        """Put arbitrary bytes on the air (forged, replayed or malformed)."""
        tx = self.medium.transmit(self, frame, at_us=at_us, carrier_sense=carrier_sense)
        if settle:
            self.medium.settle()
        return tx

    def replay(self, capture: Capture | bytes, *, settle: bool = True) -> Transmission:
        data = capture.data if isinstance(capture, Capture) else capture
        return self.inject(data, settle=settle)

    def jam(
        self, *, period_ms: int, on_ms: int, end_ms: int, start_ms: int | None = None
    ) -> Jammer:
        """Keep the channel busy ``on_ms`` of every ``period_ms`` until ``end_ms``."""
        start = self.medium.clock.now_ms() if start_ms is None else start_ms
        jammer = Jammer(self, period_ms, on_ms, start, end_ms)
        self.medium.add_jammer(jammer)
        return jammer

    def flood(
        self,
        frames: Iterable[bytes],
        *,
        interval_us: int,
        start_us: int | None = None,
        carrier_sense: bool = True,
    ) -> int:
        """Schedule ``frames`` one every ``interval_us`` (the caller settles the medium)."""
        if interval_us <= 0:
            raise ValueError("a flood needs a positive interval")
        at = self.medium.now_us if start_us is None else start_us
        sent = 0
        for frame in frames:
            self.medium.transmit(self, frame, at_us=at, carrier_sense=carrier_sense)
            at += interval_us
            sent += 1
        return sent

    def intercept(self, rule: InterceptRule) -> None:
        """Take frames ``rule`` claims away from their receivers: ``PASS``, drop (None), or
        send replacement bytes in their place (relay-and-modify)."""
        self.medium.intercept(self, rule)

    def stop_intercepting(self) -> None:
        self.medium.stop_intercepting(self)


def _addr(address: int) -> bytes:
    return address.to_bytes(ADDRESS_BYTES, "big")


@dataclass(slots=True)
class _Half:
    key: X25519PrivateKey = field(repr=False)
    public: bytes
    nonce: bytes
    peer_public: bytes = b""
    peer_nonce: bytes = b""


class PairingMitm:
    """Sit between an initiator and a responder during pairing and replace both sides' keys.

    Each side then pairs with the adversary; the 6-digit numbers the two sides show differ
    (unless 1 in a million), which is what a user comparing them catches. If both users accept
    anyway, ``ltk_with_initiator`` and ``ltk_with_responder`` hold the adversary's keys.
    """

    def __init__(
        self,
        adversary: Adversary,
        *,
        initiator: int,
        responder: int,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.adversary = adversary
        self.initiator = initiator
        self.responder = responder
        self._to_i = _Half(k := private_key(random_bytes(32)), public_bytes(k), random_bytes(16))
        self._to_r = _Half(k2 := private_key(random_bytes(32)), public_bytes(k2), random_bytes(16))
        self._role = b""
        self.ltk_with_initiator: bytes | None = None
        self.ltk_with_responder: bytes | None = None
        adversary.intercept(self._rule)

    def _context(self) -> bytes:
        return _addr(self.initiator) + _addr(self.responder) + self._role

    def _rule(self, tx: Transmission) -> bytes | InterceptPass | None:
        try:
            f = decode_secure(tx.data)
        except FrameError:
            return PASS
        if {f.src, f.dst} != {self.initiator, self.responder}:
            return PASS
        i, r = self._to_i, self._to_r
        match f.kind:
            case FrameKind.PAIR_REQUEST:
                self._role = f.body[:1]
                i.peer_public = f.body[1:]
                return self._frame(f, f.body[:1] + r.public)
            case FrameKind.PAIR_RESPONSE:
                r.peer_public = f.body[:32]
                return self._frame(f, i.public + commitment(i.nonce, i.public, i.peer_public))
            case FrameKind.PAIR_NONCE_I:
                i.peer_nonce = f.body
                return self._frame(f, r.nonce)
            case FrameKind.PAIR_NONCE_R:
                r.peer_nonce = f.body
                return self._frame(f, i.nonce)
            case FrameKind.PAIR_CHECK_I:
                keys_r = self._keys(r, r.public, r.peer_public, r.nonce, r.peer_nonce)
                return self._frame(
                    f, pairing_check(keys_r, b"I", r.nonce, r.peer_nonce, self._context())
                )
            case FrameKind.PAIR_CHECK_R:
                keys_i = self._keys(i, i.peer_public, i.public, i.peer_nonce, i.nonce)
                keys_r = self._keys(r, r.public, r.peer_public, r.nonce, r.peer_nonce)
                self.ltk_with_initiator, self.ltk_with_responder = keys_i.ltk, keys_r.ltk
                return self._frame(
                    f, pairing_check(keys_i, b"R", i.peer_nonce, i.nonce, self._context())
                )
        return PASS

    def _keys(self, half: _Half, pk_i: bytes, pk_r: bytes, n_i: bytes, n_r: bytes) -> PairingKeys:
        secret = shared_secret(half.key, half.peer_public) or bytes(32)
        return derive_pairing_keys(secret, pk_i, pk_r, n_i, n_r, self._context())

    @staticmethod
    def _frame(original: SecureFrame, body: bytes) -> bytes:
        return SecureFrame(original.kind, original.dst, original.src, body).encode()
