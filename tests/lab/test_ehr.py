"""The simulated EHR: each order kind carries exactly the fault it names (judged by the real
order check against REFERENCE's codes), and the simulator matches the answers that come back
over MLLP/TLS to its orders. The order consumer here is built from the real interop pieces
(``PivReceiver``, ``check_order``, ``MllpServer``, ``send_message``), not from the server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pumpguard.clinical import PumpKind, load_library
from pumpguard.clock import VirtualClock
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.devices.infusion import (
    CommandSource,
    InfusionPump,
    PowerOn,
    Program,
    SetCareArea,
)
from pumpguard.interop import (
    AckCode,
    AppError,
    Endpoint,
    Hl7ErrorCode,
    MllpServer,
    OrderContext,
    PeerInfo,
    PivReceiver,
    PumpEvent,
    PumpEventKind,
    PumpStatus,
    TransportProfile,
    build_event,
    check_order,
    parse_ack,
    send_message,
)
from pumpguard.lab.ehr import (
    OrderFactory,
    OrderKind,
    SimulatedEhr,
    default_mix,
    percentile,
    run_orders,
)
from pumpguard.pki import CertificateAuthority, CertKind, client_tls_context, server_tls_context
from pumpguard.server.demo import demo_beds

PASSPHRASE = b"correct horse battery staple"
LIBRARY = load_library(EXAMPLE_LIBRARY)
BEDS = demo_beds()


def _pumps(*, infusing: bool = False) -> dict[str, PumpStatus]:
    return {
        b.pump: PumpStatus(
            b.pump, PumpKind.LVP, care_area=b.care_area, patient_id=b.mrn, infusing=infusing
        )
        for b in BEDS
    }


@pytest.mark.parametrize("kind", [k for k in OrderKind if k is not OrderKind.MALFORMED])
@pytest.mark.parametrize("bed", BEDS[::6], ids=lambda b: b.pump)
def test_each_order_kind_gets_the_answer_reference_gives_it(kind: OrderKind, bed: object) -> None:
    factory = OrderFactory(LIBRARY, seed=7)
    now = datetime.now(UTC)
    planned = factory.build(kind, bed, now)  # type: ignore[arg-type]
    reception = PivReceiver().receive(planned.text)
    assert reception.order is not None, reception.ack
    assert reception.order.pump_id == planned.pump_id
    context = OrderContext(_pumps(infusing=kind is OrderKind.INFUSING_WITHOUT_XO), LIBRARY, now)
    verdict = check_order(reception.order, context)
    finding = verdict.finding.app_error if verdict.finding is not None else None
    assert (verdict.code, finding) == (planned.expected.rrg, planned.expected.app_error)


def test_valid_orders_are_taken_by_the_pump_firmware_too() -> None:
    """The server's check is not the last word: the pump re-checks (duration, rate steps), so
    a 'valid' order must also pre-fill on the firmware, or the simulator tests nothing."""
    factory = OrderFactory(LIBRARY, seed=2)
    now = datetime.now(UTC)
    drugs = set()
    for n in range(48):
        bed = BEDS[n % len(BEDS)]
        planned = factory.build(OrderKind.VALID, bed, now)
        drugs.add(planned.drug)
        order = PivReceiver().receive(planned.text).order
        assert order is not None
        verdict = check_order(order, OrderContext(_pumps(), LIBRARY, now))
        assert verdict.accepted and verdict.programme is not None, verdict.finding
        pump = InfusionPump(PumpKind.LVP, VirtualClock(0), serial=bed.pump, library=LIBRARY)
        pump.handle(PowerOn())
        pump.handle(SetCareArea(bed.care_area))
        result = pump.handle(Program(verdict.programme, CommandSource.AUTO_PROGRAMME))
        assert result.accepted, f"{planned.drug} on {bed.pump}: {result.message}"
    assert "FU-5000-100" in drugs  # its 48 h maximum duration caps the bag


def test_expectations_are_the_reference_codes() -> None:
    factory = OrderFactory(LIBRARY)
    now = datetime.now(UTC)
    expected = {k: factory.build(k, BEDS[4], now).expected for k in OrderKind}
    assert expected[OrderKind.VALID].rrg is AckCode.AA
    assert expected[OrderKind.HARD_LIMIT].app_error == 9024
    assert expected[OrderKind.UNKNOWN_DRUG].app_error == 9010
    assert expected[OrderKind.WRONG_UNITS].app_error == 9009
    assert expected[OrderKind.WRONG_PATIENT].app_error == 9012
    assert expected[OrderKind.INFUSING_WITHOUT_XO].app_error == 9002
    assert expected[OrderKind.INFUSING_WITHOUT_XO].rrg is AckCode.AR
    assert expected[OrderKind.STALE].app_error == 9022


def test_malformed_orders_rotate_and_are_refused_with_their_hl7_code() -> None:
    factory = OrderFactory(LIBRARY)
    now = datetime.now(UTC)
    seen = {}
    for _ in range(4):
        planned = factory.build(OrderKind.MALFORMED, BEDS[0], now)
        seen[planned.variant] = planned
        ack = parse_ack(PivReceiver().receive(planned.text).ack)
        assert ack.code is planned.expected.ack
        assert ack.acknowledged_id == planned.control_id
        assert ack.errors[0].code is planned.expected.hl7_error
    assert {v: p.expected.hl7_error for v, p in seen.items()} == {
        "missing-rxr": Hl7ErrorCode.SEGMENT_SEQUENCE,
        "missing-placer": Hl7ErrorCode.REQUIRED_FIELD_MISSING,
        "rate-not-a-number": Hl7ErrorCode.DATA_TYPE,
        "wrong-version": Hl7ErrorCode.UNSUPPORTED_VERSION,
    }
    assert seen["wrong-version"].expected.ack is AckCode.CR


def test_ids_are_unique_and_orders_name_the_bed() -> None:
    factory = OrderFactory(LIBRARY, seed=3)
    now = datetime.now(UTC)
    orders = [factory.build(OrderKind.VALID, b, now) for b in BEDS]
    assert len({o.control_id for o in orders}) == len(orders)
    assert len({o.placer for o in orders}) == len(orders)
    assert [(o.pump_id, o.patient_id) for o in orders] == [(b.pump, b.mrn) for b in BEDS]
    other = OrderFactory(LIBRARY, seed=3).build(OrderKind.VALID, BEDS[0], now)
    assert other.control_id not in {o.control_id for o in orders}


def test_a_factory_needs_beds_and_percentiles_are_nearest_rank() -> None:
    with pytest.raises(ValueError, match="at least one bed"):
        OrderFactory(LIBRARY, beds=[])
    assert percentile([], 50) is None
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
    assert sum(default_mix().values()) == pytest.approx(1.0)


# -- over MLLP/TLS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ehr-pki")
    ca = CertificateAuthority.init(root / "ca", PASSPHRASE)
    out: dict[str, Path] = {}
    for name, kind, ident, sans in (
        ("server", CertKind.SERVER, "pumpserver", ("localhost", "127.0.0.1")),
        ("ehr", CertKind.EHR, "ehr-sim", ("localhost", "127.0.0.1")),
        ("pump", CertKind.PUMP, "PUMP-0001", ()),
    ):
        also_client = kind is CertKind.SERVER
        ca.issue(kind, ident, sans=sans, also_client=also_client).write(root / name)
        out[name] = root / name
    return out


Consumer = Callable[[SimulatedEhr], Awaitable[None]]


async def _with_consumer(
    creds: dict[str, Path],
    pumps: dict[str, PumpStatus],
    body: Callable[[SimulatedEhr, MllpServer], Awaitable[None]],
    *,
    send_event: bool = False,
) -> None:
    """An order consumer: ACK^O15 on the connection, then the RRG^O16 (and, for accepted
    orders, an IPEC delivery start) on a new connection to the EHR's listener."""
    receiver = PivReceiver()
    out_tls = client_tls_context(creds["server"])
    ehr_box: list[SimulatedEhr] = []
    pending: list[asyncio.Task[None]] = []

    async def answer_later(text: str) -> None:
        reception = receiver.receive(text)
        order = reception.order
        assert order is not None
        verdict = check_order(order, OrderContext(pumps, LIBRARY, datetime.now(UTC)))
        rrg = receiver.application_ack(order, verdict)
        endpoint = Endpoint("127.0.0.1", ehr_box[0].listen_port)
        assert rrg is not None
        reply = await send_message(
            endpoint, rrg, profile=TransportProfile.SECURE, tls_context=out_tls, timeout=5
        )
        assert reply is not None and parse_ack_o16_ok(reply)
        if send_event and verdict.accepted:
            event = PumpEvent(
                PumpEventKind.DELIVERY_START,
                order.pump_id,
                order.patient_id,
                datetime.now(UTC),
                placer_order_number=order.placer_order_number,
                control_id="PG-EV-1",
            )
            await send_message(
                endpoint,
                build_event(event),
                profile=TransportProfile.SECURE,
                tls_context=out_tls,
                timeout=5,
            )

    async def handle(text: str, peer: PeerInfo) -> str | None:
        reception = receiver.receive(text, str(peer))
        if reception.order is not None:
            pending.append(asyncio.ensure_future(answer_later(text)))
        return reception.ack

    consumer = MllpServer(
        handle, profile=TransportProfile.SECURE, tls_context=server_tls_context(creds["server"])
    )
    async with consumer:
        ehr = SimulatedEhr(Endpoint("localhost", consumer.port), creds["ehr"], timeout_s=5)
        ehr_box.append(ehr)
        async with ehr:
            await body(ehr, consumer)
            if pending:
                await asyncio.gather(*pending)


