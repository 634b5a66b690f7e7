"""Bluetooth E2E-Protection and the IEEE 11073-20601 SFLOAT the IDS and CGMS PDUs carry.

E2E-CRC is CRC-16/MCRF4XX (polynomial 0x1021 reflected, init 0xFFFF, no final XOR) over every
field before it, appended least significant byte first; the E2E-Counter is 8 bits, 1..255,
wrapping to 1 (domain reference, section 5). SFLOAT is a 4-bit signed exponent over a 12-bit
signed mantissa with reserved special values (IEEE 11073-20601, as used by CGMS 0x2AA7).
"""

from __future__ import annotations

from decimal import Decimal

__all__ = [
    "E2E_COUNTER_MAX",
    "SfloatError",
    "append_crc",
    "crc16_mcrf4xx",
    "decode_sfloat",
    "encode_sfloat",
    "next_e2e_counter",
    "split_crc",
]

E2E_COUNTER_MAX = 255

_SPECIAL = frozenset({0x07FF, 0x0800, 0x07FE, 0x0802, 0x0801})
"""NaN, NRes, +INFINITY, -INFINITY, reserved: never a measurement."""


class SfloatError(ValueError):
    """A value SFLOAT cannot carry exactly, or bytes that are not a finite SFLOAT."""


def crc16_mcrf4xx(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def append_crc(data: bytes) -> bytes:
    return data + crc16_mcrf4xx(data).to_bytes(2, "little")


def split_crc(data: bytes) -> tuple[bytes, bool]:
    """The fields before the CRC and whether the CRC matches them."""
    if len(data) < 2:
        return b"", False
    body, crc = data[:-2], int.from_bytes(data[-2:], "little")
    return body, crc16_mcrf4xx(body) == crc


def next_e2e_counter(counter: int) -> int:
    return 1 if counter >= E2E_COUNTER_MAX else counter + 1


def encode_sfloat(value: Decimal) -> bytes:
    """Exactly ``value`` as SFLOAT (mantissa -2048..2047, exponent -8..7), or ``SfloatError``."""
    if not value.is_finite():
        raise SfloatError(f"SFLOAT carries finite numbers only, not {value}")
    sign, digits, exponent = value.normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
    while mantissa != 0 and exponent < -8 and mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    while exponent > 7 and abs(mantissa * 10) <= 2047:
        mantissa *= 10
        exponent -= 1
    if mantissa == 0:
        exponent = 0
    if not -2048 <= mantissa <= 2047 or not -8 <= exponent <= 7:
        raise SfloatError(f"{value} does not fit an SFLOAT exactly")
    raw = ((exponent & 0xF) << 12) | (mantissa & 0xFFF)
    if raw in _SPECIAL:
        raise SfloatError(f"{value} would encode as a reserved SFLOAT value")
    return raw.to_bytes(2, "little")


def decode_sfloat(data: bytes) -> Decimal:
    if len(data) != 2:
        raise SfloatError("an SFLOAT is 2 bytes")
    raw = int.from_bytes(data, "little")
    if raw in _SPECIAL:
        raise SfloatError(f"SFLOAT special value 0x{raw:04X} is not a number")
    mantissa = raw & 0xFFF
    exponent = raw >> 12
    if mantissa >= 0x800:
        mantissa -= 0x1000
    if exponent >= 0x8:
        exponent -= 0x10
    return Decimal(mantissa).scaleb(exponent)
