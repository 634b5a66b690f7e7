"""Conformance harness: PIV messages modelled on the IHE PCD TF-2 PCD-03 examples (the same
segments and field positions, our own content) and variations of them, sent over MLLP in
mutual TLS with an EHR certificate to a running ``Stack`` (demo ward, EHR gateway, bedside
nurse who confirms at once), through the simulated EHR. Every expected code below is written
from REFERENCE section 4 (ERR-5), HL7 v2.6 table 0008 (MSA-1) and table 0357 (ERR-3), and
HL7 v2.6 2.9.2 (AE: content refused; AR/CR: cannot be processed whatever it says) - never from
what the server returned. Where the standard leaves a choice the comment says whose it is.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.server.runtime.support import config as stack_config

from pumpguard.clinical import PumpKind, load_library
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.interop import (
    AckCode,
    AppError,
    DeliveryError,
    Endpoint,
    Hl7ErrorCode,
    OrderContext,
    OrderControl,
    PivReceiver,
    PumpEventKind,
    PumpStatus,
    TransportProfile,
    check_order,
    send_message,
)
from pumpguard.lab.ehr import Expectation, OrderKind, OrderRecord, PlannedOrder, SimulatedEhr
from pumpguard.pki import CertKind, client_tls_context
from pumpguard.server.ehr_gateway import EhrSettings, NurseSettings
from pumpguard.server.runtime import Stack

T = TypeVar("T")
PROFILE = "IHE_PCD_PIV_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.3.1^ISO"
HEPARIN = "HEP-25K-250^Heparin 25,000 units/250 mL^LOCAL"
INSULIN = "INS-100-100^Insulin Regular 100 units/100 mL^LOCAL"
ML = "263762^MDC_DIM_MILLI_L^MDC"
KG = "263875^MDC_DIM_KILO_G^MDC"
SETTLE_S = 60.0
AREA_OBX = "OBX|3|ST|184516^^MDC||Oncology||||||F"


def _dtm(when: datetime) -> str:
    return when.strftime("%Y%m%d%H%M%S+0000")


def _seg(name: str, fields: dict[int, str]) -> str:
    last = max(fields, default=0)
    return "|".join([name, *(fields.get(i, "") for i in range(1, last + 1))])


def piv(
    control_id: str,
    *,
    pump: str,
    patient: str,
    control: str = "RE",
    drug: str = HEPARIN,
    rate: str = "18",
    rate_unit: str = "[iU]/kg/h^^UCUM",
    strength: tuple[str, str, str] = ("25000", "[iU]^^UCUM", "250"),
    volume: str = "250",
    weight: str | None = "80",
    order_time: datetime | None = None,
    version: str = "2.6",
    profile: str = PROFILE,
    message_type: str = "RGV^O15^RGV_O15",
    encoding: str = "^~\\&",
    name: str = "Tester^Tara",
    extra_obx: tuple[str, ...] = (),
    drop: tuple[str, ...] = (),
) -> str:
    """A PCD-03 RGV^O15 with the TF example's layout: MSH, PID, PV1, ORC, RXG, TQ1, RXR, OBX
    (pump id in OBX-18 of 69986), OBX weight. MSH fields are keyed by number - 1."""
    now = datetime.now(UTC)
    when = order_time or now
    amount, amount_unit, amount_volume = strength
    msh = _seg(
        "MSH",
        {
            1: encoding,
            2: "BCMA",
            3: "GENERAL",
            4: "PUMPGUARD",
            5: "PUMPGUARD",
            6: _dtm(now),
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
        ("MSH", msh),
        ("PID", _seg("PID", {3: f"{patient}^^^GENERAL^MR", 5: name})),
        ("PV1", _seg("PV1", {2: "I", 3: "ICU^1^A"})),
        ("ORC", _seg("ORC", {1: control, 2: f"P-{control_id}^BCMA", 9: _dtm(when)})),
        (
            "RXG",
            _seg(
                "RXG",
                {
                    1: "1",
                    4: drug,
                    5: volume,
                    7: ML,
                    15: rate,
                    16: rate_unit,
                    17: amount,
                    18: amount_unit,
                    23: amount_volume,
                    24: "mL^^UCUM",
                },
            ),
        ),
        ("TQ1", _seg("TQ1", {1: "1"})),
        ("RXR", _seg("RXR", {1: "^IV^HL70162", 3: "IVP^^HL70164"})),
        ("OBX", _seg("OBX", {1: "1", 3: "69986^MDC_DEV_PUMP_INFUS_VMD^MDC", 11: "F", 18: pump})),
    ]
    if weight is not None:
        segments.append(
            (
                "OBX",
                _seg(
                    "OBX",
                    {1: "2", 2: "NM", 3: "68063^MDC_ATTR_PT_WEIGHT^MDC", 5: weight, 6: KG, 11: "F"},
                ),
            )
        )
    segments += [("OBX", text) for text in extra_obx]
    return "\r".join(text for name, text in segments if name not in drop) + "\r"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Harness:
    """A running stack and the simulated EHR, on an event loop in a thread of their own."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.stack: Stack | None = None
        self.ehr: SimulatedEhr | None = None
        self._ids = 0

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    async def start(self) -> None:
        ehr_port = _free_port()
        settings = EhrSettings(
            ehr_endpoint=f"mllps://127.0.0.1:{ehr_port}",
            nurse=NurseSettings(confirm_after_s=0, reject_probability=0, edit_probability=0),
        )
        self.stack = await Stack.start(
            stack_config(self.tmp / "data", None, demo=True, ehr=settings)
        )
        gateway = self.stack.ehr
        assert gateway is not None
        credential = self.stack.ca.issue(
            CertKind.EHR, "ehr-conformance", sans=("localhost", "127.0.0.1")
        )
        credential.write(self.tmp / "ehr")
        self.stack.ca.issue(CertKind.PUMP, "PUMP-ROGUE").write(self.tmp / "pump")
        self.ehr = SimulatedEhr(
            Endpoint("localhost", gateway.port), self.tmp / "ehr", listen_port=ehr_port
        )
        await self.ehr.start()
        await asyncio.sleep(3)  # every demo pump's first status reaches the gateway

    async def stop(self) -> None:
        if self.ehr is not None:
            await self.ehr.close()
        if self.stack is not None:
            await self.stack.stop()

    def next_id(self, label: str) -> str:
        self._ids += 1
        return f"CONF-{label}-{self._ids}"

    def send(self, control_id: str, text: str, pump: str = "", patient: str = "") -> OrderRecord:
        """Send one message; return its record once every answer it is owed has come."""
        assert self.ehr is not None
        ehr = self.ehr
        planned = PlannedOrder(
            OrderKind.VALID,
            control_id,
            f"P-{control_id}",
            pump,
            patient,
            "",
            OrderControl.NEW,
            text,
            Expectation(AckCode.CA),
        )

        async def go() -> OrderRecord:
            record = await ehr.send(planned)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + SETTLE_S
            while not record.settled and loop.time() < deadline:
                await ehr.wait_changed(0.5)
            return record

        return self.call(go(), SETTLE_S + 30)

    def wait_events(self, record: OrderRecord, kind: PumpEventKind) -> list[PumpEventKind]:
        assert self.ehr is not None
        ehr = self.ehr

        async def go() -> list[PumpEventKind]:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while kind not in [k for k, _ in record.events] and loop.time() < deadline:
                await ehr.wait_changed(0.5)
            return [k for k, _ in record.events]

        return self.call(go(), 60)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("conformance"))
    try:
        h.call(h.start(), 300)
        yield h
    finally:
        h.call(h.stop(), 120)
        h.loop.call_soon_threadsafe(h.loop.stop)
        h.thread.join(10)


