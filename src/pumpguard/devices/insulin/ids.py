"""Bluetooth Insulin Delivery Service (IDS) numbers the firmware already speaks in.

The radio protocol is a later issue; this module fixes, now, how the firmware's answers map to
the IDS Command Control Point, so that the link layer only encodes. Values from the Bluetooth
SIG IDS specification (Insulin Delivery Service 0x183A, Command Control Point 0x2B25), as
summarised in the project's domain reference, section 5. IDS enumerations are Hamming-spaced
(therapy states 0x33/0x3C/0x55), so that a flipped bit never reads as another valid value.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["IdsOpcode", "IdsResponseCode", "IdsTherapyControlState"]


class IdsResponseCode(IntEnum):
    """IDS Command Control Point response codes."""

    SUCCESS = 0x0F
    OPCODE_NOT_SUPPORTED = 0x70
    INVALID_OPERAND = 0x71
    PROCEDURE_NOT_COMPLETED = 0x72
    PARAMETER_OUT_OF_RANGE = 0x73
    PROCEDURE_NOT_APPLICABLE = 0x74
    PLAUSIBILITY_CHECK_FAILED = 0x75
    MAX_BOLUS_NUMBER_REACHED = 0x76


class IdsOpcode(IntEnum):
    """IDS Command Control Point opcodes (16-bit, sent little-endian)."""

    RESPONSE = 0x0F55
    SET_THERAPY_CONTROL_STATE = 0x0F5A
    SET_TBR_ADJUSTMENT = 0x0FFF
    CANCEL_TBR_ADJUSTMENT = 0x1111
    SET_BOLUS = 0x114B
    SET_BOLUS_RESPONSE = 0x1177
    CANCEL_BOLUS = 0x1178
    PRIMING = 0x127B
    GET_MAX_BOLUS_AMOUNT = 0x147D
    SET_MAX_BOLUS_AMOUNT = 0x148D


class IdsTherapyControlState(IntEnum):
    """Operand of Set Therapy Control State: suspend is *pause*, resume is *run*."""

    STOP = 0x33
    PAUSE = 0x3C
    RUN = 0x55
    LIMITED = 0x5A
    """Not in IDS: pumpguard's value for "run limited mode" (``StartLimitedMode``)."""
