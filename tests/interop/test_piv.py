"""PIV (RGV^O15) parsing and building: what is read, and how each malformation is answered."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from tests.interop.messages import MIN, ML, order, pca_order, piv, piv_segments, segment

from pumpguard.interop import (
    AckCode,
    CodedValue,
    ErrorLocation,
    Hl7Error,
    Hl7ErrorCode,
    OrderControl,
    PcaParameters,
    Quantity,
    build_piv,
    parse_piv,
)


def _error(text: str) -> Hl7Error:
    with pytest.raises(Hl7Error) as info:
        parse_piv(text)
    return info.value


def test_reads_every_field_of_a_piv_order() -> None:
    got = parse_piv(piv())
    assert got.control_id == "EHR-0001"
    assert got.control is OrderControl.NEW
    assert (got.placer_order_number, got.placer_namespace) == ("ORD-1001", "BCMA")
    assert got.patient_id == "MRN-4711"
    assert got.pump_id == "PUMP-0001"
    assert got.drug == CodedValue("HEP-25K-250", "Heparin 25,000 units/250 mL", "LOCAL")
    assert got.volume == Quantity(Decimal(250), ML)
    assert got.rate is not None and got.rate.value == Decimal(18)
    assert got.rate.unit == CodedValue("units/kg/h", "", "UCUM")
    assert got.strength is not None and got.strength.value == Decimal(25000)
    assert got.strength_volume is not None and got.strength_volume.value == Decimal(250)
    assert got.weight is not None and got.weight.value == Decimal(80)
    assert got.route == CodedValue("", "IV", "HL70162")
    assert got.device is not None and got.device.identifier == "IVP"
    assert got.order_time == datetime(2026, 11, 21, 14, 28, tzinfo=UTC)
    assert got.header.sent_at == datetime(2026, 11, 21, 14, 29, tzinfo=UTC)
    assert got.location == "ICU"
    assert got.header.application_ack == "AL"
    assert not got.is_pca


def test_tq1_is_optional_as_in_the_ihe_profile_and_accepted_when_present() -> None:
    assert parse_piv(piv(with_tq1=True)) == parse_piv(piv())


def test_change_order_and_line_feed_separators_are_read() -> None:
    text = "\n".join(piv_segments(control="XO")) + "\n"
    assert parse_piv(text).control is OrderControl.CHANGE


def test_pca_observations_are_read() -> None:
    extra = (
        segment("OBX", {1: "3", 2: "NM", 3: "157989^^MDC", 5: "10", 6: "264352^^MDC", 11: "F"}),
        segment("OBX", {1: "4", 2: "NM", 3: "157985^^MDC", 5: "8", 6: "263890^^MDC", 11: "F"}),
    )
    got = parse_piv(piv(extra_obx=extra))
    assert got.pca is not None
    assert got.pca.lockout == Quantity(Decimal(10), CodedValue("264352", "", "MDC"))
    assert got.pca.dose_limit is not None and got.pca.dose_limit.value == Decimal(8)
    assert got.is_pca


@pytest.mark.parametrize(
    ("text", "code", "ack", "location"),
    [
        (piv(version="2.5"), Hl7ErrorCode.UNSUPPORTED_VERSION, AckCode.CR, ("MSH", 12)),
        (
            piv(message_type="ORM^O01^ORM_O01"),
            Hl7ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
            AckCode.CR,
            ("MSH", 9),
        ),
        (
            piv(message_type="RGV^O16^RGV_O15"),
            Hl7ErrorCode.UNSUPPORTED_EVENT,
            AckCode.CR,
            ("MSH", 9),
        ),
        (
            piv(profile="1.3.6.1.4.1.19376.1.6.1.1.1"),
            Hl7ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
            AckCode.CR,
            ("MSH", 21),
        ),
        (piv(profile=""), Hl7ErrorCode.UNSUPPORTED_MESSAGE_TYPE, AckCode.CR, ("MSH", 21)),
        (piv(placer=""), Hl7ErrorCode.REQUIRED_FIELD_MISSING, AckCode.CE, ("ORC", 2)),
        (piv(control="NW"), Hl7ErrorCode.TABLE_VALUE_NOT_FOUND, AckCode.CE, ("ORC", 1)),
        (piv(volume="250 mL"), Hl7ErrorCode.DATA_TYPE, AckCode.CE, ("RXG", 5)),
        (piv(rate="fast"), Hl7ErrorCode.DATA_TYPE, AckCode.CE, ("RXG", 15)),
        (piv(weight="eighty"), Hl7ErrorCode.DATA_TYPE, AckCode.CE, ("OBX", 5)),
        (piv(pump=""), Hl7ErrorCode.REQUIRED_FIELD_MISSING, AckCode.CE, ("OBX", 18)),
        (piv(patient=""), Hl7ErrorCode.REQUIRED_FIELD_MISSING, AckCode.CE, ("PID", 3)),
        (piv(order_time="yesterday"), Hl7ErrorCode.DATA_TYPE, AckCode.CE, ("ORC", 9)),
        (piv(msh_time="2026-11-21"), Hl7ErrorCode.DATA_TYPE, AckCode.CE, ("MSH", 7)),
        (
            piv().replace("BCMA^ward3", "BCMA_AN_APPLICATION_NAME_TOO_LONG^ward3"),
            Hl7ErrorCode.DATA_TYPE,
            AckCode.CE,
            ("MSH", 3),
        ),
    ],
)
def test_each_malformation_gets_its_code_answer_and_location(
    text: str, code: Hl7ErrorCode, ack: AckCode, location: tuple[str, int]
) -> None:
    error = _error(text)
    assert error.code is code
    assert error.commit_code is ack
    assert error.location is not None
    assert (error.location.segment, error.location.field) == location
    assert error.control_id == "EHR-0001"


@pytest.mark.parametrize("missing", ["PID", "ORC", "RXG", "RXR"])
def test_missing_segments_are_segment_sequence_errors(missing: str) -> None:
    text = "\r".join(s for s in piv_segments() if not s.startswith(missing)) + "\r"
    error = _error(text)
    assert error.code is Hl7ErrorCode.SEGMENT_SEQUENCE
    assert error.commit_code is AckCode.CE
    assert error.control_id == "EHR-0001"


def test_an_order_without_the_pump_device_obx_is_refused() -> None:
    text = "\r".join(s for s in piv_segments() if "69986" not in s) + "\r"
    error = _error(text)
    assert error.code is Hl7ErrorCode.SEGMENT_SEQUENCE
    assert "69986" in str(error)


def test_a_segment_separator_injected_in_a_field_is_caught() -> None:
    segments = piv_segments()
    segments[4] = segments[4].replace("Heparin 25,000", "Heparin\rOBX|9|NM|157784")
    error = _error("\r".join(segments))
    assert error.code in (Hl7ErrorCode.SEGMENT_SEQUENCE, Hl7ErrorCode.DATA_TYPE)
    assert error.commit_code is AckCode.CE


def test_a_segment_separator_splitting_a_field_into_garbage_is_located() -> None:
    segments = piv_segments()
    segments[4] = segments[4].replace("Heparin 25,000", "Hep\rarin 25,000")
    error = _error("\r".join(segments))
    assert error.code is Hl7ErrorCode.SEGMENT_SEQUENCE
    assert error.location == ErrorLocation("RXG", 1, 4)


@pytest.mark.parametrize(
    ("text", "recovered"),
    [
        ("", None),
        ("hello", None),
        ("PID|||1\r", None),
        ("MSH^~\\&|A|B|C|D|20261121||RGV^O15^RGV_O15|X1|P|2.6\r", None),
        ("MSH|^~\\&|A|B|C|D|20261121||RGV^O15^RGV_O15||P|2.6\r", None),
        ("MSH|~^\\&|A|B|C|D|20261121||RGV^O15^RGV_O15|X2|P|2.6\r", "X2"),
        ("MSH|^~\\&|A|B|C|D|20261121||RGV^O15^RGV_O15|X3|P|2.6\r", "X3"),
    ],
)
def test_broken_headers_are_rejected_with_what_can_be_recovered(
    text: str, recovered: str | None
) -> None:
    error = _error(text)
    assert error.commit_code is AckCode.CR
    assert error.control_id == recovered


def test_non_text_and_oversized_input_are_rejected() -> None:
    assert _error(b"MSH|".decode() * 300_000).reject  # type: ignore[arg-type]
    with pytest.raises(Hl7Error):
        parse_piv(None)  # type: ignore[arg-type]


def test_a_second_order_in_one_message_is_refused() -> None:
    segments = piv_segments()
    segments.insert(5, segments[3])
    error = _error("\r".join(segments))
    assert error.code is Hl7ErrorCode.SEGMENT_SEQUENCE


def test_built_orders_parse_back_to_the_same_model() -> None:
    for model in (order(), order(control=OrderControl.CHANGE, care_area="ICU"), pca_order()):
        assert parse_piv(build_piv(model)) == model


def test_escaped_values_survive_a_round_trip() -> None:
    tricky = order(
        drug=CodedValue("X1", "Drug|with^odd~chars\\and&more", "LOCAL"),
        patient_family="O'Hara^|",
        pca=PcaParameters(lockout=Quantity(Decimal("7.5"), MIN)),
    )
    assert parse_piv(build_piv(tricky)) == tricky


def test_messages_beyond_the_size_bounds_are_refused_before_the_library_sees_them() -> None:
    many = tuple(segment("NTE", {1: str(i)}) for i in range(300))
    assert _error(piv(extra_obx=many)).code is Hl7ErrorCode.SEGMENT_SEQUENCE
    reps = piv(patient="~".join(["MRN-1^^^GENERAL^MR"] * 40))
    error = _error(reps)
    assert (error.code, error.location) == (Hl7ErrorCode.DATA_TYPE, ErrorLocation("PID", 1, 3))
    long_segment = piv(drug="X^" + "y" * 70_000)
    assert _error(long_segment).code is Hl7ErrorCode.SEGMENT_SEQUENCE
    wide = tuple(segment("OBX", {1: str(i), 5: "~".join(["a^b^c"] * 15)}) for i in range(80))
    assert "components" in str(_error(piv(extra_obx=wide)))
