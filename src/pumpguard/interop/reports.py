"""Pump reports to the EHR: IPEC events (``ORU^R42``), DEC observations (``ORU^R01``) and ACM
alerts (``ORU^R40``), built and validated against HL7 v2.6, and read back.

All three use the ``ORU_R01`` segment structure. IPEC's MSH-9 is ``ORU^R42^ORU_R01`` as IHE
PCD TF-2 (PCD-10) writes it; ACM's is ``ORU^R40^ORU_R40`` as PCD-04 writes it, and since
HL7 v2.6 defines no ``ORU_R40`` structure (hl7apy has none either) it is validated against
``ORU_R01``, which is the segment grammar PCD-04 profiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from pumpguard.interop._common import cwe, msh, read_cwe, read_header
from pumpguard.interop._er7 import (
    Segment,
    check_header,
    escape,
    format_dtm,
    format_number,
    join_segments,
    parse_dtm,
    parse_number,
    segment_text,
)
from pumpguard.interop._library import serialise, validate_structure
from pumpguard.interop.codes import Hl7ErrorCode, Mdc, Profile
from pumpguard.interop.errors import ErrorLocation, Hl7Error
from pumpguard.interop.models import (
    Alert,
    AlertPhase,
    CodedValue,
    MessageHeader,
    Observation,
    PumpEvent,
    PumpEventKind,
)

__all__ = [
    "ACM_MESSAGE_TYPE",
    "DEC_MESSAGE_TYPE",
    "IPEC_MESSAGE_TYPE",
    "ObservationReport",
    "build_alert",
    "build_event",
    "build_observations",
    "parse_alert",
    "parse_event",
    "parse_observations",
]

IPEC_MESSAGE_TYPE = "ORU^R42^ORU_R01"
DEC_MESSAGE_TYPE = "ORU^R01^ORU_R01"
ACM_MESSAGE_TYPE = "ORU^R40^ORU_R40"

_MDS = CodedValue(str(int(Mdc.MDS)), "MDC_DEV_PUMP_INFUS_MDS", "MDC")
_VMD = CodedValue(str(int(Mdc.VMD)), "MDC_DEV_PUMP_INFUS_VMD", "MDC")
_ALARM = CodedValue(str(int(Mdc.ALARM)), "MDC_EVT_ALARM", "MDC")
_ML = CodedValue(str(int(Mdc.DIM_ML)), "MDC_DIM_MILLI_L", "MDC")
_ML_H = CodedValue(str(int(Mdc.DIM_ML_PER_H)), "MDC_DIM_MILLI_L_PER_HR", "MDC")
_PRIORITY_FLAGS = {"high": "PH", "medium": "PM", "low": "PL"}


@dataclass(frozen=True, slots=True)
class ObservationReport:
    """One DEC message: a pump's observations at one instant."""

    pump_id: str
    patient_id: str
    observations: tuple[Observation, ...]
    control_id: str = ""


def _patient(patient_id: str) -> str:
    return segment_text("PID", {3: escape(patient_id), 5: "^^^^^^U"})


def _obr(filler: str, service: CodedValue, when: datetime, placer: str = "") -> str:
    return segment_text(
        "OBR",
        {1: "1", 2: placer, 3: escape(filler), 4: cwe(service), 7: format_dtm(when)},
    )


def _obx(set_id: int, fields: dict[int, str]) -> str:
    return segment_text("OBX", {1: str(set_id), 11: "F", **fields})


def _numeric(
    set_id: int, code: int, ref: str, value: Decimal, unit: CodedValue, path: str, when: datetime
) -> str:
    return _obx(
        set_id,
        {
            2: "NM",
            3: cwe(CodedValue(str(code), ref, "MDC")),
            4: path,
            5: format_number(value),
            6: cwe(unit),
            14: format_dtm(when),
        },
    )


