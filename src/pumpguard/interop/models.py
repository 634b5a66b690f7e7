"""Typed views of IHE PCD messages: what the rest of pumpguard reads and writes.

No hl7apy object ever leaves this package; these dataclasses are the contract with the pump
server, the simulated EHR and the FHIR mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pumpguard.interop.codes import AckCode, AppError, ErrorSeverity, Hl7ErrorCode, OrderControl
from pumpguard.interop.errors import ErrorLocation

__all__ = [
    "IV_ROUTE",
    "AckMessage",
    "AckMode",
    "Alert",
    "AlertPhase",
    "AppErrorDetail",
    "CodedValue",
    "InfusionOrder",
    "MessageHeader",
    "Observation",
    "PcaParameters",
    "PumpEvent",
    "PumpEventKind",
    "Quantity",
]


@dataclass(frozen=True, slots=True)
class CodedValue:
    """An HL7 CWE/CE: identifier, text and coding system (e.g. ``263762^MDC_DIM_MILLI_L^MDC``)."""

    identifier: str
    text: str = ""
    system: str = ""

    def matches(self, code: int | str) -> bool:
        return self.identifier == str(code)

    def __str__(self) -> str:
        return self.text or self.identifier


IV_ROUTE = CodedValue("", "IV", "HL70162")
"""RXR-1 as IHE PCD PIV writes an intravenous route (REFERENCE section 4)."""


@dataclass(frozen=True, slots=True)
class Quantity:
    """A number with its coded unit as it came over the wire; interpretation is the checker's."""

    value: Decimal
    unit: CodedValue | None = None


@dataclass(frozen=True, slots=True)
class MessageHeader:
    """The MSH fields an answer needs: who sent it, its control id and how it wants acks."""

    control_id: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    sent_at: datetime
    accept_ack: str = ""
    application_ack: str = ""


class AckMode(StrEnum):
    """HL7 table 0155 (MSH-15/16): when the sender wants an acknowledgement."""

    ALWAYS = "AL"
    NEVER = "NE"
    ERROR = "ER"
    SUCCESS = "SU"

    @classmethod
    def of(cls, text: str) -> AckMode:
        """An empty or unknown value means always, which IHE PCD recommends for PIV."""
        try:
            return cls(text)
        except ValueError:
            return cls.ALWAYS

    def wants(self, success: bool) -> bool:
        if self is AckMode.ALWAYS:
            return True
        if self is AckMode.NEVER:
            return False
        return success if self is AckMode.SUCCESS else not success


@dataclass(frozen=True, slots=True)
class PcaParameters:
    """The PCA OBX of an order (IEEE 11073 codes 157985..157989)."""

    dose_limit: Quantity | None = None
    volume_dose_limit: Quantity | None = None
    dose_limit_period: Quantity | None = None
    max_doses_per_hour: Decimal | None = None
    lockout: Quantity | None = None


@dataclass(frozen=True, slots=True)
class InfusionOrder:
    """One PIV order (RGV^O15) as received; nothing in it has been checked against a pump."""

    header: MessageHeader
    control: OrderControl
    placer_order_number: str
    placer_namespace: str
    patient_id: str
    pump_id: str
    drug: CodedValue
    order_time: datetime
    volume: Quantity | None = None
    rate: Quantity | None = None
    strength: Quantity | None = None
    strength_volume: Quantity | None = None
    route: CodedValue = IV_ROUTE
    device: CodedValue | None = None
    weight: Quantity | None = None
    height: Quantity | None = None
    bsa: Quantity | None = None
    care_area: str | None = None
    location: str | None = None
    pca: PcaParameters | None = None
    patient_family: str = ""
    patient_given: str = ""

    @property
    def control_id(self) -> str:
        return self.header.control_id

    @property
    def is_pca(self) -> bool:
        return self.pca is not None or (
            self.device is not None and self.device.identifier.upper() == "PCA"
        )


@dataclass(frozen=True, slots=True)
class AppErrorDetail:
    """One ERR segment of an acknowledgement."""

    code: Hl7ErrorCode
    severity: ErrorSeverity
    app_error: AppError | None = None
    message: str = ""
    location: ErrorLocation | None = None


@dataclass(frozen=True, slots=True)
class AckMessage:
    """An ACK^O15 or RRG^O16 as read back (the EHR side, and tests)."""

    message_type: str
    control_id: str
    code: AckCode
    acknowledged_id: str
    text: str = ""
    errors: tuple[AppErrorDetail, ...] = ()
    placer_order_number: str | None = None

    @property
    def app_errors(self) -> tuple[AppError, ...]:
        return tuple(e.app_error for e in self.errors if e.app_error is not None)


class PumpEventKind(StrEnum):
    """IPEC events (IEEE 11073 partition 3 codes; REFERENCE section 4 and devices.infusion)."""

    DELIVERY_START = "delivery-start"
    DELIVERY_STOP = "delivery-stop"
    DELIVERY_COMPLETE = "delivery-complete"
    PROGRAM_CLEARED = "program-cleared"

    @property
    def mdc_code(self) -> int:
        return _EVENT_CODES[self][0]

    @property
    def mdc_ref(self) -> str:
        return _EVENT_CODES[self][1]

    @classmethod
    def from_code(cls, code: str) -> PumpEventKind | None:
        return next((k for k, (c, _) in _EVENT_CODES.items() if str(c) == code), None)


_EVENT_CODES = {
    PumpEventKind.DELIVERY_START: (197288, "MDC_EVT_PUMP_DELIV_START"),
    PumpEventKind.DELIVERY_STOP: (197290, "MDC_EVT_PUMP_DELIV_STOP"),
    PumpEventKind.DELIVERY_COMPLETE: (197292, "MDC_EVT_PUMP_DELIV_COMP"),
    PumpEventKind.PROGRAM_CLEARED: (197296, "MDC_EVT_PUMP_PROG_CLEARED"),
}


@dataclass(frozen=True, slots=True)
class Observation:
    """One DEC observation: an IEEE 11073 metric at a containment path of one device."""

    code: int
    ref: str
    value: Decimal | str
    unit: CodedValue | None
    path: str
    observed_at: datetime

    @property
    def numeric(self) -> bool:
        return isinstance(self.value, Decimal)


@dataclass(frozen=True, slots=True)
class PumpEvent:
    """One IPEC event (ORU^R42), with what the pump was doing when it happened."""

    kind: PumpEventKind
    pump_id: str
    patient_id: str
    occurred_at: datetime
    placer_order_number: str | None = None
    drug: CodedValue | None = None
    rate_ml_h: Decimal | None = None
    volume_delivered_ml: Decimal | None = None
    vtbi_remaining_ml: Decimal | None = None
    control_id: str = ""


class AlertPhase(StrEnum):
    """ACM event phase (IHE PCD TF-2, ACM: OBX with 68481)."""

    START = "start"
    CONTINUE = "continue"
    END = "end"
    PRESENT = "present"
    UPDATE = "update"
    ESCALATE = "escalate"
    DE_ESCALATE = "de-escalate"


@dataclass(frozen=True, slots=True)
class Alert:
    """One ACM alert (ORU^R40): an alarm of one pump, its phase and state."""

    alert_id: str
    pump_id: str
    patient_id: str
    code: int
    ref: str
    text: str
    phase: AlertPhase
    occurred_at: datetime
    priority: str = ""
    state: str = "active"
    source_path: str = "1.1.1"
    control_id: str = ""
