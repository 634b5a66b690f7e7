"""PIV (IHE PCD-03, Communicate Infusion Order): ``RGV^O15^RGV_O15`` in HL7 v2.6.

Parsing answers one question: is this a well-formed PIV order, and if so what does it say?
Whether the order may be programmed is ``check_order``'s question, so a message that is valid
HL7 but orders something impossible parses fine and is refused later with an ERR-5 code.
"""

from __future__ import annotations

from pumpguard.interop._common import cwe, msh, read_cwe, read_header, read_quantity
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
from pumpguard.interop.codes import Hl7ErrorCode, Mdc, OrderControl, Profile
from pumpguard.interop.errors import ErrorLocation, Hl7Error
from pumpguard.interop.models import (
    IV_ROUTE,
    CodedValue,
    InfusionOrder,
    PcaParameters,
    Quantity,
)

__all__ = ["PIV_MESSAGE_TYPE", "build_piv", "parse_piv"]

PIV_MESSAGE_TYPE = "RGV^O15^RGV_O15"
_STRUCTURE = "RGV_O15"
# HL7 v2.6 requires a TQ1 after RXG; IHE PCD PIV makes it optional (REFERENCE section 4).
_OPTIONAL = (("RGV_O15_GIVE", "RGV_O15_TIMING_GIVE"),)
_PCA_CODES = {
    Mdc.PCA_DOSE_LIMIT,
    Mdc.PCA_VOLUME_DOSE_LIMIT,
    Mdc.PCA_DOSE_LIMIT_PERIOD,
    Mdc.PCA_MAX_DOSES_PER_HOUR,
    Mdc.PCA_LOCKOUT,
}


def _one(segments: list[Segment], name: str, control_id: str) -> Segment:
    found = [s for s in segments if s.name == name]
    if not found:
        raise Hl7Error(
            f"a PIV order needs a {name} segment",
            Hl7ErrorCode.SEGMENT_SEQUENCE,
            location=ErrorLocation(name),
            control_id=control_id,
        )
    if len(found) > 1:
        raise Hl7Error(
            f"a PIV message carries one order; found {len(found)} {name} segments",
            Hl7ErrorCode.SEGMENT_SEQUENCE,
            location=found[1].at(),
            control_id=control_id,
        )
    return found[0]


def _required(segment: Segment, field: int, what: str, control_id: str, component: int = 1) -> str:
    value = segment.component(field, component).strip()
    if not value:
        raise Hl7Error(
            f"{what} ({segment.name}-{field}) is required",
            Hl7ErrorCode.REQUIRED_FIELD_MISSING,
            location=segment.at(field),
            control_id=control_id,
        )
    return value


def _obx_code(segment: Segment) -> str:
    return segment.component(3, 1).strip()


def _pca(observations: dict[str, Segment], control_id: str) -> PcaParameters | None:
    present = {code for code in _PCA_CODES if str(int(code)) in observations}
    if not present:
        return None

    def quantity(code: Mdc) -> Quantity | None:
        obx = observations.get(str(int(code)))
        return None if obx is None else read_quantity(obx, 5, 6, control_id)

    per_hour = observations.get(str(int(Mdc.PCA_MAX_DOSES_PER_HOUR)))
    return PcaParameters(
        dose_limit=quantity(Mdc.PCA_DOSE_LIMIT),
        volume_dose_limit=quantity(Mdc.PCA_VOLUME_DOSE_LIMIT),
        dose_limit_period=quantity(Mdc.PCA_DOSE_LIMIT_PERIOD),
        max_doses_per_hour=None
        if per_hour is None
        else parse_number(per_hour.component(5), per_hour.at(5), control_id),
        lockout=quantity(Mdc.PCA_LOCKOUT),
    )


