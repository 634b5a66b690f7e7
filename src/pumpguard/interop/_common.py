"""Pieces every message in this package shares: MSH, coded values, quantities."""

from __future__ import annotations

from pumpguard.interop._er7 import (
    COMPONENT_SEP,
    ENCODING,
    VERSION,
    Segment,
    escape,
    format_dtm,
    parse_dtm,
    parse_number,
    segment_text,
)
from pumpguard.interop.codes import Profile
from pumpguard.interop.models import CodedValue, MessageHeader, Quantity

PROFILE_NAMES = {
    Profile.PIV: "IHE_PCD_PIV_001",
    Profile.IPEC: "IHE_PCD_IPEC_001",
    Profile.DEC: "IHE_PCD_001",
    Profile.ACM: "IHE_PCD_ACM_001",
}


def profile_ei(profile: Profile) -> str:
    """MSH-21 as an EI: name, namespace, OID, ISO (as IHE PCD examples write it)."""
    return COMPONENT_SEP.join((PROFILE_NAMES[profile], "IHE PCD", profile.value, "ISO"))


def msh(
    header: MessageHeader, message_type: str, profile: Profile | None, *, processing: str = "P"
) -> str:
    fields = {
        2: ENCODING,
        3: escape(header.sending_application),
        4: escape(header.sending_facility),
        5: escape(header.receiving_application),
        6: escape(header.receiving_facility),
        7: format_dtm(header.sent_at),
        9: message_type,
        10: escape(header.control_id),
        11: processing,
        12: VERSION,
        15: header.accept_ack,
        16: header.application_ack,
    }
    if profile is not None:
        fields[21] = profile_ei(profile)
    text = segment_text("MSH", fields)
    return "MSH|" + text[len("MSH||") :]


def read_header(segment: Segment) -> MessageHeader:
    sent = parse_dtm(segment.raw(7), segment.at(7), segment.component(10), required=True)
    assert sent is not None
    return MessageHeader(
        control_id=segment.component(10),
        sending_application=segment.component(3),
        sending_facility=segment.component(4),
        receiving_application=segment.component(5),
        receiving_facility=segment.component(6),
        sent_at=sent,
        accept_ack=segment.component(15),
        application_ack=segment.component(16),
    )


def cwe(value: CodedValue | None) -> str:
    if value is None:
        return ""
    parts = [escape(value.identifier), escape(value.text), escape(value.system)]
    return COMPONENT_SEP.join(parts).rstrip(COMPONENT_SEP)


def read_cwe(segment: Segment, field: int) -> CodedValue | None:
    parts = segment.components(field)
    if not any(p.strip() for p in parts):
        return None
    padded = (*parts, "", "", "")
    return CodedValue(padded[0].strip(), padded[1].strip(), padded[2].strip())


def read_quantity(
    segment: Segment, value_field: int, unit_field: int, control_id: str
) -> Quantity | None:
    number = parse_number(segment.component(value_field), segment.at(value_field), control_id)
    if number is None:
        return None
    return Quantity(number, read_cwe(segment, unit_field))