def parse_ack_o16_ok(text: str) -> bool:
    ack = parse_ack(text)
    return ack.message_type == "ACK^O16^ACK" and ack.code is AckCode.CA


def test_orders_are_matched_to_their_acks_rrgs_and_events(creds: dict[str, Path]) -> None:
    factory = OrderFactory(LIBRARY, seed=11)
    now = datetime.now(UTC)
    valid = factory.build(OrderKind.VALID, BEDS[0], now)
    hard = factory.build(OrderKind.HARD_LIMIT, BEDS[1], now)
    broken = factory.build(OrderKind.MALFORMED, BEDS[2], now)

    async def body(ehr: SimulatedEhr, _consumer: MllpServer) -> None:
        for planned in (valid, hard, broken):
            await ehr.send(planned)
        assert await ehr.wait_settled(10)
        await ehr.wait_changed(0.3)  # the IPEC event follows the RRG^O16

    box: list[SimulatedEhr] = []

    async def keep(ehr: SimulatedEhr, consumer: MllpServer) -> None:
        box.append(ehr)
        await body(ehr, consumer)

    asyncio.run(_with_consumer(creds, _pumps(), keep, send_event=True))
    ehr = box[0]
    records = {r.order.kind: r for r in ehr.result().records}
    ok = records[OrderKind.VALID]
    assert ok.ack is not None and ok.ack.code is AckCode.CA
    assert ok.rrg is not None and ok.rrg.code is AckCode.AA
    assert ok.matches and ok.outcome == "CA AA"
    assert ok.ack_latency_ms is not None and ok.ack_latency_ms >= 0
    assert ok.rrg_latency_ms is not None and ok.rrg_latency_ms >= ok.ack_latency_ms
    assert [k for k, _ in ok.events] == [PumpEventKind.DELIVERY_START]
    assert ehr.pump_infusing == {BEDS[0].pump: True}
    refused = records[OrderKind.HARD_LIMIT]
    assert refused.rrg is not None and refused.app_error is AppError.HARD_LIMIT
    assert refused.matches and refused.outcome == "CA AE 9024"
    bad = records[OrderKind.MALFORMED]
    assert bad.rrg is None and bad.settled and bad.matches
    summary = ehr.result().summary()
    assert summary["accepted"] == 1
    assert summary["refused"] == {"AE 9024 Hard limit exceeded": 1, "CE 100": 1}
    assert summary["as_expected"] == 3
    assert summary["received"] == {"ORU^R42^ORU_R01": 1, "RRG^O16^RRG_O16": 2}
    assert summary["rrg_count"] == 2 and summary["ack_count"] == 3


