"""PIV acknowledgements: ``ACK^O15`` (commit, same connection) and ``RRG^O16`` (application,
new connection), built and validated against HL7 v2.6, and read back for the EHR side.

Which code an answer carries (IHE PCD TF-2 PCD-03; HL7 v2.6 2.9.2):

* ``ACK^O15`` MSA-1: CA when the order was received intact and kept; CE when it was understood
  but is malformed (structure, required field, data type); CR when it cannot be processed at all
  (message type, event, version, processing id, profile, undecodable header). A CE or CR order
  is not processed, so no ``RRG^O16`` follows it.
* ``RRG^O16`` MSA-1: AA when the pump pre-filled the programme; AE when the order's content is
  refused (limits, drug, units, patient, weight, care area, staleness); AR when the infuser
  cannot take an order now (offline, powered off, infusing, busy, rejected at the pump).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pumpguard.interop._common import msh, read_cwe
from pumpguard.interop._er7 import (
    Segment,
    check_header,
    escape,
    join_segments,
    parse_dtm,
    segment_text,
)
from pumpguard.interop._library import serialise, validate_structure
from pumpguard.interop.codes import AckCode, AppError, ErrorSeverity, Hl7ErrorCode, Profile
from pumpguard.interop.errors import ErrorLocation, Hl7Error
from pumpguard.interop.models import AckMessage, AppErrorDetail, MessageHeader

__all__ = [
    "ACCEPT_ACK_TYPE",
    "APP_ACK_TYPE",
    "Responder",
    "build_accept_ack",
    "build_app_ack",
    "error_detail",
    "parse_ack",
]

ACCEPT_ACK_TYPE = "ACK^O15^ACK"
APP_ACK_TYPE = "RRG^O16^RRG_O16"
_UNKNOWN_ID = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class Responder:
    """Who answers: our MSH-3/4, and the peer's, to address the answer back."""

    application: str = "PUMPGUARD"
    facility: str = "PUMPGUARD"
    peer_application: str = ""
    peer_facility: str = ""

    def to(self, header: MessageHeader | None) -> Responder:
        if header is None:
            return self
        return Responder(
            self.application, self.facility, header.sending_application, header.sending_facility
        )


def error_detail(error: Hl7Error) -> AppErrorDetail:
    return AppErrorDetail(
        code=error.code,
        severity=ErrorSeverity.ERROR,
        app_error=error.app_error,
        message=error.reason,
        location=error.location,
    )


def _err(detail: AppErrorDetail) -> str:
    fields = {
        3: f"{int(detail.code)}^{escape(detail.code.text)}^HL70357",
        4: detail.severity.value,
    }
    if detail.location is not None:
        fields[2] = detail.location.to_er7()
    if detail.app_error is not None:
        fields[5] = f"{int(detail.app_error)}^{escape(detail.app_error.text)}^HL70533"
    if detail.message:
        fields[8] = escape(detail.message[:1000])
    return segment_text("ERR", fields)


def _header(responder: Responder, control_id: str, now: datetime) -> MessageHeader:
    return MessageHeader(
        control_id=control_id,
        sending_application=responder.application,
        sending_facility=responder.facility,
        receiving_application=responder.peer_application,
        receiving_facility=responder.peer_facility,
        sent_at=now,
    )


def _msa(code: AckCode, acknowledged: str | None, text: str) -> str:
    fields = {1: code.value, 2: escape(acknowledged or _UNKNOWN_ID)}
    if text:
        fields[3] = escape(text[:199])
    return segment_text("MSA", fields)


def _finish(text: str, structure: str, acknowledged: str | None) -> str:
    """Serialise; an unrecoverable control id goes out as an empty MSA-2 (v2.6 makes MSA-2
    required, so validation runs on a placeholder that is removed afterwards)."""
    out = serialise(text, structure)
    if acknowledged is None:
        lines = out.split("\r")
        lines = [
            line.replace(f"|{_UNKNOWN_ID}", "|", 1) if line.startswith("MSA|") else line
            for line in lines
        ]
        out = "\r".join(lines)
    return out


def build_accept_ack(
    code: AckCode,
    acknowledged_id: str | None,
    *,
    control_id: str,
    now: datetime,
    responder: Responder | None = None,
    errors: Sequence[AppErrorDetail] = (),
    text: str = "",
    event: str = "O15",
    profile: Profile | None = Profile.PIV,
) -> str:
    """An ``ACK^O15`` with MSA-1 CA, CE or CR echoing MSH-10 of the order in MSA-2.

    ``event`` and ``profile`` make the same commit acknowledgement for another message: the
    EHR answers an ``RRG^O16`` with ``ACK^O16^ACK`` and an IPEC report with ``ACK^R42^ACK``."""
    if code not in (AckCode.CA, AckCode.CE, AckCode.CR):
        raise ValueError(f"an accept acknowledgement carries CA, CE or CR, not {code}")
    if code is not AckCode.CA and not errors:
        raise ValueError("a CE or CR acknowledgement must say what is wrong (an ERR segment)")
    head = _header(responder or Responder(), control_id, now)
    message_type = ACCEPT_ACK_TYPE if event == "O15" else f"ACK^{event}^ACK"
    segments = [msh(head, message_type, profile), _msa(code, acknowledged_id, text)]
    segments += [_err(e) for e in errors]
    return _finish(join_segments(segments), "ACK", acknowledged_id)


