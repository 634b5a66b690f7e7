"""The specification's test vectors, parsed out of docs/protocols/insulin-link.md, hold."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pumpguard.devices.insulin import Bolus, CommandSource
from pumpguard.link import AppKind, FrameKind, LegacyFrame, decode_secure
from pumpguard.link.crypto import (
    Direction,
    aead_open,
    aead_seal,
    commitment,
    derive_pairing_keys,
    derive_session_keys,
    numeric_code,
    pairing_check,
    private_key,
    public_bytes,
    session_mac,
    shared_secret,
    wake_address,
)
from pumpguard.link.e2e import crc16_mcrf4xx, decode_sfloat, encode_sfloat
from pumpguard.link.pdu import CgmMeasurement, e2e_wrap, encode_cgm, encode_command

SPEC = Path(__file__).resolve().parents[2] / "docs" / "protocols" / "insulin-link.md"


def _vectors() -> dict[str, Any]:
    text = SPEC.read_text(encoding="utf-8")
    section = text.split("## 10. Test vectors", 1)[1]
    block = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert block is not None, "no json block in the test-vector section"
    loaded: dict[str, Any] = json.loads(block.group(1))
    return loaded


V = _vectors()
H = bytes.fromhex


def test_crc_and_sfloat() -> None:
    crc = V["crc16_mcrf4xx"]
    assert crc16_mcrf4xx(crc["input_ascii"].encode()) == int(crc["crc"], 16)
    for case in V["sfloat"]:
        assert encode_sfloat(Decimal(case["value"])).hex() == case["bytes"]
        assert decode_sfloat(H(case["bytes"])) == Decimal(case["value"])


def test_application_pdus() -> None:
    bolus = V["ids_set_bolus"]
    pdu = encode_command(Bolus(Decimal(bolus["amount_u"]), CommandSource.REMOTE))
    assert pdu.hex() == bolus["pdu"]
    assert e2e_wrap(pdu, bolus["e2e_counter"]).hex() == bolus["protected"]
    cgm = V["cgm_measurement"]
    m = CgmMeasurement(cgm["glucose_mgdl"], cgm["time_offset_min"])
    assert encode_cgm(m, with_crc=True).hex() == cgm["with_crc"]
    assert encode_cgm(m, with_crc=False).hex() == cgm["without_crc"]
    legacy = V["legacy_bolus_frame"]
    frame = LegacyFrame(AppKind.COMMAND_REMOTE, int(legacy["dst"], 16), int(legacy["src"], 16), pdu)
    assert frame.encode().hex() == legacy["frame"]


def _pairing() -> tuple[dict[str, Any], bytes, bytes, bytes]:
    p = V["pairing"]
    ctx = H(p["initiator"]) + H(p["responder"]) + H(p["role_byte"])
    return p, ctx, H(p["n_i"]), H(p["n_r"])


def test_pairing_vectors_including_rfc7748() -> None:
    p, ctx, n_i, n_r = _pairing()
    k_i, k_r = private_key(H(p["initiator_private"])), private_key(H(p["responder_private"]))
    pk_i, pk_r = public_bytes(k_i), public_bytes(k_r)
    assert pk_i.hex() == p["initiator_public"]
    assert pk_r.hex() == p["responder_public"]
    secret = shared_secret(k_i, pk_r)
    assert secret is not None and secret.hex() == p["shared_secret"]
    assert shared_secret(k_r, pk_i) == secret
    assert commitment(n_r, pk_r, pk_i).hex() == p["responder_commitment"]
    assert f"{numeric_code(pk_i, pk_r, n_i, n_r):06d}" == p["numeric_code"]
    keys = derive_pairing_keys(secret, pk_i, pk_r, n_i, n_r, ctx)
    assert (keys.mac_key.hex(), keys.ltk.hex()) == (p["mac_key"], p["ltk"])
    assert pairing_check(keys, b"I", n_i, n_r, ctx).hex() == p["check_i"]
    assert pairing_check(keys, b"R", n_i, n_r, ctx).hex() == p["check_r"]


def test_session_and_data_frame_vectors() -> None:
    p, _, _, _ = _pairing()
    s, d = V["session"], V["data_frame"]
    ltk = H(p["ltk"])
    i, r = H(p["initiator"]), H(p["responder"])
    keys = derive_session_keys(ltk, H(s["nonce_i"]), H(s["nonce_r"]), i + r)
    assert keys.session_id.hex() == s["session_id"]
    assert (keys.key_i2r.hex(), keys.key_r2i.hex()) == (s["key_i2r"], s["key_r2i"])
    assert (keys.wake_i2r.hex(), keys.wake_r2i.hex()) == (s["wake_i2r"], s["wake_r2i"])
    init = H(s["init_frame"])
    assert init[:7] == bytes([FrameKind.SESSION_INIT]) + r + i
    assert init[15:] == session_mac(ltk, init[:7], H(s["nonce_i"]))
    accept = H(s["accept_frame"])
    assert accept[15:] == session_mac(ltk, accept[:7], H(s["nonce_i"]), H(s["nonce_r"]))
    counter = d["counter"]
    assert f"{wake_address(keys.wake_i2r, counter):06x}" == d["wake_address"]
    frame = decode_secure(H(d["frame"]))
    assert frame.counter16 == counter
    assert aead_seal(keys, Direction.I2R, counter, frame.header, H(d["plaintext"])) == frame.sealed
    assert aead_open(keys, Direction.I2R, counter, frame.header, frame.sealed) == H(d["plaintext"])


@pytest.mark.parametrize("position", [1, 3, 5, 7, 9, 20, -1])
def test_the_data_vector_fails_when_any_part_changes(position: int) -> None:
    p, s, d = V["pairing"], V["session"], V["data_frame"]
    keys = derive_session_keys(
        H(p["ltk"]), H(s["nonce_i"]), H(s["nonce_r"]), H(p["initiator"]) + H(p["responder"])
    )
    raw = bytearray(H(d["frame"]))
    raw[position] ^= 0x01
    frame = decode_secure(bytes(raw))
    assert aead_open(keys, Direction.I2R, d["counter"], frame.header, frame.sealed) is None