def test_a_run_keeps_one_order_per_pump_and_reports_every_order(creds: dict[str, Path]) -> None:
    factory = OrderFactory(LIBRARY, seed=5)
    runs = []

    async def body(ehr: SimulatedEhr, _consumer: MllpServer) -> None:
        runs.append(
            await run_orders(
                ehr,
                factory,
                12,
                rate_per_s=50,
                idle_beds=BEDS[:3],
                busy_beds=BEDS[3:6],
                settle_timeout_s=10,
            )
        )

    pumps = _pumps()
    asyncio.run(_with_consumer(creds, pumps, body))
    run = runs[0]
    assert len(run.records) == 12
    assert all(r.settled for r in run.records)
    summary = run.summary()
    assert summary["orders"] == 12 and summary["no_ack"] == 0 and summary["rrg_missing"] == 0
    # Every order went to a pump with no other order outstanding at the time it was sent.
    for record in run.records:
        overlapping = [
            r
            for r in run.records
            if r is not record
            and r.order.pump_id == record.order.pump_id
            and r.sent_ms < record.sent_ms
            and (r.rrg_ms or r.ack_ms or 0) > record.sent_ms
        ]
        assert overlapping == [], record.order.label


def test_the_listener_answers_unknown_rrgs_and_refuses_a_pump_certificate(
    creds: dict[str, Path],
) -> None:
    factory = OrderFactory(LIBRARY)
    stray = factory.build(OrderKind.VALID, BEDS[0], datetime.now(UTC))
    receiver = PivReceiver()
    order = receiver.receive(stray.text).order
    assert order is not None
    verdict = check_order(order, OrderContext(_pumps(), LIBRARY, datetime.now(UTC)))
    rrg = receiver.application_ack(order, verdict)
    assert rrg is not None
    replies: list[str | None] = []

    async def body(ehr: SimulatedEhr, _consumer: MllpServer) -> None:
        endpoint = Endpoint("127.0.0.1", ehr.listen_port)
        replies.append(
            await send_message(
                endpoint,
                rrg,
                profile=TransportProfile.SECURE,
                tls_context=client_tls_context(creds["server"]),
                timeout=5,
            )
        )
        replies.append(
            await send_message(
                endpoint,
                rrg,
                profile=TransportProfile.SECURE,
                tls_context=client_tls_context(creds["pump"], server_hostname_check=False),
                timeout=5,
            )
        )
        assert ehr.result().unmatched == {"RRG^O16 for an order not sent by this EHR": 1}

    asyncio.run(_with_consumer(creds, _pumps(), body))
    assert replies[0] is not None and parse_ack_o16_ok(replies[0])
    assert replies[1] is None  # a pump may not speak to the EHR: the connection is dropped
