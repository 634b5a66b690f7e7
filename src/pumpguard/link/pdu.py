"""Application PDUs: IDS Command Control Point, IDS Status, CGMS Measurement.

Both profiles carry the same application values; the secure profile adds IDS/CGMS
E2E-Protection (counter and CRC) and encrypts them. Layouts follow the Bluetooth IDS and CGMS
specifications as summarised in the domain reference, section 5; what this subset leaves out
and which constants are modelling choices is stated in ``docs/protocols/insulin-link.md``.

Every decoder is strict: exact lengths, known opcodes and enumerations, finite SFLOATs. A
decoding problem is a ``PduError`` carrying the IDS response code the pump answers with.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum
from fractions import Fraction

from pumpguard.devices.insulin import (
    Bolus,
    CancelBolus,
    CancelTempBasal,
    Command,
    CommandSource,
    ExtendedBolus,
    IdsOpcode,
    IdsResponseCode,
    IdsTherapyControlState,
    PumpState,
    Resume,
    SetTempBasal,
    StartLimitedMode,
    Suspend,
)
from pumpguard.link.e2e import (
    SfloatError,
    append_crc,
    decode_sfloat,
    encode_sfloat,
    split_crc,
)

__all__ = [
    "AppKind",
    "CgmMeasurement",
    "CpRequest",
    "CpResponse",
    "E2eCrcError",
    "PduError",
    "PumpStatusPdu",
    "decode_cgm",
    "decode_command",
    "decode_response",
    "decode_status",
    "e2e_unwrap",
    "e2e_wrap",
    "encode_cgm",
    "encode_command",
    "encode_response",
    "encode_status",
    "request_opcode",
]


class AppKind(IntEnum):
    """What an application message is; the first byte of a legacy frame or a secure plaintext."""

    SCAN = 0x01
    SCAN_REPLY = 0x02
    COMMAND_REMOTE = 0x10
    COMMAND_AUTOMATED = 0x11
    COMMAND_RESPONSE = 0x12
    STATUS_REQUEST = 0x13
    STATUS = 0x14
    CGM_MEASUREMENT = 0x15


BOLUS_FAST = 0x33
BOLUS_EXTENDED = 0x3C
TBR_ABSOLUTE = 0x33
TBR_RELATIVE = 0x3C
_STATUS_RESERVOIR_ATTACHED = 0x01
_STATUS_ALARM = 0x02


class PduError(ValueError):
    """An application PDU the receiver cannot accept, with the IDS code it answers."""

    def __init__(self, message: str, ids_code: IdsResponseCode = IdsResponseCode.INVALID_OPERAND):
        super().__init__(message)
        self.ids_code = ids_code


class E2eCrcError(PduError):
    """The E2E-CRC does not match: corruption or tampering inside the application layer."""


@dataclass(frozen=True, slots=True)
class CpRequest:
    """A decoded IDS Command Control Point request (the command has no id or source yet)."""

    opcode: IdsOpcode
    command: Command


@dataclass(frozen=True, slots=True)
class CpResponse:
    request_opcode: IdsOpcode
    code: IdsResponseCode
    bolus_id: int | None = None

    @property
    def accepted(self) -> bool:
        return self.code is IdsResponseCode.SUCCESS


@dataclass(frozen=True, slots=True)
class PumpStatusPdu:
    """The IDS Status (0x2B21) subset: therapy control state, reservoir, flags."""

    therapy: IdsTherapyControlState
    reservoir_u: Decimal
    alarm: bool


@dataclass(frozen=True, slots=True)
class CgmMeasurement:
    """A CGMS Measurement (0x2AA7) without the optional trend, quality and status fields."""

    glucose_mgdl: int
    time_offset_min: int


def _u16(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise PduError(
            f"{what} {value} does not fit 16 bits", IdsResponseCode.PARAMETER_OUT_OF_RANGE
        )
    return value.to_bytes(2, "little")


def _sfloat(value: Decimal, what: str) -> bytes:
    try:
        return encode_sfloat(value)
    except SfloatError as exc:
        raise PduError(f"{what}: {exc}", IdsResponseCode.PARAMETER_OUT_OF_RANGE) from None


def _read_sfloat(data: bytes, what: str) -> Decimal:
    try:
        return decode_sfloat(data)
    except SfloatError as exc:
        raise PduError(f"{what}: {exc}") from None


def encode_command(command: Command) -> bytes:
    """The CP request (opcode and operand) for a command the radio may carry."""
    match command:
        case Bolus(amount_u=amount):
            operand = bytes([0, BOLUS_FAST]) + _sfloat(amount, "bolus amount")
            operand += _sfloat(Decimal(0), "extended amount") + _u16(0, "duration")
            return _op(IdsOpcode.SET_BOLUS) + operand
        case ExtendedBolus(amount_u=amount, duration_min=minutes):
            operand = bytes([0, BOLUS_EXTENDED]) + _sfloat(Decimal(0), "fast amount")
            operand += _sfloat(amount, "extended amount") + _u16(minutes, "duration")
            return _op(IdsOpcode.SET_BOLUS) + operand
        case CancelBolus(bolus_id=bolus_id):
            return _op(IdsOpcode.CANCEL_BOLUS) + _u16(bolus_id or 0, "bolus id")
        case SetTempBasal(duration_min=minutes, rate_u_h=rate, percent=percent):
            if (rate is None) == (percent is None):
                raise PduError("a temp basal has a rate or a percent, not both")
            kind, value = (
                (TBR_ABSOLUTE, rate) if rate is not None else (TBR_RELATIVE, Decimal(percent or 0))
            )
            assert value is not None
            operand = bytes([0, kind]) + _sfloat(value, "temp basal") + _u16(minutes, "duration")
            return _op(IdsOpcode.SET_TBR_ADJUSTMENT) + operand
        case CancelTempBasal():
            return _op(IdsOpcode.CANCEL_TBR_ADJUSTMENT)
        case Suspend():
            return _op(IdsOpcode.SET_THERAPY_CONTROL_STATE) + bytes([IdsTherapyControlState.PAUSE])
        case Resume():
            return _op(IdsOpcode.SET_THERAPY_CONTROL_STATE) + bytes([IdsTherapyControlState.RUN])
        case StartLimitedMode():
            return _op(IdsOpcode.SET_THERAPY_CONTROL_STATE) + bytes(
                [IdsTherapyControlState.LIMITED]
            )
    raise PduError(
        f"{type(command).__name__} is not carried over the radio (it is done at the pump)",
        IdsResponseCode.OPCODE_NOT_SUPPORTED,
    )


def _op(opcode: IdsOpcode) -> bytes:
    return int(opcode).to_bytes(2, "little")


def _opcode(data: bytes) -> IdsOpcode:
    if len(data) < 2:
        raise PduError("a CP PDU starts with a 2-byte opcode")
    raw = int.from_bytes(data[:2], "little")
    try:
        return IdsOpcode(raw)
    except ValueError:
        raise PduError(
            f"unknown IDS opcode 0x{raw:04X}", IdsResponseCode.OPCODE_NOT_SUPPORTED
        ) from None


def request_opcode(pdu: bytes) -> IdsOpcode:
    """The opcode a refused request is answered for (Response's own opcode if unreadable)."""
    if len(pdu) >= 2:
        try:
            return IdsOpcode(int.from_bytes(pdu[:2], "little"))
        except ValueError:
            pass
    return IdsOpcode.RESPONSE


def _expect(operand: bytes, size: int, opcode: IdsOpcode) -> None:
    if len(operand) != size:
        raise PduError(f"{opcode.name} takes {size} operand bytes, got {len(operand)}")


def decode_command(data: bytes, source: CommandSource, command_id: str | None) -> CpRequest:
    """The command a CP request asks for, attributed to ``source`` with ``command_id``."""
    opcode = _opcode(data)
    operand = data[2:]
    command: Command
    match opcode:
        case IdsOpcode.SET_BOLUS:
            _expect(operand, 8, opcode)
            if operand[0] != 0:
                raise PduError(f"unsupported Set Bolus flags 0x{operand[0]:02X}")
            fast = _read_sfloat(operand[2:4], "fast amount")
            extended = _read_sfloat(operand[4:6], "extended amount")
            minutes = int.from_bytes(operand[6:8], "little")
            if operand[1] == BOLUS_FAST:
                if extended != 0 or minutes != 0:
                    raise PduError("a fast bolus has no extended part")
                command = Bolus(fast, source, command_id)
            elif operand[1] == BOLUS_EXTENDED:
                if fast != 0:
                    raise PduError("an extended bolus has no fast part")
                command = ExtendedBolus(extended, minutes, source, command_id)
            else:
                raise PduError(f"unsupported bolus type 0x{operand[1]:02X}")
        case IdsOpcode.CANCEL_BOLUS:
            _expect(operand, 2, opcode)
            bolus_id = int.from_bytes(operand, "little")
            command = CancelBolus(bolus_id or None, source, command_id)
        case IdsOpcode.SET_TBR_ADJUSTMENT:
            _expect(operand, 6, opcode)
            if operand[0] != 0:
                raise PduError(f"unsupported TBR flags 0x{operand[0]:02X}")
            value = _read_sfloat(operand[2:4], "temp basal")
            minutes = int.from_bytes(operand[4:6], "little")
            if operand[1] == TBR_ABSOLUTE:
                command = SetTempBasal(minutes, value, None, source, command_id)
            elif operand[1] == TBR_RELATIVE:
                if value != value.to_integral_value():
                    raise PduError("a relative temp basal is a whole percent")
                command = SetTempBasal(minutes, None, int(value), source, command_id)
            else:
                raise PduError(f"unsupported TBR type 0x{operand[1]:02X}")
        case IdsOpcode.CANCEL_TBR_ADJUSTMENT:
            _expect(operand, 0, opcode)
            command = CancelTempBasal(source, command_id)
        case IdsOpcode.SET_THERAPY_CONTROL_STATE:
            _expect(operand, 1, opcode)
            if operand[0] == IdsTherapyControlState.PAUSE:
                command = Suspend(source, command_id)
            elif operand[0] == IdsTherapyControlState.RUN:
                command = Resume(source, command_id)
            elif operand[0] == IdsTherapyControlState.LIMITED:
                command = StartLimitedMode(source, command_id)
            else:
                raise PduError(
                    f"therapy control state 0x{operand[0]:02X} is not accepted over the radio",
                    IdsResponseCode.PROCEDURE_NOT_APPLICABLE,
                )
        case _:
            raise PduError(
                f"{opcode.name} is not accepted over the radio",
                IdsResponseCode.OPCODE_NOT_SUPPORTED,
            )
    return CpRequest(opcode, command)


def encode_response(response: CpResponse) -> bytes:
    if response.accepted and response.bolus_id is not None:
        return _op(IdsOpcode.SET_BOLUS_RESPONSE) + _u16(response.bolus_id, "bolus id")
    return _op(IdsOpcode.RESPONSE) + _op(response.request_opcode) + bytes([int(response.code)])


def decode_response(data: bytes) -> CpResponse:
    opcode = _opcode(data)
    if opcode is IdsOpcode.SET_BOLUS_RESPONSE:
        _expect(data[2:], 2, opcode)
        return CpResponse(
            IdsOpcode.SET_BOLUS, IdsResponseCode.SUCCESS, int.from_bytes(data[2:], "little")
        )
    if opcode is not IdsOpcode.RESPONSE:
        raise PduError(f"{opcode.name} is not a response")
    _expect(data[2:], 3, opcode)
    request = _opcode(data[2:4])
    try:
        code = IdsResponseCode(data[4])
    except ValueError:
        raise PduError(f"unknown IDS response code 0x{data[4]:02X}") from None
    return CpResponse(request, code)


def _therapy_state(state: PumpState) -> IdsTherapyControlState:
    if state is PumpState.RUNNING:
        return IdsTherapyControlState.RUN
    return (
        IdsTherapyControlState.PAUSE
        if state is PumpState.SUSPENDED
        else IdsTherapyControlState.STOP
    )


def _coarse(value: Decimal) -> Decimal:
    """The value with as many decimals as an SFLOAT mantissa holds (rounded down)."""
    for places in (Decimal("0.01"), Decimal("0.1"), Decimal(1), Decimal(10)):
        rounded = value.quantize(places, rounding="ROUND_FLOOR")
        if abs(rounded / places) <= 2047:
            return rounded
    raise PduError(f"{value} is too large for an SFLOAT", IdsResponseCode.PARAMETER_OUT_OF_RANGE)


def encode_status(state: PumpState, reservoir_u: Decimal | Fraction, alarm: bool) -> bytes:
    if isinstance(reservoir_u, Fraction):
        reservoir_u = Decimal(reservoir_u.numerator) / Decimal(reservoir_u.denominator)
    flags = _STATUS_RESERVOIR_ATTACHED | (_STATUS_ALARM if alarm else 0)
    return (
        bytes([_therapy_state(state)]) + _sfloat(_coarse(reservoir_u), "reservoir") + bytes([flags])
    )


def decode_status(data: bytes) -> PumpStatusPdu:
    if len(data) != 4:
        raise PduError(f"an IDS status is 4 bytes, got {len(data)}")
    try:
        therapy = IdsTherapyControlState(data[0])
    except ValueError:
        raise PduError(f"unknown therapy control state 0x{data[0]:02X}") from None
    if data[3] & ~(_STATUS_RESERVOIR_ATTACHED | _STATUS_ALARM):
        raise PduError(f"unknown status flags 0x{data[3]:02X}")
    return PumpStatusPdu(
        therapy, _read_sfloat(data[1:3], "reservoir"), bool(data[3] & _STATUS_ALARM)
    )


_CGM_SIZE = 6


def encode_cgm(measurement: CgmMeasurement, *, with_crc: bool) -> bytes:
    size = _CGM_SIZE + (2 if with_crc else 0)
    body = bytes([size, 0]) + _sfloat(Decimal(measurement.glucose_mgdl), "glucose")
    body += _u16(measurement.time_offset_min, "time offset")
    return append_crc(body) if with_crc else body


def decode_cgm(data: bytes, *, with_crc: bool) -> CgmMeasurement:
    """A CGMS measurement; with ``with_crc`` its E2E-CRC must be present and right."""
    size = _CGM_SIZE + (2 if with_crc else 0)
    if len(data) != size or data[0] != size:
        raise PduError(f"a CGM measurement here is {size} bytes with a matching size field")
    if with_crc:
        data, ok = split_crc(data)
        if not ok:
            raise E2eCrcError("CGM measurement E2E-CRC mismatch")
    if data[1] != 0:
        raise PduError(f"unsupported CGM measurement flags 0x{data[1]:02X}")
    glucose = _read_sfloat(data[2:4], "glucose")
    if glucose != glucose.to_integral_value() or not 0 < glucose <= 1000:
        raise PduError(f"glucose {glucose} mg/dL is not a plausible whole reading")
    return CgmMeasurement(int(glucose), int.from_bytes(data[4:6], "little"))


def e2e_wrap(pdu: bytes, counter: int) -> bytes:
    """``pdu`` with its E2E-Counter and E2E-CRC appended."""
    if not 1 <= counter <= 255:
        raise ValueError("the E2E counter runs 1..255")
    return append_crc(pdu + bytes([counter]))


def e2e_unwrap(data: bytes) -> tuple[bytes, int]:
    """The PDU and its E2E-Counter, or ``E2eCrcError`` / ``PduError``."""
    if len(data) < 3:
        raise PduError("an E2E-protected PDU ends with a counter and a 2-byte CRC")
    body, ok = split_crc(data)
    if not ok:
        raise E2eCrcError("E2E-CRC mismatch")
    counter = body[-1]
    if counter == 0:
        raise PduError("E2E counter 0 is not valid (it runs 1..255)")
    return body[:-1], counter