def _header(header: MessageHeader | None, control_id: str, when: datetime) -> MessageHeader:
    if header is not None:
        return header
    if not control_id:
        raise ValueError("a report needs a message control id (MSH-10) or a header")
    return MessageHeader(control_id, "PUMPGUARD", "PUMPGUARD", "", "", when)


def build_event(event: PumpEvent, header: MessageHeader | None = None) -> str:
    """One IPEC event; OBR-2 links it to the PIV order (``<placer>^PCD-03``)."""
    head = _header(header, event.control_id, event.occurred_at)
    when = event.occurred_at
    placer = f"{escape(event.placer_order_number)}^PCD-03" if event.placer_order_number else ""
    segments = [
        msh(head, IPEC_MESSAGE_TYPE, Profile.IPEC),
        _patient(event.patient_id),
        _obr(head.control_id, _MDS, when, placer),
        _obx(
            1,
            {
                2: "CWE",
                3: cwe(CodedValue(str(event.kind.mdc_code), event.kind.mdc_ref, "MDC")),
                4: "1.1.1",
                5: cwe(CodedValue(str(event.kind.mdc_code), event.kind.mdc_ref, "MDC")),
                14: format_dtm(when),
                18: escape(event.pump_id),
            },
        ),
    ]
    set_id = 1
    if event.drug is not None:
        set_id += 1
        segments.append(
            _obx(
                set_id,
                {
                    2: "CWE",
                    3: cwe(CodedValue(str(int(Mdc.DRUG_LABEL)), "", "MDC")),
                    4: "1.1.1",
                    5: cwe(event.drug),
                    14: format_dtm(when),
                },
            )
        )
    metrics = (
        (Mdc.FLOW_FLUID_PUMP, "MDC_FLOW_FLUID_PUMP", event.rate_ml_h, _ML_H),
        (Mdc.VOL_FLUID_DELIV_TOTAL, "", event.volume_delivered_ml, _ML),
        (Mdc.VOL_FLUID_TBI_REMAIN, "MDC_VOL_FLUID_TBI_REMAIN", event.vtbi_remaining_ml, _ML),
    )
    for code, ref, value, unit in metrics:
        if value is not None:
            set_id += 1
            segments.append(_numeric(set_id, int(code), ref, value, unit, "1.1.1", when))
    return serialise(join_segments(segments), "ORU_R01")


def build_observations(report: ObservationReport, header: MessageHeader | None = None) -> str:
    """One DEC message: the device hierarchy (MDS, VMD) then one OBX per metric, each with its
    MDS.VMD.CHANNEL.METRIC containment path in OBX-4 and the device id in OBX-18."""
    if not report.observations:
        raise ValueError("a DEC report needs at least one observation")
    when = max(o.observed_at for o in report.observations)
    head = _header(header, report.control_id, when)
    segments = [
        msh(head, DEC_MESSAGE_TYPE, Profile.DEC),
        _patient(report.patient_id),
        _obr(head.control_id, _MDS, when),
        _obx(1, {3: cwe(_MDS), 4: "1", 18: escape(report.pump_id)}),
        _obx(2, {3: cwe(_VMD), 4: "1.1", 18: escape(report.pump_id)}),
    ]
    for set_id, obs in enumerate(report.observations, start=3):
        fields = {
            3: cwe(CodedValue(str(obs.code), obs.ref, "MDC")),
            4: escape(obs.path),
            14: format_dtm(obs.observed_at),
            18: escape(report.pump_id),
        }
        if isinstance(obs.value, Decimal):
            fields |= {2: "NM", 5: format_number(obs.value), 6: cwe(obs.unit)}
        else:
            fields |= {2: "ST", 5: escape(obs.value)}
        segments.append(_obx(set_id, fields))
    return serialise(join_segments(segments), "ORU_R01")


