"""Frame layouts of both profiles, with strict decoders.

Addresses are 3 bytes. A legacy frame is ``kind | dst | src | payload | CRC-16`` in clear, the
device serial being the address (and the identity). A secure frame is ``kind | dst | src | body``;
for data frames the body is ``counter (2, LE, truncated) | ciphertext | tag (8)`` and ``dst`` is
the receiver's rolling wake-up address for that counter. Every decoder checks the whole frame
before anything else reads it, and raises ``FrameError`` naming the event code to report.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from pumpguard.link.codes import LinkEventCode
from pumpguard.link.e2e import append_crc, split_crc
from pumpguard.link.pdu import AppKind

__all__ = [
    "ADDRESS_BYTES",
    "BROADCAST",
    "MAX_FRAME_BYTES",
    "TAG_BYTES",
    "FrameError",
    "FrameKind",
    "LegacyFrame",
    "SecureFrame",
    "address_text",
    "decode_legacy",
    "decode_secure",
    "is_secure_kind",
]

ADDRESS_BYTES = 3
BROADCAST = 0xFFFFFF
MAX_FRAME_BYTES = 64
"""Largest frame either profile sends or accepts (a BLE 4.x data PDU holds 27 bytes of L2CAP
payload; this model keeps one frame per message instead of fragmenting)."""
TAG_BYTES = 8
COUNTER_BYTES = 2
HEADER_BYTES = 1 + 2 * ADDRESS_BYTES


class FrameKind(IntEnum):
    """First byte of a secure frame (legacy frames start with an ``AppKind``)."""

    DATA = 0x5D
    PAIR_REQUEST = 0x60
    PAIR_RESPONSE = 0x61
    PAIR_NONCE_I = 0x62
    PAIR_NONCE_R = 0x63
    PAIR_CHECK_I = 0x64
    PAIR_CHECK_R = 0x65
    PAIR_FAIL = 0x66
    SESSION_INIT = 0x70
    SESSION_ACCEPT = 0x71


BODY_BYTES: dict[FrameKind, int] = {
    FrameKind.PAIR_REQUEST: 1 + 32,
    FrameKind.PAIR_RESPONSE: 32 + 16,
    FrameKind.PAIR_NONCE_I: 16,
    FrameKind.PAIR_NONCE_R: 16,
    FrameKind.PAIR_CHECK_I: 16,
    FrameKind.PAIR_CHECK_R: 16,
    FrameKind.PAIR_FAIL: 1,
    FrameKind.SESSION_INIT: 16,
    FrameKind.SESSION_ACCEPT: 16,
}

_LEGACY_KINDS = frozenset(int(k) for k in AppKind)
_SECURE_KINDS = frozenset(int(k) for k in FrameKind)


class FrameError(ValueError):
    """A frame that fails the codec's checks, and the event code that reports it."""

    def __init__(self, code: LinkEventCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def address_text(address: int) -> str:
    return f"{address:06X}"


def is_secure_kind(first_byte: int) -> bool:
    return first_byte in _SECURE_KINDS


def _addr(value: int) -> bytes:
    if not 0 <= value <= 0xFFFFFF:
        raise ValueError(f"an address is 3 bytes, got {value}")
    return value.to_bytes(ADDRESS_BYTES, "big")


def _check_size(data: bytes, smallest: int) -> None:
    if not isinstance(data, bytes | bytearray):
        raise FrameError(LinkEventCode.FRAME_MALFORMED, "a frame is bytes")
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError(
            LinkEventCode.FRAME_MALFORMED, f"frame of {len(data)} bytes, over {MAX_FRAME_BYTES}"
        )
    if len(data) < smallest:
        raise FrameError(LinkEventCode.FRAME_MALFORMED, f"frame of {len(data)} bytes is too short")


@dataclass(frozen=True, slots=True)
class LegacyFrame:
    kind: AppKind
    dst: int
    src: int
    payload: bytes = b""

    def encode(self) -> bytes:
        frame = append_crc(bytes([self.kind]) + _addr(self.dst) + _addr(self.src) + self.payload)
        if len(frame) > MAX_FRAME_BYTES:
            raise ValueError(f"legacy frame of {len(frame)} bytes is over {MAX_FRAME_BYTES}")
        return frame


def decode_legacy(data: bytes) -> LegacyFrame:
    _check_size(data, HEADER_BYTES + 2)
    if data[0] in _SECURE_KINDS:
        raise FrameError(LinkEventCode.FRAME_WRONG_PROFILE, "a secure frame on a legacy device")
    if data[0] not in _LEGACY_KINDS:
        raise FrameError(LinkEventCode.FRAME_MALFORMED, f"unknown frame kind 0x{data[0]:02X}")
    body, ok = split_crc(bytes(data))
    if not ok:
        raise FrameError(LinkEventCode.FRAME_CRC, "frame CRC mismatch")
    return LegacyFrame(
        AppKind(body[0]),
        int.from_bytes(body[1:4], "big"),
        int.from_bytes(body[4:7], "big"),
        bytes(body[HEADER_BYTES:]),
    )


@dataclass(frozen=True, slots=True)
class SecureFrame:
    kind: FrameKind
    dst: int
    src: int
    body: bytes

    @property
    def header(self) -> bytes:
        """The cleartext header: kind, addresses and, for data frames, the counter."""
        head = bytes([self.kind]) + _addr(self.dst) + _addr(self.src)
        return head + self.body[:COUNTER_BYTES] if self.kind is FrameKind.DATA else head

    @property
    def counter16(self) -> int:
        return int.from_bytes(self.body[:COUNTER_BYTES], "little")

    @property
    def sealed(self) -> bytes:
        """Ciphertext and tag of a data frame."""
        return self.body[COUNTER_BYTES:]

    def encode(self) -> bytes:
        frame = bytes([self.kind]) + _addr(self.dst) + _addr(self.src) + self.body
        if len(frame) > MAX_FRAME_BYTES:
            raise ValueError(f"secure frame of {len(frame)} bytes is over {MAX_FRAME_BYTES}")
        return frame


def decode_secure(data: bytes) -> SecureFrame:
    _check_size(data, HEADER_BYTES + 1)
    if data[0] in _LEGACY_KINDS:
        raise FrameError(
            LinkEventCode.FRAME_WRONG_PROFILE, "a legacy (cleartext) frame on a secure device"
        )
    if data[0] not in _SECURE_KINDS:
        raise FrameError(LinkEventCode.FRAME_MALFORMED, f"unknown frame kind 0x{data[0]:02X}")
    kind = FrameKind(data[0])
    body = bytes(data[HEADER_BYTES:])
    if kind is FrameKind.DATA:
        if len(body) < COUNTER_BYTES + 1 + TAG_BYTES:
            raise FrameError(LinkEventCode.FRAME_MALFORMED, "data frame too short")
    elif len(body) != BODY_BYTES[kind]:
        raise FrameError(
            LinkEventCode.FRAME_MALFORMED,
            f"{kind.name} body is {BODY_BYTES[kind]} bytes, got {len(body)}",
        )
    return SecureFrame(
        kind, int.from_bytes(data[1:4], "big"), int.from_bytes(data[4:7], "big"), body
    )