def _commit(record: OrderRecord, code: AckCode, hl7: Hl7ErrorCode | None = None) -> None:
    assert record.ack is not None, record.delivery_error
    assert record.ack.code is code, record.ack
    assert record.ack.acknowledged_id == record.order.control_id
    if hl7 is not None:
        assert record.ack.errors and record.ack.errors[0].code is hl7, record.ack.errors
    assert record.ack.message_type == "ACK^O15^ACK"


def _application(record: OrderRecord, code: AckCode, error: AppError | None = None) -> None:
    _commit(record, AckCode.CA)
    assert record.rrg is not None, f"no RRG^O16 for {record.order.control_id}"
    assert record.rrg.code is code, record.rrg
    assert record.rrg.acknowledged_id == record.order.control_id
    assert record.rrg.placer_order_number == record.order.placer
    assert record.app_error is error, record.rrg.errors


# PUMP-0001..0004 are the demo ward's ICU pumps without a nurse of their own (patients
# 100001..100004); the bedside nurse confirms a pre-filled order at the pump's next tick.


def test_weight_based_continuous_infusion_is_prefilled_confirmed_and_reported(
    harness: Harness,
) -> None:
    cid = harness.next_id("weight")
    record = harness.send(cid, piv(cid, pump="PUMP-0001", patient="100001"))
    _application(record, AckCode.AA)
    assert record.rrg is not None and not record.rrg.errors
    # IPEC (PCD-10) DELIV_START, linked to the order by OBR-2.
    assert PumpEventKind.DELIVERY_START in harness.wait_events(record, PumpEventKind.DELIVERY_START)


