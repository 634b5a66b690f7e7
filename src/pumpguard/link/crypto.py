"""The secure profile's cryptography, built from ``cryptography`` primitives only.

* Pairing: X25519 ECDH; the responder commits to its nonce (HMAC-SHA-256 keyed by the nonce over
  both public keys, as LE Secure Connections' f4 does with AES-CMAC); both sides show a 6-digit
  number derived from both public keys and both nonces (as g2); HKDF-SHA-256 derives a MAC key
  and the long-term key (LTK) from the shared secret; each side proves the LTK with a check value
  (as f6's DHKey check).
* Sessions: HKDF-SHA-256 over the LTK and two fresh session nonces gives a session id and, per
  direction, an AES-CCM key and a wake-up address key.
* Frames: AES-128-CCM with an 8-byte tag and a 13-byte nonce ``session id | direction | 64-bit
  counter``; associated data is the cleartext header plus the session id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import constant_time, hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pumpguard.link.frames import TAG_BYTES

__all__ = [
    "NONCE_BYTES",
    "REPLAY_WINDOW",
    "Direction",
    "PairingKeys",
    "ReplayWindow",
    "SessionKeys",
    "aead_open",
    "aead_seal",
    "commitment",
    "derive_pairing_keys",
    "derive_session_keys",
    "numeric_code",
    "pairing_check",
    "private_key",
    "public_bytes",
    "session_mac",
    "shared_secret",
    "verify",
    "wake_address",
]

NONCE_BYTES = 16
REPLAY_WINDOW = 64


class Direction:
    """Nonce direction byte: initiator to responder, or back."""

    I2R = 0x01
    R2I = 0x02


def _hmac(key: bytes, *parts: bytes) -> bytes:
    mac = hmac.HMAC(key, hashes.SHA256())
    for part in parts:
        mac.update(part)
    return mac.finalize()


def _hkdf(secret: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, salt, info).derive(secret)


def verify(expected: bytes, given: bytes) -> bool:
    return constant_time.bytes_eq(expected, given)


def private_key(seed32: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(seed32)


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def shared_secret(own: X25519PrivateKey, peer_public: bytes) -> bytes | None:
    """The X25519 shared secret, or None for a peer key that yields the all-zero secret."""
    try:
        secret = own.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError:
        return None
    return None if secret == bytes(32) else secret


def commitment(nonce: bytes, own_public: bytes, peer_public: bytes) -> bytes:
    return _hmac(nonce, b"pumpguard-link commit", own_public, peer_public)[:16]


def numeric_code(pk_i: bytes, pk_r: bytes, n_i: bytes, n_r: bytes) -> int:
    digest = hashes.Hash(hashes.SHA256())
    for part in (b"pumpguard-link numeric", pk_i, pk_r, n_i, n_r):
        digest.update(part)
    return int.from_bytes(digest.finalize()[:4], "big") % 1_000_000


@dataclass(frozen=True, slots=True)
class PairingKeys:
    mac_key: bytes = field(repr=False)
    ltk: bytes = field(repr=False)


def derive_pairing_keys(
    secret: bytes, pk_i: bytes, pk_r: bytes, n_i: bytes, n_r: bytes, context: bytes
) -> PairingKeys:
    """``context`` binds the addresses and the requested role."""
    okm = _hkdf(secret, n_i + n_r, b"pumpguard-link pairing" + pk_i + pk_r + context, 32)
    return PairingKeys(okm[:16], okm[16:])


def pairing_check(keys: PairingKeys, label: bytes, n_i: bytes, n_r: bytes, context: bytes) -> bytes:
    return _hmac(keys.mac_key, b"pumpguard-link check", label, n_i, n_r, context)[:16]


@dataclass(frozen=True, slots=True)
class SessionKeys:
    session_id: bytes
    key_i2r: bytes = field(repr=False)
    key_r2i: bytes = field(repr=False)
    wake_i2r: bytes = field(repr=False)
    wake_r2i: bytes = field(repr=False)

    def key(self, direction: int) -> bytes:
        return self.key_i2r if direction == Direction.I2R else self.key_r2i

    def wake(self, direction: int) -> bytes:
        return self.wake_i2r if direction == Direction.I2R else self.wake_r2i


def session_mac(ltk: bytes, *parts: bytes) -> bytes:
    """8-byte MAC of a session handshake message under a key derived from the LTK."""
    auth = _hkdf(ltk, b"", b"pumpguard-link session auth", 16)
    return _hmac(auth, *parts)[:8]


def derive_session_keys(ltk: bytes, nonce_i: bytes, nonce_r: bytes, context: bytes) -> SessionKeys:
    okm = _hkdf(ltk, nonce_i + nonce_r, b"pumpguard-link session" + context, 4 + 4 * 16)
    return SessionKeys(okm[:4], okm[4:20], okm[20:36], okm[36:52], okm[52:68])


def _nonce(session_id: bytes, direction: int, counter: int) -> bytes:
    return session_id + bytes([direction]) + counter.to_bytes(8, "big")


def aead_seal(
    keys: SessionKeys, direction: int, counter: int, header: bytes, plaintext: bytes
) -> bytes:
    aead = AESCCM(keys.key(direction), tag_length=TAG_BYTES)
    return aead.encrypt(
        _nonce(keys.session_id, direction, counter), plaintext, header + keys.session_id
    )


def aead_open(
    keys: SessionKeys, direction: int, counter: int, header: bytes, sealed: bytes
) -> bytes | None:
    aead = AESCCM(keys.key(direction), tag_length=TAG_BYTES)
    try:
        return aead.decrypt(
            _nonce(keys.session_id, direction, counter), sealed, header + keys.session_id
        )
    except InvalidTag:
        return None


def wake_address(wake_key: bytes, counter: int) -> int:
    """The 3-byte address the receiver listens on for the frame with ``counter``.

    Unpredictable without the session key, so a flood cannot aim at a future address, and a
    recorded address is stale once its counter has passed.
    """
    return int.from_bytes(_hmac(wake_key, counter.to_bytes(8, "big"))[:3], "big")


class ReplayWindow:
    """Accepts each counter at most once, within ``REPLAY_WINDOW`` below the highest seen."""

    def __init__(self) -> None:
        self.highest = -1
        self._seen = 0

    def reconstruct(self, counter16: int) -> int:
        """The full counter nearest to the one expected next with these 16 low bits."""
        expected = self.highest + 1
        base = (expected & ~0xFFFF) | counter16
        candidates = (base - 0x10000, base, base + 0x10000)
        return min((c for c in candidates if c >= 0), key=lambda c: abs(c - expected))

    def fresh(self, counter: int) -> bool:
        if counter > self.highest:
            return True
        offset = self.highest - counter
        return offset < REPLAY_WINDOW and not (self._seen >> offset) & 1

    def accept(self, counter: int) -> None:
        if counter > self.highest:
            shift = counter - self.highest
            self._seen = ((self._seen << shift) | 1) & ((1 << REPLAY_WINDOW) - 1)
            self.highest = counter
        else:
            self._seen |= 1 << (self.highest - counter)