def parse_piv(text: str) -> InfusionOrder:
    """Read one PIV order; raise ``Hl7Error`` (never anything else) if it is not one."""
    segments, control_id = check_header(text, ("RGV", "O15"), (_STRUCTURE,), Profile.PIV.value)
    validate_structure(_STRUCTURE, segments, control_id, optional_groups=_OPTIONAL)
    header = read_header(segments[0])
    pid = _one(segments, "PID", control_id)
    orc = _one(segments, "ORC", control_id)
    rxg = _one(segments, "RXG", control_id)
    rxr = next((s for s in segments if s.name == "RXR"), None)
    if rxr is None:
        raise Hl7Error(
            "a PIV order needs an RXR segment",
            Hl7ErrorCode.SEGMENT_SEQUENCE,
            location=ErrorLocation("RXR"),
            control_id=control_id,
        )
    patient_id = _required(pid, 3, "patient identifier", control_id)
    control_text = _required(orc, 1, "order control", control_id)
    try:
        control = OrderControl(control_text)
    except ValueError:
        raise Hl7Error(
            f"order control {control_text!r} is not RE (new order) or XO (change)",
            Hl7ErrorCode.TABLE_VALUE_NOT_FOUND,
            location=orc.at(1),
            control_id=control_id,
        ) from None
    placer = _required(orc, 2, "placer order number", control_id)
    drug = read_cwe(rxg, 4)
    if drug is None or not (drug.identifier or drug.text):
        raise Hl7Error(
            "give code (RXG-4) names no drug",
            Hl7ErrorCode.REQUIRED_FIELD_MISSING,
            location=rxg.at(4),
            control_id=control_id,
        )
    observations: dict[str, Segment] = {}
    for obx in (s for s in segments if s.name == "OBX"):
        observations.setdefault(_obx_code(obx), obx)
    device = observations.get(str(int(Mdc.VMD)))
    if device is None:
        raise Hl7Error(
            f"a PIV order needs an OBX {int(Mdc.VMD)}^MDC_DEV_PUMP_INFUS_VMD naming the pump",
            Hl7ErrorCode.SEGMENT_SEQUENCE,
            location=ErrorLocation("OBX"),
            control_id=control_id,
        )
    pump_id = _required(device, 18, "pump identifier", control_id)
    order_time = parse_dtm(orc.raw(9), orc.at(9), control_id) or header.sent_at
    pv1 = next((s for s in segments if s.name == "PV1"), None)
    area_obx = observations.get(str(int(Mdc.LIBRARY_CARE_AREA)))

    def quantity(code: Mdc) -> Quantity | None:
        obx = observations.get(str(int(code)))
        return None if obx is None else read_quantity(obx, 5, 6, control_id)

    rate = parse_number(rxg.component(15), rxg.at(15), control_id)
    return InfusionOrder(
        header=header,
        control=control,
        placer_order_number=placer,
        placer_namespace=orc.component(2, 2),
        patient_id=patient_id,
        pump_id=pump_id,
        drug=drug,
        order_time=order_time,
        volume=read_quantity(rxg, 5, 7, control_id),
        rate=None if rate is None else Quantity(rate, read_cwe(rxg, 16)),
        strength=read_quantity(rxg, 17, 18, control_id),
        strength_volume=read_quantity(rxg, 23, 24, control_id),
        route=read_cwe(rxr, 1) or IV_ROUTE,
        device=read_cwe(rxr, 3),
        weight=quantity(Mdc.PT_WEIGHT),
        height=quantity(Mdc.PT_HEIGHT),
        bsa=quantity(Mdc.PT_BSA),
        care_area=(area_obx.component(5).strip() or None) if area_obx is not None else None,
        location=(pv1.component(3).strip() or None) if pv1 is not None else None,
        pca=_pca(observations, control_id),
        patient_family=pid.component(5, 1).strip(),
        patient_given=pid.component(5, 2).strip(),
    )


def _name(order: InfusionOrder) -> str:
    """PID-5 is required in v2.6; an order without a name says so with name type U."""
    if not (order.patient_family or order.patient_given):
        return "^^^^^^U"
    return f"{escape(order.patient_family)}^{escape(order.patient_given)}".rstrip("^")


def _quantity_fields(q: Quantity | None) -> tuple[str, str]:
    if q is None:
        return "", ""
    return format_number(q.value), cwe(q.unit)


