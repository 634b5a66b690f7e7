"""Acknowledgements and pump reports: built, validated by hl7apy independently, read back."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_segments
from tests.interop.messages import ML_H, NOW

from pumpguard.interop import (
    AckCode,
    Alert,
    AlertPhase,
    AppError,
    AppErrorDetail,
    CodedValue,
    ErrorLocation,
    ErrorSeverity,
    Hl7Error,
    Hl7ErrorCode,
    Observation,
    ObservationReport,
    PumpEvent,
    PumpEventKind,
    Responder,
    build_accept_ack,
    build_alert,
    build_app_ack,
    build_event,
    build_observations,
    parse_ack,
    parse_alert,
    parse_event,
    parse_observations,
)

HARD = AppErrorDetail(
    Hl7ErrorCode.INTERNAL_ERROR,
    ErrorSeverity.ERROR,
    AppError.HARD_LIMIT,
    "dose 45 units/kg/h is above hard max 40 units/kg/h",
    ErrorLocation("RXG", 1, 15),
)


def _validates(text: str, structure: str) -> None:
    """Independent check with hl7apy itself, outside the package under test."""
    message = Message(structure, version="2.6", validation_level=VALIDATION_LEVEL.STRICT)
    message.children = parse_segments(
        text.rstrip("\r"), "2.6", None, VALIDATION_LEVEL.STRICT, message.reference, True
    )
    assert message.validate()


def _fields(text: str, segment: str) -> list[str]:
    line = next(s for s in text.split("\r") if s.startswith(segment + "|"))
    return line.split("|")


def test_accept_ack_echoes_the_control_id() -> None:
    text = build_accept_ack(AckCode.CA, "EHR-0001", control_id="PG-1", now=NOW)
    _validates(text, "ACK")
    assert _fields(text, "MSH")[8] == "ACK^O15^ACK"
    assert _fields(text, "MSA")[1:3] == ["CA", "EHR-0001"]
    ack = parse_ack(text)
    assert (ack.code, ack.acknowledged_id, ack.errors) == (AckCode.CA, "EHR-0001", ())


def test_commit_error_carries_err3_and_location() -> None:
    detail = AppErrorDetail(
        Hl7ErrorCode.REQUIRED_FIELD_MISSING,
        ErrorSeverity.ERROR,
        None,
        "placer order number (ORC-2) is required",
        ErrorLocation("ORC", 1, 2),
    )
    text = build_accept_ack(AckCode.CE, "EHR-0002", control_id="PG-2", now=NOW, errors=[detail])
    _validates(text, "ACK")
    err = _fields(text, "ERR")
    assert err[2] == "ORC^1^2"
    assert err[3] == "101^Required field missing^HL70357"
    assert err[4] == "E"
    assert parse_ack(text).errors == (detail,)


def test_reject_without_a_recoverable_control_id_leaves_msa2_empty() -> None:
    detail = AppErrorDetail(Hl7ErrorCode.SEGMENT_SEQUENCE, ErrorSeverity.ERROR)
    text = build_accept_ack(AckCode.CR, None, control_id="PG-3", now=NOW, errors=[detail])
    assert _fields(text, "MSA")[1:3] == ["CR", ""]
    assert parse_ack(text).acknowledged_id == ""


def test_application_ack_with_err5() -> None:
    text = build_app_ack(
        AckCode.AE,
        "EHR-0001",
        control_id="PG-4",
        now=NOW,
        errors=[HARD],
        placer_order_number="ORD-1001",
        patient_id="MRN-4711",
        responder=Responder().to(None),
    )
    _validates(text, "RRG_O16")
    assert _fields(text, "MSH")[8] == "RRG^O16^RRG_O16"
    assert _fields(text, "MSA")[1:3] == ["AE", "EHR-0001"]
    assert _fields(text, "ERR")[5] == "9024^Hard limit exceeded^HL70533"
    assert _fields(text, "ORC")[1:3] == ["UA", "ORD-1001"]
    ack = parse_ack(text)
    assert ack.app_errors == (AppError.HARD_LIMIT,)
    assert ack.placer_order_number == "ORD-1001"


def test_application_accept_has_no_err() -> None:
    text = build_app_ack(AckCode.AA, "EHR-0001", control_id="PG-5", now=NOW)
    _validates(text, "RRG_O16")
    assert "\rERR|" not in text
    assert parse_ack(text).code is AckCode.AA


@pytest.mark.parametrize(
    ("builder", "code"),
    [(build_accept_ack, AckCode.AA), (build_app_ack, AckCode.CA), (build_app_ack, AckCode.AE)],
)
def test_builders_refuse_codes_that_do_not_belong(builder: object, code: AckCode) -> None:
    with pytest.raises(ValueError, match="acknowledgement"):
        builder(code, "X", control_id="Y", now=NOW)  # type: ignore[operator]


def test_parse_ack_refuses_a_commit_code_in_an_rrg() -> None:
    text = build_app_ack(AckCode.AA, "EHR-0001", control_id="PG-6", now=NOW)
    with pytest.raises(Hl7Error):
        parse_ack(text.replace("MSA|AA|", "MSA|CA|"))


EVENT = PumpEvent(
    PumpEventKind.DELIVERY_START,
    "PUMP-0001",
    "MRN-4711",
    datetime(2026, 11, 21, 14, 35, 12, tzinfo=UTC),
    "ORD-1001",
    CodedValue("HEP-25K-250", "Heparin", "LOCAL"),
    Decimal("14.4"),
    Decimal(0),
    Decimal(250),
    "PG-EVT-1",
)


@pytest.mark.parametrize("kind", list(PumpEventKind))
def test_ipec_events_round_trip(kind: PumpEventKind) -> None:
    event = PumpEvent(kind, "PUMP-0001", "MRN-4711", NOW, control_id="E")
    text = build_event(event)
    _validates(text, "ORU_R01")
    assert parse_event(text) == event


def test_ipec_event_fields() -> None:
    text = build_event(EVENT)
    _validates(text, "ORU_R01")
    assert _fields(text, "MSH")[8] == "ORU^R42^ORU_R01"
    assert "1.3.6.1.4.1.19376.1.6.4.10" in _fields(text, "MSH")[20]
    assert _fields(text, "OBR")[2] == "ORD-1001^PCD-03"
    assert _fields(text, "OBX")[3] == "197288^MDC_EVT_PUMP_DELIV_START^MDC"
    assert parse_event(text) == EVENT


def test_dec_observations_carry_containment_paths_and_device_id() -> None:
    report = ObservationReport(
        "PUMP-0001",
        "MRN-4711",
        (
            Observation(157784, "MDC_FLOW_FLUID_PUMP", Decimal("14.4"), ML_H, "1.1.1.1", NOW),
            Observation(184508, "MDC_PUMP_STAT", "pump-status-infusing", None, "1.1.1.2", NOW),
        ),
        "PG-DEC-1",
    )
    text = build_observations(report)
    _validates(text, "ORU_R01")
    lines = [s.split("|") for s in text.split("\r") if s.startswith("OBX|")]
    assert [line[4] for line in lines] == ["1", "1.1", "1.1.1.1", "1.1.1.2"]
    assert {line[18] for line in lines} == {"PUMP-0001"}
    assert parse_observations(text) == report


def test_acm_alert_round_trip_and_structure() -> None:
    alert = Alert(
        "AL-7",
        "PUMP-0001",
        "MRN-4711",
        196940,
        "MDC_EVT_FLUID_LINE_OCCL",
        "occlusion downstream",
        AlertPhase.START,
        NOW,
        "high",
        "active",
        "1.1.1",
        "PG-ACM-1",
    )
    text = build_alert(alert)
    _validates(text, "ORU_R01")
    assert _fields(text, "MSH")[8] == "ORU^R40^ORU_R40"
    assert _fields(text, "OBX")[3] == "196616^MDC_EVT_ALARM^MDC"
    assert parse_alert(text) == alert


def test_a_report_needs_a_control_id() -> None:
    with pytest.raises(ValueError, match="control id"):
        build_event(PumpEvent(PumpEventKind.DELIVERY_STOP, "P", "Q", NOW))


def test_a_report_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(Hl7Error) as info:
        parse_event(
            build_alert(Alert("A", "P", "Q", 1, "", "", AlertPhase.END, NOW, control_id="C"))
        )
    assert info.value.reject