def test_rate_change_xo_of_the_running_infusion_is_accepted(harness: Harness) -> None:
    cid = harness.next_id("xo")
    record = harness.send(
        cid, piv(cid, pump="PUMP-0001", patient="100001", control="XO", rate="20")
    )
    _application(record, AckCode.AA)


def test_a_new_container_re_while_infusing_is_refused_9002(harness: Harness) -> None:
    cid = harness.next_id("re-busy")
    record = harness.send(cid, piv(cid, pump="PUMP-0001", patient="100001"))
    _application(record, AckCode.AR, AppError.CURRENTLY_INFUSING)


def test_continuous_infusion_without_weight_is_accepted(harness: Harness) -> None:
    cid = harness.next_id("insulin")
    text = piv(
        cid,
        pump="PUMP-0002",
        patient="100002",
        drug=INSULIN,
        rate="4",
        rate_unit="[iU]/h^^UCUM",
        strength=("100", "[iU]^^UCUM", "100"),
        volume="100",
        weight=None,
    )
    _application(harness.send(cid, text), AckCode.AA)


def test_xo_when_nothing_runs_cannot_be_accepted_9017(harness: Harness) -> None:
    cid = harness.next_id("xo-idle")
    text = piv(cid, pump="PUMP-0003", patient="100003", control="XO")
    _application(harness.send(cid, text), AckCode.AR, AppError.CANNOT_ACCEPT)


@pytest.mark.parametrize(
    ("label", "changes", "error"),
    [
        ("hard", {"rate": "45"}, AppError.HARD_LIMIT),
        ("unknown-pump", {"pump": "PUMP-9999"}, AppError.UNKNOWN_INFUSER),
        ("patient", {"patient": "100017"}, AppError.PATIENT_MISMATCH),
        ("drug", {"drug": "ZZ-404^Unobtainium^LOCAL"}, AppError.NO_LIBRARY_MATCH),
        ("units", {"rate_unit": "mg/h^^UCUM"}, AppError.UNITS_MISMATCH),
        ("stale", {"order_time": "stale"}, AppError.STALE_ORDER),
        ("no-weight", {"weight": None}, AppError.WEIGHT_MISMATCH),
        ("area", {"extra_obx": (AREA_OBX,)}, AppError.CARE_AREA_MISMATCH),
    ],
)
def test_content_faults_are_refused_ae_with_their_err5(
    harness: Harness, label: str, changes: dict[str, Any], error: AppError
) -> None:
    cid = harness.next_id(label)
    fields: dict[str, Any] = {"pump": "PUMP-0004", "patient": "100004", **changes}
    if fields.get("order_time") == "stale":
        fields["order_time"] = datetime.now(UTC) - timedelta(hours=1)
    record = harness.send(cid, piv(cid, **fields))
    _application(record, AckCode.AE, error)


def test_a_replayed_message_is_refused_9022_duplicate_key(harness: Harness) -> None:
    cid = harness.next_id("replay")
    first = harness.send(cid, piv(cid, pump="PUMP-0004", patient="100004", rate="45"))
    _application(first, AckCode.AE, AppError.HARD_LIMIT)
    again = harness.send(cid, piv(cid, pump="PUMP-0004", patient="100004", rate="45"))
    _application(again, AckCode.AE, AppError.STALE_ORDER)
    assert again.rrg is not None
    assert again.rrg.errors[0].code is Hl7ErrorCode.DUPLICATE_KEY


