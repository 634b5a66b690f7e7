"""Codes on the wire: HL7 tables, IHE PCD profile OIDs and PIV application errors, MDC terms.

Every number here is a published fact, named with its source, so that a reader can check it
against the standard rather than against this code.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = [
    "AckCode",
    "AppError",
    "ErrorSeverity",
    "Hl7ErrorCode",
    "InteropEvent",
    "Mdc",
    "OrderControl",
    "Profile",
]


class Profile(StrEnum):
    """IHE PCD message profile OIDs carried in MSH-21 (IHE PCD TF-2; REFERENCE section 4)."""

    PIV = "1.3.6.1.4.1.19376.1.6.1.3.1"
    IPEC = "1.3.6.1.4.1.19376.1.6.4.10"
    DEC = "1.3.6.1.4.1.19376.1.6.1.1.1"
    ACM = "1.3.6.1.4.1.19376.1.6.4.4"


class AckCode(StrEnum):
    """HL7 table 0008: enhanced-mode commit codes (C*) and application codes (A*)."""

    CA = "CA"
    CE = "CE"
    CR = "CR"
    AA = "AA"
    AE = "AE"
    AR = "AR"


class Hl7ErrorCode(IntEnum):
    """HL7 table 0357 (message error condition codes), carried in ERR-3."""

    ACCEPTED = 0
    SEGMENT_SEQUENCE = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION = 203
    UNKNOWN_KEY = 204
    DUPLICATE_KEY = 205
    RECORD_LOCKED = 206
    INTERNAL_ERROR = 207

    @property
    def text(self) -> str:
        return _HL7_TEXT[self]


_HL7_TEXT = {
    Hl7ErrorCode.ACCEPTED: "Message accepted",
    Hl7ErrorCode.SEGMENT_SEQUENCE: "Segment sequence error",
    Hl7ErrorCode.REQUIRED_FIELD_MISSING: "Required field missing",
    Hl7ErrorCode.DATA_TYPE: "Data type error",
    Hl7ErrorCode.TABLE_VALUE_NOT_FOUND: "Table value not found",
    Hl7ErrorCode.UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    Hl7ErrorCode.UNSUPPORTED_EVENT: "Unsupported event code",
    Hl7ErrorCode.UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    Hl7ErrorCode.UNSUPPORTED_VERSION: "Unsupported version id",
    Hl7ErrorCode.UNKNOWN_KEY: "Unknown key identifier",
    Hl7ErrorCode.DUPLICATE_KEY: "Duplicate key identifier",
    Hl7ErrorCode.RECORD_LOCKED: "Application record locked",
    Hl7ErrorCode.INTERNAL_ERROR: "Application internal error",
}


class ErrorSeverity(StrEnum):
    """HL7 table 0516, carried in ERR-4."""

    ERROR = "E"
    WARNING = "W"
    INFORMATION = "I"


class AppError(IntEnum):
    """IHE PCD PIV application error codes for ERR-5 (REFERENCE section 4; the texts of 9003,
    9004, 9006 and 9008 are from the IHE PCD "PIV Error Codes" table on the IHE wiki)."""

    UNKNOWN_INFUSER = 9001
    CURRENTLY_INFUSING = 9002
    MISSING_PARAMETER = 9003
    INVALID_PARAMETER = 9004
    OUT_OF_RANGE = 9005
    POWERED_OFF = 9006
    OFFLINE = 9007
    INVALID_UNITS = 9008
    UNITS_MISMATCH = 9009
    NO_LIBRARY_MATCH = 9010
    WEIGHT_MISMATCH = 9011
    PATIENT_MISMATCH = 9012
    EXCEEDS_MAXIMUM = 9014
    CANNOT_ACCEPT = 9017
    CARE_AREA_MISMATCH = 9021
    STALE_ORDER = 9022
    REJECTED_BY_USER = 9023
    HARD_LIMIT = 9024
    LOCKOUT_MISSING = 9025
    DOSE_LIMIT_MISSING = 9026

    @property
    def text(self) -> str:
        return _APP_TEXT[self]

    @property
    def rejects(self) -> bool:
        """AR rather than AE: the order may be right, the infuser cannot take it now (HL7 v2.6
        2.9.2: AR is for reasons unrelated to the content of the message)."""
        return self in _REJECTS


_APP_TEXT = {
    AppError.UNKNOWN_INFUSER: "Unknown infuser or channel",
    AppError.CURRENTLY_INFUSING: "Infuser/channel is currently infusing",
    AppError.MISSING_PARAMETER: "Missing required program parameter",
    AppError.INVALID_PARAMETER: "Invalid program parameter",
    AppError.OUT_OF_RANGE: "Parameter outside of allowable range",
    AppError.POWERED_OFF: "Infuser is powered off",
    AppError.OFFLINE: "Infuser is offline",
    AppError.INVALID_UNITS: "Invalid units for parameter",
    AppError.UNITS_MISMATCH: "Dose/rate units do not match drug library",
    AppError.NO_LIBRARY_MATCH: "Unable to match medication to drug library",
    AppError.WEIGHT_MISMATCH: "Patient weight mismatch",
    AppError.PATIENT_MISMATCH: "Patient ID mismatch",
    AppError.EXCEEDS_MAXIMUM: "Exceeds infuser maximum",
    AppError.CANNOT_ACCEPT: "Infuser cannot accept program",
    AppError.CARE_AREA_MISMATCH: "Care area mismatch",
    AppError.STALE_ORDER: "Stale order",
    AppError.REJECTED_BY_USER: "Program rejected by user",
    AppError.HARD_LIMIT: "Hard limit exceeded",
    AppError.LOCKOUT_MISSING: "PCA lockout interval missing",
    AppError.DOSE_LIMIT_MISSING: "PCA dose limit missing",
}

_REJECTS = frozenset(
    {
        AppError.CURRENTLY_INFUSING,
        AppError.POWERED_OFF,
        AppError.OFFLINE,
        AppError.CANNOT_ACCEPT,
        AppError.REJECTED_BY_USER,
    }
)


class OrderControl(StrEnum):
    """ORC-1 values a PIV order may carry (IHE PCD TF-2, PCD-03)."""

    NEW = "RE"
    CHANGE = "XO"


class InteropEvent(StrEnum):
    """Security event codes of the interop layer; stable once published."""

    MALFORMED = "interop.hl7.malformed"
    OVERSIZED_FRAME = "interop.mllp.oversized_frame"
    READ_TIMEOUT = "interop.mllp.read_timeout"
    TOO_MANY_CONNECTIONS = "interop.mllp.too_many_connections"
    HANDLER_FAILED = "interop.mllp.handler_failed"
    GARBAGE = "interop.mllp.garbage"
    UNAUTHENTICATED = "interop.peer.unauthenticated"
    WRONG_PEER_KIND = "interop.peer.wrong_kind"
    CLEARTEXT = "interop.mllp.cleartext"
    REPLAYED = "interop.order.replayed"
    STALE = "interop.order.stale"
    PATIENT_MISMATCH = "interop.order.patient_mismatch"
    HARD_LIMIT = "interop.order.hard_limit"


class Mdc(IntEnum):
    """IEEE 11073-10101 codes used here (partition x 65536 + term; REFERENCE section 4)."""

    MDS = 69985
    VMD = 69986
    MDS_LVP = 70049
    VMD_LVP = 70050
    CHAN_SOURCE = 126977
    CHAN_DELIVERY = 126978
    ALARM = 196616
    ATTR_ALERT_SOURCE = 68480
    ATTR_EVENT_PHASE = 68481
    ATTR_ALARM_STATE = 68482
    PT_WEIGHT = 68063
    PT_HEIGHT = 68060
    PT_BSA = 188744
    PCA_DOSE_LIMIT = 157985
    PCA_VOLUME_DOSE_LIMIT = 157986
    PCA_DOSE_LIMIT_PERIOD = 157987
    PCA_MAX_DOSES_PER_HOUR = 157988
    PCA_LOCKOUT = 157989
    FLOW_FLUID_PUMP = 157784
    RATE_DOSE = 157924
    VOL_FLUID_TBI = 157884
    VOL_FLUID_TBI_REMAIN = 157872
    VOL_FLUID_DELIV_TOTAL = 157993
    TIME_PD_REMAIN = 157916
    CONC_DRUG = 157760
    DRUG_NAME_TYPE = 184330
    DRUG_LABEL = 184514
    PUMP_STAT = 184508
    PUMP_MODE = 184504
    LIBRARY_CARE_AREA = 184516
    LIBRARY_VERSION = 184517
    EVT_DELIV_START = 197288
    EVT_DELIV_STOP = 197290
    EVT_DELIV_COMP = 197292
    EVT_PROG_CLEARED = 197296
    DIM_ML_PER_H = 265266
    DIM_ML = 263762
    DIM_UG_PER_KG_PER_MIN = 265619
    DIM_MG = 263890
    DIM_KG = 263875
    DIM_MIN = 264352
    DIM_S = 264320
    DIM_H = 264384