def build_alert(alert: Alert, header: MessageHeader | None = None) -> str:
    """One ACM alert: OBX 196616 carries the alarm code (text as CWE original text), then
    source (68480), phase (68481) and state (68482)."""
    head = _header(header, alert.control_id, alert.occurred_at)
    when = format_dtm(alert.occurred_at)
    alarm = CodedValue(str(alert.code), alert.ref, "MDC")
    value = cwe(alarm) + ("^" * (9 - len(cwe(alarm).split("^"))) + escape(alert.text))
    flag = _PRIORITY_FLAGS.get(alert.priority.lower(), "")
    segments = [
        msh(head, ACM_MESSAGE_TYPE, Profile.ACM),
        _patient(alert.patient_id),
        _obr(alert.alert_id, _ALARM, alert.occurred_at),
        _obx(
            1,
            {
                2: "CWE",
                3: cwe(_ALARM),
                4: escape(alert.source_path),
                5: value,
                8: flag,
                14: when,
                18: escape(alert.pump_id),
            },
        ),
    ]
    for set_id, (code, text) in enumerate(
        (
            (Mdc.ATTR_ALERT_SOURCE, alert.source_path),
            (Mdc.ATTR_EVENT_PHASE, alert.phase.value),
            (Mdc.ATTR_ALARM_STATE, alert.state),
        ),
        start=2,
    ):
        segments.append(
            _obx(
                set_id,
                {
                    2: "ST",
                    3: cwe(CodedValue(str(int(code)), "", "MDC")),
                    4: escape(alert.source_path),
                    5: escape(text),
                    14: when,
                },
            )
        )
    return serialise(join_segments(segments), "ORU_R01")


def _read(
    text: str, event: str, structure: str, profile: Profile
) -> tuple[list[Segment], str, MessageHeader]:
    structures = (structure, "ORU_R01") if structure == "ORU_R40" else (structure,)
    segments, control_id = check_header(text, ("ORU", event), structures, profile.value)
    validate_structure(structure, segments, control_id)
    return segments, control_id, read_header(segments[0])


def _first(segments: list[Segment], name: str, control_id: str) -> Segment:
    found = next((s for s in segments if s.name == name), None)
    if found is None:
        raise Hl7Error(
            f"a {name} segment is required",
            Hl7ErrorCode.SEGMENT_SEQUENCE,
            location=ErrorLocation(name),
            control_id=control_id,
        )
    return found


def _when(segment: Segment, field: int, control_id: str, fallback: datetime) -> datetime:
    return parse_dtm(segment.raw(field), segment.at(field), control_id) or fallback


def parse_event(text: str) -> PumpEvent:
    segments, control_id, header = _read(text, "R42", "ORU_R01", Profile.IPEC)
    pid = _first(segments, "PID", control_id)
    obr = _first(segments, "OBR", control_id)
    obxs = [s for s in segments if s.name == "OBX"]
    kind = next(
        (k for s in obxs if (k := PumpEventKind.from_code(s.component(3))) is not None), None
    )
    event_obx = next((s for s in obxs if PumpEventKind.from_code(s.component(3))), None)
    if kind is None or event_obx is None:
        raise Hl7Error(
            "no OBX carries a known IPEC event code",
            Hl7ErrorCode.TABLE_VALUE_NOT_FOUND,
            location=ErrorLocation("OBX", 1, 3),
            control_id=control_id,
        )

    def metric(code: Mdc) -> Decimal | None:
        obx = next((s for s in obxs if s.component(3) == str(int(code))), None)
        return None if obx is None else parse_number(obx.component(5), obx.at(5), control_id)

    drug_obx = next((s for s in obxs if s.component(3) == str(int(Mdc.DRUG_LABEL))), None)
    placer = obr.component(2) if obr.component(2, 2) == "PCD-03" else ""
    return PumpEvent(
        kind=kind,
        pump_id=event_obx.component(18),
        patient_id=pid.component(3),
        occurred_at=_when(event_obx, 14, control_id, header.sent_at),
        placer_order_number=placer or None,
        drug=None if drug_obx is None else read_cwe(drug_obx, 5),
        rate_ml_h=metric(Mdc.FLOW_FLUID_PUMP),
        volume_delivered_ml=metric(Mdc.VOL_FLUID_DELIV_TOTAL),
        vtbi_remaining_ml=metric(Mdc.VOL_FLUID_TBI_REMAIN),
        control_id=control_id,
    )