def build_app_ack(
    code: AckCode,
    acknowledged_id: str,
    *,
    control_id: str,
    now: datetime,
    responder: Responder | None = None,
    errors: Sequence[AppErrorDetail] = (),
    placer_order_number: str | None = None,
    patient_id: str | None = None,
    text: str = "",
) -> str:
    """An ``RRG^O16`` with MSA-1 AA, AE or AR; AE and AR carry ERR segments with ERR-5."""
    if code not in (AckCode.AA, AckCode.AE, AckCode.AR):
        raise ValueError(f"an application acknowledgement carries AA, AE or AR, not {code}")
    if code is not AckCode.AA and not errors:
        raise ValueError("an AE or AR acknowledgement must say what is wrong (an ERR segment)")
    head = _header(responder or Responder(), control_id, now)
    segments = [msh(head, APP_ACK_TYPE, Profile.PIV), _msa(code, acknowledged_id, text)]
    segments += [_err(e) for e in errors]
    if placer_order_number:
        if patient_id:
            segments.append(segment_text("PID", {3: escape(patient_id), 5: "^^^^^^U"}))
        control = "OK" if code is AckCode.AA else "UA"
        segments.append(segment_text("ORC", {1: control, 2: escape(placer_order_number)}))
    return _finish(join_segments(segments), "RRG_O16", acknowledged_id)


def _read_err(segment: Segment) -> AppErrorDetail:
    try:
        code = Hl7ErrorCode(int(segment.component(3, 1) or "0"))
    except ValueError:
        raise Hl7Error(
            f"ERR-3 {segment.component(3, 1)!r} is not an HL7 table 0357 code",
            Hl7ErrorCode.TABLE_VALUE_NOT_FOUND,
            location=segment.at(3),
        ) from None
    try:
        severity = ErrorSeverity(segment.component(4) or "E")
    except ValueError:
        raise Hl7Error(
            f"ERR-4 {segment.component(4)!r} is not E, W or I",
            Hl7ErrorCode.TABLE_VALUE_NOT_FOUND,
            location=segment.at(4),
        ) from None
    app = read_cwe(segment, 5)
    app_error = None
    if app is not None and app.identifier:
        try:
            app_error = AppError(int(app.identifier))
        except ValueError:
            raise Hl7Error(
                f"ERR-5 {app.identifier!r} is not a PIV application error code",
                Hl7ErrorCode.TABLE_VALUE_NOT_FOUND,
                location=segment.at(5),
            ) from None
    location = None
    parts = segment.components(2)
    if parts and parts[0]:
        ints = [int(p) if p.isdigit() else None for p in (*parts[1:], "", "", "", "")[:4]]
        location = ErrorLocation(parts[0], ints[0] or 1, ints[1], ints[2], ints[3])
    return AppErrorDetail(code, severity, app_error, segment.component(8), location)


def parse_ack(text: str) -> AckMessage:
    """Read an ``ACK^O15`` or ``RRG^O16`` (or the commit ``ACK^<event>`` an EHR answers an
    ``RRG^O16`` or a report with); raise ``Hl7Error`` if it is none of them."""
    fields = text.lstrip("\r\n").split("|", 10) if isinstance(text, str) else []
    is_rrg = len(fields) > 8 and fields[8].startswith("RRG")
    trigger = fields[8].split("^") if len(fields) > 8 else []
    event = trigger[1] if len(trigger) > 2 and trigger[0] == "ACK" and trigger[1] else "O15"
    kind = ("RRG", "O16") if is_rrg else ("ACK", event)
    structure = "RRG_O16" if kind[0] == "RRG" else "ACK"
    segments, control_id = check_header(text, kind, (structure,), None)
    validate_structure(structure, segments, control_id, optional_fields=("MSA_2",))
    parse_dtm(segments[0].raw(7), segments[0].at(7), control_id, required=True)
    msa = next((s for s in segments if s.name == "MSA"), None)
    if msa is None:
        raise Hl7Error(
            "an acknowledgement needs an MSA segment",
            Hl7ErrorCode.SEGMENT_SEQUENCE,
            location=ErrorLocation("MSA"),
            control_id=control_id,
        )
    try:
        code = AckCode(msa.component(1))
    except ValueError:
        raise Hl7Error(
            f"MSA-1 {msa.component(1)!r} is not an acknowledgement code",
            Hl7ErrorCode.TABLE_VALUE_NOT_FOUND,
            location=msa.at(1),
            control_id=control_id,
        ) from None
    commit = code in (AckCode.CA, AckCode.CE, AckCode.CR)
    if commit != (structure == "ACK"):
        raise Hl7Error(
            f"MSA-1 {code} does not belong in {structure}",
            Hl7ErrorCode.TABLE_VALUE_NOT_FOUND,
            location=msa.at(1),
            control_id=control_id,
        )
    orc = next((s for s in segments if s.name == "ORC"), None)
    return AckMessage(
        message_type=f"{kind[0]}^{kind[1]}^{structure}",
        control_id=control_id,
        code=code,
        acknowledged_id=msa.component(2),
        text=msa.component(3),
        errors=tuple(_read_err(s) for s in segments if s.name == "ERR"),
        placer_order_number=(orc.component(2) or None) if orc is not None else None,
    )
