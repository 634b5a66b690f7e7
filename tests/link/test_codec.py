"""Codecs: E2E-CRC, SFLOAT, IDS/CGMS PDUs and both frame layouts are exact and strict."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pumpguard.devices.insulin import (
    DEFAULT_LIMITS,
    Bolus,
    CancelBolus,
    CancelTempBasal,
    CommandSource,
    ExtendedBolus,
    IdsOpcode,
    IdsResponseCode,
    PumpState,
    Resume,
    SetLimits,
    SetTempBasal,
    Suspend,
)
from pumpguard.link import FrameError, LegacyFrame, LinkEventCode, decode_legacy, decode_secure
from pumpguard.link.bench import frame_overheads
from pumpguard.link.e2e import (
    SfloatError,
    crc16_mcrf4xx,
    decode_sfloat,
    encode_sfloat,
    next_e2e_counter,
)
from pumpguard.link.pdu import (
    AppKind,
    CgmMeasurement,
    CpResponse,
    E2eCrcError,
    PduError,
    decode_cgm,
    decode_command,
    decode_response,
    decode_status,
    e2e_unwrap,
    e2e_wrap,
    encode_cgm,
    encode_command,
    encode_response,
    encode_status,
)

SRC = CommandSource.REMOTE


def test_crc16_mcrf4xx_check_value() -> None:
    # The catalogued check value of CRC-16/MCRF4XX over ASCII "123456789".
    assert crc16_mcrf4xx(b"123456789") == 0x6F91
    assert crc16_mcrf4xx(b"") == 0xFFFF


def test_e2e_counter_wraps_to_one() -> None:
    assert next_e2e_counter(0) == 1
    assert next_e2e_counter(254) == 255
    assert next_e2e_counter(255) == 1


@given(st.integers(-2048, 2047), st.integers(-8, 7))
def test_sfloat_round_trips_every_finite_value(mantissa: int, exponent: int) -> None:
    value = Decimal(mantissa).scaleb(exponent)
    raw = (exponent & 0xF) << 12 | (mantissa & 0xFFF)
    if raw in (0x07FF, 0x0800, 0x07FE, 0x0802, 0x0801):
        with pytest.raises(SfloatError):
            encode_sfloat(value)
        return
    assert decode_sfloat(encode_sfloat(value)) == value


def test_sfloat_refuses_specials_and_unrepresentable_values() -> None:
    for special in (0x07FF, 0x0800, 0x07FE, 0x0802, 0x0801):
        with pytest.raises(SfloatError):
            decode_sfloat(special.to_bytes(2, "little"))
    with pytest.raises(SfloatError):
        encode_sfloat(Decimal("1.0001"))
    with pytest.raises(SfloatError):
        encode_sfloat(Decimal("NaN"))
    assert encode_sfloat(Decimal("2.5")) == bytes([0x19, 0xF0])


COMMANDS = [
    Bolus(Decimal("2.55"), SRC, "id"),
    ExtendedBolus(Decimal("3"), 120, SRC, "id"),
    CancelBolus(7, SRC, "id"),
    CancelBolus(None, SRC, "id"),
    SetTempBasal(90, Decimal("0.425"), None, SRC, "id"),
    SetTempBasal(30, None, 150, SRC, "id"),
    CancelTempBasal(SRC, "id"),
    Suspend(SRC, "id"),
    Resume(SRC, "id"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_commands_round_trip_through_the_ids_control_point(command: object) -> None:
    pdu = encode_command(command)  # type: ignore[arg-type]
    assert decode_command(pdu, SRC, "id").command == command


@given(st.integers(1, 2000), st.integers(0, 2))
def test_bolus_amounts_round_trip(steps: int, places: int) -> None:
    amount = Decimal(steps).scaleb(-places)
    command = Bolus(amount, SRC, "x")
    decoded = decode_command(encode_command(command), SRC, "x").command
    assert isinstance(decoded, Bolus)
    assert decoded.amount_u == amount


def test_set_bolus_layout_is_opcode_flags_type_fast_extended_duration() -> None:
    pdu = encode_command(Bolus(Decimal("2.5"), SRC, "x"))
    assert pdu.hex() == "4b11" + "00" + "33" + "19f0" + "0000" + "0000"


def test_commands_done_at_the_pump_are_not_carried() -> None:
    with pytest.raises(PduError) as caught:
        encode_command(SetLimits(DEFAULT_LIMITS))
    assert caught.value.ids_code is IdsResponseCode.OPCODE_NOT_SUPPORTED


@pytest.mark.parametrize(
    ("pdu", "code"),
    [
        (b"", IdsResponseCode.INVALID_OPERAND),
        (b"\x01", IdsResponseCode.INVALID_OPERAND),
        (b"\x34\x12", IdsResponseCode.OPCODE_NOT_SUPPORTED),
        (bytes.fromhex("4b11") + bytes(7), IdsResponseCode.INVALID_OPERAND),
        (bytes.fromhex("4b11") + bytes([0, 0x55]) + bytes(6), IdsResponseCode.INVALID_OPERAND),
        (bytes.fromhex("4b11") + bytes([1, 0x33]) + bytes(6), IdsResponseCode.INVALID_OPERAND),
        (
            bytes.fromhex("4b11") + bytes([0, 0x33]) + b"\xff\x07" + bytes(4),
            IdsResponseCode.INVALID_OPERAND,
        ),
        (bytes.fromhex("5a0f") + bytes([0x33]), IdsResponseCode.PROCEDURE_NOT_APPLICABLE),
        (bytes.fromhex("5a0f") + bytes([0x12]), IdsResponseCode.PROCEDURE_NOT_APPLICABLE),
        (bytes.fromhex("1111") + b"\x00", IdsResponseCode.INVALID_OPERAND),
        (bytes.fromhex("8d14") + bytes(2), IdsResponseCode.OPCODE_NOT_SUPPORTED),
    ],
)
def test_control_point_decoding_is_strict(pdu: bytes, code: IdsResponseCode) -> None:
    with pytest.raises(PduError) as caught:
        decode_command(pdu, SRC, "x")
    assert caught.value.ids_code is code


def test_responses_status_and_cgm_round_trip() -> None:
    ok = CpResponse(IdsOpcode.SET_BOLUS, IdsResponseCode.SUCCESS, 12)
    assert decode_response(encode_response(ok)) == ok
    refused = CpResponse(IdsOpcode.SET_TBR_ADJUSTMENT, IdsResponseCode.PARAMETER_OUT_OF_RANGE)
    assert decode_response(encode_response(refused)) == refused
    status = decode_status(encode_status(PumpState.SUSPENDED, Decimal("212.37"), True))
    assert (status.reservoir_u, status.alarm) == (Decimal(212), True)
    assert decode_status(
        encode_status(PumpState.RUNNING, Decimal("150.55"), False)
    ).reservoir_u == Decimal("150.5")
    m = CgmMeasurement(142, 65)
    assert decode_cgm(encode_cgm(m, with_crc=True), with_crc=True) == m
    assert decode_cgm(encode_cgm(m, with_crc=False), with_crc=False) == m


def test_cgm_crc_is_checked() -> None:
    data = bytearray(encode_cgm(CgmMeasurement(142, 65), with_crc=True))
    data[2] ^= 0x01
    with pytest.raises(PduError):
        decode_cgm(bytes(data), with_crc=True)


def test_e2e_crc_and_counter_are_checked() -> None:
    wrapped = e2e_wrap(b"\x11\x11", 9)
    assert e2e_unwrap(wrapped) == (b"\x11\x11", 9)
    for i in range(len(wrapped)):
        flipped = bytearray(wrapped)
        flipped[i] ^= 0x40
        with pytest.raises(PduError):
            e2e_unwrap(bytes(flipped))
    with pytest.raises(E2eCrcError):
        e2e_unwrap(wrapped[:-1] + bytes([wrapped[-1] ^ 1]))
    with pytest.raises(PduError):
        e2e_unwrap(e2e_wrap(b"", 1)[:-3] + bytes([0]) + e2e_wrap(b"", 1)[-2:])


def test_legacy_frames_round_trip_and_check_crc_length_and_profile() -> None:
    frame = LegacyFrame(AppKind.COMMAND_REMOTE, 0x123456, 0xABCDEF, b"\x11\x11")
    data = frame.encode()
    assert decode_legacy(data) == frame
    bad = bytearray(data)
    bad[-1] ^= 1
    cases = {
        bytes(bad): LinkEventCode.FRAME_CRC,
        data[:5]: LinkEventCode.FRAME_MALFORMED,
        data + bytes(60): LinkEventCode.FRAME_MALFORMED,
        b"\x5d" + data[1:]: LinkEventCode.FRAME_WRONG_PROFILE,
        b"\x99" + data[1:]: LinkEventCode.FRAME_MALFORMED,
    }
    for raw, code in cases.items():
        with pytest.raises(FrameError) as caught:
            decode_legacy(raw)
        assert caught.value.code is code


def test_secure_frames_have_exact_body_lengths() -> None:
    with pytest.raises(FrameError) as caught:
        decode_secure(bytes([0x60]) + bytes(6) + bytes(32))
    assert caught.value.code is LinkEventCode.FRAME_MALFORMED
    with pytest.raises(FrameError) as caught:
        decode_secure(bytes([0x10]) + bytes(20))
    assert caught.value.code is LinkEventCode.FRAME_WRONG_PROFILE
    assert decode_secure(bytes([0x60]) + bytes(6) + bytes(33)).body == bytes(33)


def test_secure_overhead_is_at_most_16_bytes_per_frame() -> None:
    overheads = frame_overheads()
    assert set(overheads) >= {"bolus", "temp-basal", "response", "status", "cgm"}
    assert max(overheads.values()) <= 16
    assert min(overheads.values()) > 0