def parse_observations(text: str) -> ObservationReport:
    segments, control_id, header = _read(text, "R01", "ORU_R01", Profile.DEC)
    pid = _first(segments, "PID", control_id)
    obxs = [s for s in segments if s.name == "OBX"]
    device = {str(int(Mdc.MDS)), str(int(Mdc.VMD))}
    pump_id = next((s.component(18) for s in obxs if s.component(18)), "")
    observations = []
    for obx in obxs:
        if obx.component(3) in device:
            continue
        coded = read_cwe(obx, 3)
        try:
            code = int(coded.identifier) if coded is not None else -1
        except ValueError:
            code = -1
        if coded is None or code < 0:
            raise Hl7Error(
                "OBX-3 must be a numeric IEEE 11073 code",
                Hl7ErrorCode.DATA_TYPE,
                location=obx.at(3),
                control_id=control_id,
            )
        value: Decimal | str
        if obx.component(2) == "NM":
            number = parse_number(obx.component(5), obx.at(5), control_id)
            if number is None:
                raise Hl7Error(
                    "a numeric observation has no value",
                    Hl7ErrorCode.REQUIRED_FIELD_MISSING,
                    location=obx.at(5),
                    control_id=control_id,
                )
            value = number
        else:
            value = obx.component(5)
        observations.append(
            Observation(
                code=code,
                ref=coded.text,
                value=value,
                unit=read_cwe(obx, 6),
                path=obx.component(4),
                observed_at=_when(obx, 14, control_id, header.sent_at),
            )
        )
    return ObservationReport(pump_id, pid.component(3), tuple(observations), control_id)


def parse_alert(text: str) -> Alert:
    segments, control_id, header = _read(text, "R40", "ORU_R40", Profile.ACM)
    pid = _first(segments, "PID", control_id)
    obr = _first(segments, "OBR", control_id)
    obxs = [s for s in segments if s.name == "OBX"]
    alarm = next((s for s in obxs if s.component(3) == str(int(Mdc.ALARM))), None)
    if alarm is None:
        raise Hl7Error(
            f"no OBX {int(Mdc.ALARM)}^MDC_EVT_ALARM in an ACM alert",
            Hl7ErrorCode.SEGMENT_SEQUENCE,
            location=ErrorLocation("OBX"),
            control_id=control_id,
        )

    def attribute(code: Mdc) -> str:
        obx = next((s for s in obxs if s.component(3) == str(int(code))), None)
        return "" if obx is None else obx.component(5)

    parts = (*alarm.components(5), *([""] * 9))
    try:
        code = int(parts[0])
        phase = AlertPhase(attribute(Mdc.ATTR_EVENT_PHASE) or "start")
    except ValueError:
        raise Hl7Error(
            "the alert code (OBX-5) or phase (68481) is not readable",
            Hl7ErrorCode.DATA_TYPE,
            location=alarm.at(5),
            control_id=control_id,
        ) from None
    flags = {v: k for k, v in _PRIORITY_FLAGS.items()}
    return Alert(
        alert_id=obr.component(3),
        pump_id=alarm.component(18),
        patient_id=pid.component(3),
        code=code,
        ref=parts[1],
        text=parts[8],
        phase=phase,
        occurred_at=_when(alarm, 14, control_id, header.sent_at),
        priority=flags.get(alarm.component(8), ""),
        state=attribute(Mdc.ATTR_ALARM_STATE) or "active",
        source_path=alarm.component(4),
        control_id=control_id,
    )