def _obx(set_id: int, code: CodedValue, fields: dict[int, str]) -> str:
    return segment_text("OBX", {1: str(set_id), 3: cwe(code), 11: "F", **fields})


def _numeric_obx(set_id: int, code: CodedValue, q: Quantity) -> str:
    value, unit = _quantity_fields(q)
    return _obx(set_id, code, {2: "NM", 5: value, 6: unit})


def build_piv(order: InfusionOrder) -> str:
    """The RGV^O15 for ``order``, validated against HL7 v2.6 (TQ1 included, so that it also
    satisfies the base standard, not only the IHE profile)."""
    volume, volume_unit = _quantity_fields(order.volume)
    rate, rate_unit = _quantity_fields(order.rate)
    strength, strength_unit = _quantity_fields(order.strength)
    s_volume, s_volume_unit = _quantity_fields(order.strength_volume)
    segments = [
        msh(order.header, PIV_MESSAGE_TYPE, Profile.PIV),
        segment_text("PID", {3: escape(order.patient_id), 5: _name(order)}),
    ]
    if order.location:
        segments.append(segment_text("PV1", {2: "I", 3: escape(order.location)}))
    segments.append(
        segment_text(
            "ORC",
            {
                1: order.control.value,
                2: "^".join(
                    (escape(order.placer_order_number), escape(order.placer_namespace))
                ).rstrip("^"),
                9: format_dtm(order.order_time),
            },
        )
    )
    segments.append(
        segment_text(
            "RXG",
            {
                1: "1",
                4: cwe(order.drug),
                5: volume,
                7: volume_unit,
                15: rate,
                16: rate_unit,
                17: strength,
                18: strength_unit,
                23: s_volume,
                24: s_volume_unit,
            },
        )
    )
    segments.append(segment_text("TQ1", {1: "1"}))
    segments.append(segment_text("RXR", {1: cwe(order.route), 3: cwe(order.device)}))
    set_id = 1
    segments.append(
        _obx(
            set_id,
            CodedValue(str(int(Mdc.VMD)), "MDC_DEV_PUMP_INFUS_VMD", "MDC"),
            {18: escape(order.pump_id)},
        )
    )
    extras: list[tuple[CodedValue, Quantity | None]] = [
        (CodedValue(str(int(Mdc.PT_WEIGHT)), "MDC_ATTR_PT_WEIGHT", "MDC"), order.weight),
        (CodedValue(str(int(Mdc.PT_HEIGHT)), "MDC_ATTR_PT_HEIGHT", "MDC"), order.height),
        (CodedValue(str(int(Mdc.PT_BSA)), "", "MDC"), order.bsa),
    ]
    pca = order.pca
    if pca is not None:
        per_hour = (
            None if pca.max_doses_per_hour is None else Quantity(pca.max_doses_per_hour, None)
        )
        extras += [
            (_pca_code(Mdc.PCA_DOSE_LIMIT), pca.dose_limit),
            (_pca_code(Mdc.PCA_VOLUME_DOSE_LIMIT), pca.volume_dose_limit),
            (_pca_code(Mdc.PCA_DOSE_LIMIT_PERIOD), pca.dose_limit_period),
            (_pca_code(Mdc.PCA_MAX_DOSES_PER_HOUR), per_hour),
            (_pca_code(Mdc.PCA_LOCKOUT), pca.lockout),
        ]
    for code, q in extras:
        if q is not None:
            set_id += 1
            segments.append(_numeric_obx(set_id, code, q))
    if order.care_area:
        set_id += 1
        code = CodedValue(str(int(Mdc.LIBRARY_CARE_AREA)), "", "MDC")
        segments.append(_obx(set_id, code, {2: "ST", 5: escape(order.care_area)}))
    return serialise(join_segments(segments), _STRUCTURE)


def _pca_code(code: Mdc) -> CodedValue:
    """REFERENCE names these terms by number only, so no reference id is written."""
    return CodedValue(str(int(code)), "", "MDC")
