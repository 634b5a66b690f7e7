"""Every parser that takes input from outside, as a fuzz target with valid seeds.

Radio frames go to the devices themselves (a secure pump, controller and CGM), not only to the
decoder, and the target fails when therapy changed: a frame fuzzer that only checks for
exceptions would miss the bug that matters.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path

from tests.fuzz.engine import FuzzTarget
from tests.interop.messages import piv
from tests.link.conftest import CONTROLLER, PUMP
from tests.link.test_fuzz import SECURE, SECURE_FRAMES, _snapshot
from tests.transport.test_messages import ACK, COMMAND, EVENT, STATUS

from pumpguard.clinical import LibraryError, parse_library
from pumpguard.devices.insulin import CommandSource
from pumpguard.interop import Hl7Error, parse_ack, parse_piv
from pumpguard.interop.acks import build_accept_ack
from pumpguard.interop.codes import AckCode
from pumpguard.interop.mllp import MllpDecoder, encode_frame
from pumpguard.link import AppKind, LegacyFrame
from pumpguard.link.frames import FrameError, decode_legacy, decode_secure
from pumpguard.link.pdu import PduError, decode_cgm, decode_command, decode_status, e2e_unwrap
from pumpguard.risk import InventoryError, parse_inventory_csv, parse_inventory_json
from pumpguard.transport.codec import PacketDecoder, PacketError
from pumpguard.transport.messages import MessageError, decode_message, encode_message

__all__ = ["TARGETS"]

ROOT = Path(__file__).resolve().parents[2]


class TherapyChanged(AssertionError):
    """A fuzzed frame changed the pump's therapy: the finding this target exists for."""


def _secure_devices(data: bytes) -> None:
    before, readings = _snapshot(SECURE), len(SECURE.controller.readings)
    at = SECURE.medium.now_us
    for endpoint in (SECURE.pump_ep, SECURE.controller, SECURE.cgm):
        endpoint.on_frame(data, at)
    SECURE.medium.settle()
    if _snapshot(SECURE) != before or len(SECURE.controller.readings) != readings:
        raise TherapyChanged(f"therapy or readings changed by {data.hex()}")


def _pdus(data: bytes) -> None:
    try:
        inner, _ = e2e_unwrap(data)
    except PduError:
        inner = data
    for decode in (
        lambda d: decode_command(d, _SOURCE, None),
        decode_status,
        lambda d: decode_cgm(d, with_crc=True),
        lambda d: decode_cgm(d, with_crc=False),
    ):
        with contextlib.suppress(PduError):
            decode(inner)


def _mqtt_stream(data: bytes) -> None:
    for _ in PacketDecoder().feed(data):
        pass


def _mllp_stream(data: bytes) -> None:
    decoder = MllpDecoder(max_frame=64_000)
    decoder.feed(data)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _library(data: bytes) -> None:
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return
    parse_library(document)


_SOURCE = CommandSource.REMOTE
_PIV = piv().encode()
_ACK = build_accept_ack(
    AckCode.CA, "EHR-0001", control_id="PG-1", now=datetime(2026, 1, 1, tzinfo=UTC)
).encode()
_LEGACY_FRAMES = [LegacyFrame(k, PUMP, CONTROLLER, b"\x01\x00\x32").encode() for k in AppKind]
_LIBRARY = (ROOT / "examples" / "drug-library.json").read_bytes()
_INVENTORY_CSV = (ROOT / "examples" / "inventory.csv").read_bytes()

TARGETS: tuple[FuzzTarget, ...] = (
    FuzzTarget("secure-radio-devices", _secure_devices, (), SECURE_FRAMES, max_len=300),
    FuzzTarget("legacy-frame", decode_legacy, (FrameError,), _LEGACY_FRAMES),
    FuzzTarget("secure-frame", decode_secure, (FrameError,), SECURE_FRAMES),
    FuzzTarget("ids-cgms-pdu", _pdus, (), [f[12:] for f in SECURE_FRAMES]),
    FuzzTarget("mqtt-packets", _mqtt_stream, (PacketError,), [b"\x10\x00", b"\xc0\x00"]),
    FuzzTarget(
        "device-message",
        decode_message,
        (MessageError,),
        [encode_message(m) for m in (STATUS, EVENT, COMMAND, ACK)],
        tokens=[b'"', b"{", b"}", b"[", b":", b",", b"null", b"1e999"],
    ),
    FuzzTarget(
        "hl7-piv",
        lambda d: parse_piv(_text(d)),
        (Hl7Error,),
        [_PIV],
        tokens=[b"\r", b"|", b"^", b"~", b"\\", b"&", b"MSH", b"PID", b"RXG", b"OBX"],
        max_len=20_000,
    ),
    FuzzTarget(
        "hl7-ack",
        lambda d: parse_ack(_text(d)),
        (Hl7Error,),
        [_ACK],
        tokens=[b"\r", b"|", b"^", b"MSA", b"ERR"],
        max_len=20_000,
    ),
    FuzzTarget(
        "mllp-stream",
        _mllp_stream,
        (),
        [encode_frame(piv())],
        tokens=[b"\x0b", b"\x1c", b"\x0d", b"\x1c\x0d"],
    ),
    FuzzTarget(
        "drug-library-json",
        _library,
        (LibraryError,),
        [_LIBRARY],
        tokens=[b'"', b"{", b"}", b"[", b"]", b":", b",", b"null", b"-1", b"1e999", b"NaN"],
        max_len=200_000,
    ),
    FuzzTarget(
        "inventory-csv",
        lambda d: parse_inventory_csv(_text(d)),
        (InventoryError,),
        [_INVENTORY_CSV],
        tokens=[b",", b'"', b"\n", b"\r\n"],
    ),
    FuzzTarget(
        "inventory-json",
        lambda d: parse_inventory_json(_text(d)),
        (InventoryError,),
        [
            b'[{"manufacturer": "BD", "model": "Alaris 8015", '
            b'"software_version": "9.19", "count": 3}]'
        ],
        tokens=[b'"', b"{", b"}", b"[", b"]", b":", b","],
    ),
)
