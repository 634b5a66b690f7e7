"""Test messages written for this project (same structure as IHE PCD examples, own content)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from pumpguard.clinical import DrugLibrary, load_library
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.interop import (
    AppError,
    AppErrorDetail,
    CodedValue,
    ErrorLocation,
    ErrorSeverity,
    Hl7ErrorCode,
    InfusionOrder,
    MessageHeader,
    OrderControl,
    PcaParameters,
    Quantity,
)

PIV_PROFILE = "IHE_PCD_PIV_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.3.1^ISO"
NOW = datetime(2026, 11, 21, 14, 30, tzinfo=UTC)
ML = CodedValue("263762", "MDC_DIM_MILLI_L", "MDC")
ML_H = CodedValue("265266", "MDC_DIM_MILLI_L_PER_HR", "MDC")
KG = CodedValue("263875", "MDC_DIM_KILO_G", "MDC")
MIN = CodedValue("264352", "MDC_DIM_MIN", "MDC")
MG = CodedValue("263890", "MDC_DIM_MILLI_G", "MDC")


def library() -> DrugLibrary:
    return load_library(EXAMPLE_LIBRARY)


def segment(name: str, fields: dict[int, str]) -> str:
    last = max(fields, default=0)
    return "|".join([name, *(fields.get(i, "") for i in range(1, last + 1))])


def piv_segments(
    *,
    control_id: str = "EHR-0001",
    control: str = "RE",
    placer: str = "ORD-1001^BCMA",
    drug: str = "HEP-25K-250^Heparin 25,000 units/250 mL^LOCAL",
    volume: str = "250",
    volume_unit: str = "263762^MDC_DIM_MILLI_L^MDC",
    rate: str = "18",
    rate_unit: str = "units/kg/h^^UCUM",
    pump: str = "PUMP-0001",
    patient: str = "MRN-4711^^^GENERAL^MR",
    weight: str | None = "80",
    order_time: str = "20261121142800+0000",
    msh_time: str = "20261121142900+0000",
    version: str = "2.6",
    message_type: str = "RGV^O15^RGV_O15",
    profile: str = PIV_PROFILE,
    with_tq1: bool = False,
    extra_obx: tuple[str, ...] = (),
) -> list[str]:
    """A PIV new-bag order for heparin by weight on an ICU pump, field by field (MSH keys are
    one less than the MSH field number, since MSH-1 is the separator itself)."""
    msh = segment(
        "MSH",
        {
            1: "^~\\&",
            2: "BCMA^ward3^L",
            3: "GENERAL",
            4: "PUMPGUARD",
            5: "GENERAL",
            6: msh_time,
            8: message_type,
            9: control_id,
            10: "P",
            11: version,
            14: "AL",
            15: "AL",
            20: profile,
        },
    )
    segments = [
        msh,
        segment("PID", {3: patient, 5: "Tester^Tara"}),
        segment("PV1", {2: "I", 3: "ICU^12^A"}),
        segment("ORC", {1: control, 2: placer, 9: order_time}),
        segment(
            "RXG",
            {
                1: "1",
                4: drug,
                5: volume,
                7: volume_unit,
                15: rate,
                16: rate_unit,
                17: "25000",
                18: "units^^UCUM",
                23: "250",
                24: "mL^^UCUM",
            },
        ),
    ]
    if with_tq1:
        segments.append(segment("TQ1", {1: "1"}))
    segments.append(segment("RXR", {1: "^IV^HL70162", 3: "IVP^^HL70164"}))
    segments.append(
        segment("OBX", {1: "1", 3: "69986^MDC_DEV_PUMP_INFUS_VMD^MDC", 11: "F", 18: pump})
    )
    if weight is not None:
        segments.append(
            segment(
                "OBX",
                {
                    1: "2",
                    2: "NM",
                    3: "68063^MDC_ATTR_PT_WEIGHT^MDC",
                    5: weight,
                    6: "263875^MDC_DIM_KILO_G^MDC",
                    11: "F",
                },
            )
        )
    segments.extend(extra_obx)
    return segments


def piv(**kwargs: object) -> str:
    return "\r".join(piv_segments(**kwargs)) + "\r"  # type: ignore[arg-type]


def header(control_id: str = "EHR-0001", application_ack: str = "AL") -> MessageHeader:
    return MessageHeader(
        control_id, "BCMA", "GENERAL", "PUMPGUARD", "GENERAL", NOW, "AL", application_ack
    )


def order(**changes: object) -> InfusionOrder:
    """The same heparin order as ``piv()``, as a model."""
    base = InfusionOrder(
        header=header(),
        control=OrderControl.NEW,
        placer_order_number="ORD-1001",
        placer_namespace="BCMA",
        patient_id="MRN-4711",
        pump_id="PUMP-0001",
        drug=CodedValue("HEP-25K-250", "Heparin", "LOCAL"),
        order_time=NOW,
        volume=Quantity(Decimal(250), ML),
        rate=Quantity(Decimal(18), CodedValue("units/kg/h", "", "UCUM")),
        weight=Quantity(Decimal(80), KG),
    )
    from dataclasses import replace

    return replace(base, **changes)  # type: ignore[arg-type]


def pca_order(**changes: object) -> InfusionOrder:
    """A morphine PCA order for the Med-Surg PCA pump."""
    from dataclasses import replace

    base = order(
        pump_id="PCA-0001",
        drug=CodedValue("MORPH-PCA-30-30", "Morphine", "LOCAL"),
        volume=Quantity(Decimal(1), MG),
        rate=None,
        strength_volume=Quantity(Decimal(30), ML),
        device=CodedValue("PCA", "", "HL70164"),
        weight=None,
        pca=PcaParameters(
            dose_limit=Quantity(Decimal(10), MG),
            dose_limit_period=Quantity(Decimal(60), MIN),
            lockout=Quantity(Decimal(10), MIN),
            max_doses_per_hour=Decimal(6),
        ),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


HARD_DETAIL = AppErrorDetail(
    Hl7ErrorCode.INTERNAL_ERROR,
    ErrorSeverity.ERROR,
    AppError.HARD_LIMIT,
    "dose above hard max",
    ErrorLocation("RXG", 1, 15),
)