@pytest.mark.parametrize(
    ("label", "changes", "ack", "hl7"),
    [
        # Missing required segment (RXR, PID): segment sequence error, CE (v2.6 2.9.2).
        ("no-rxr", {"drop": ("RXR",)}, AckCode.CE, Hl7ErrorCode.SEGMENT_SEQUENCE),
        ("no-pid", {"drop": ("PID",)}, AckCode.CE, Hl7ErrorCode.SEGMENT_SEQUENCE),
        # MSH-12 must be 2.6 (IHE PCD): unsupported version id, rejected.
        ("v25", {"version": "2.5"}, AckCode.CR, Hl7ErrorCode.UNSUPPORTED_VERSION),
        # MSH-9 not RGV^O15: unsupported message type, rejected.
        (
            "adt",
            {"message_type": "ADT^A01^ADT_A01"},
            AckCode.CR,
            Hl7ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
        ),
        # MSH-21 naming another profile: table 0357 has no code for a profile, so 200
        # (the message type as profiled is not supported): pumpguard's documented choice.
        (
            "profile",
            {"profile": "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"},
            AckCode.CR,
            Hl7ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
        ),
        # ORC-1 outside RE/XO: table value not found.
        ("orc1", {"control": "NW"}, AckCode.CE, Hl7ErrorCode.TABLE_VALUE_NOT_FOUND),
        # A segment separator injected in a field (PID-5) splits the segment: what follows
        # is no segment at all, a segment sequence error.
        (
            "injected",
            {"name": "Tester\rinjected text^Tara"},
            AckCode.CE,
            Hl7ErrorCode.SEGMENT_SEQUENCE,
        ),
        # RXG-15 is NM: a word there is a data type error.
        ("nm", {"rate": "fast"}, AckCode.CE, Hl7ErrorCode.DATA_TYPE),
    ],
)
def test_malformed_messages_get_the_exact_commit_code_and_no_rrg(
    harness: Harness,
    label: str,
    changes: dict[str, Any],
    ack: AckCode,
    hl7: Hl7ErrorCode,
) -> None:
    cid = harness.next_id(label)
    fields: dict[str, Any] = {"pump": "PUMP-0004", "patient": "100004", **changes}
    record = harness.send(cid, piv(cid, **fields))
    _commit(record, ack, hl7)
    assert record.rrg is None  # a CE/CR order is not processed (HL7 v2.6 2.9.2)


def test_wrong_delimiters_are_rejected(harness: Harness) -> None:
    cid = harness.next_id("delims")
    # IHE PCD TF-2 requires the HL7 recommended encoding characters ^~\&: rejected. ERR-3
    # 102 (data type error, in MSH-2) is pumpguard's documented choice.
    text = piv(cid, pump="PUMP-0004", patient="100004", encoding="#~\\&")
    record = harness.send(cid, text)
    _commit(record, AckCode.CR, Hl7ErrorCode.DATA_TYPE)


def test_an_oversized_frame_is_rejected_and_the_link_survives(harness: Harness) -> None:
    cid = harness.next_id("huge")
    text = piv(cid, pump="PUMP-0004", patient="100004") + "NTE|1||" + "x" * (1 << 20) + "\r"
    record = harness.send(cid, text)
    # Over the 1 MiB MLLP frame limit: rejected unread, MSA-2 recovered from its start;
    # ERR-3 207 is pumpguard's documented choice (table 0357 has no "too long").
    _commit(record, AckCode.CR, Hl7ErrorCode.INTERNAL_ERROR)
    assert record.rrg is None
    cid = harness.next_id("after-huge")
    follow = harness.send(cid, piv(cid, pump="PUMP-0004", patient="100004", version="2.5"))
    _commit(follow, AckCode.CR, Hl7ErrorCode.UNSUPPORTED_VERSION)


def test_an_order_from_a_pump_certificate_gets_no_answer(harness: Harness) -> None:
    assert harness.stack is not None and harness.stack.ehr is not None
    port = harness.stack.ehr.port
    cid = harness.next_id("rogue")
    text = piv(cid, pump="PUMP-0004", patient="100004")

    async def go() -> str | None:
        try:
            return await send_message(
                Endpoint("localhost", port),
                text,
                profile=TransportProfile.SECURE,
                tls_context=client_tls_context(harness.tmp / "pump"),
                timeout=10,
            )
        except DeliveryError:
            return None

    assert harness.call(go()) is None


def test_a_bag_that_outlasts_the_entry_maximum_duration_is_a_hard_limit() -> None:
    """Found by the simulated EHR: the server accepted what the pump then refused. 100 mL of
    fluorouracil 5,000 mg/100 mL at 40 mg/h runs 125 h, over the entry's 2,880 min; 30 mL
    runs 37.5 h."""
    library = load_library(EXAMPLE_LIBRARY)
    pumps = {"PUMP-0017": PumpStatus("PUMP-0017", PumpKind.LVP, care_area="Oncology")}
    text = piv(
        "CONF-duration",
        pump="PUMP-0017",
        patient="100017",
        drug="FU-5000-100^Fluorouracil 5,000 mg/100 mL^LOCAL",
        rate="40",
        rate_unit="mg/h^^UCUM",
        strength=("5000", "mg^^UCUM", "100"),
        volume="100",
        weight=None,
    )
    order = PivReceiver().receive(text).order
    assert order is not None
    verdict = check_order(order, OrderContext(pumps, library, datetime.now(UTC)))
    assert verdict.code is AckCode.AE
    assert verdict.finding is not None and verdict.finding.app_error is AppError.HARD_LIMIT
    shorter = PivReceiver().receive(text.replace("|100||263762", "|30||263762")).order
    assert shorter is not None
    assert check_order(shorter, OrderContext(pumps, library, datetime.now(UTC))).accepted
