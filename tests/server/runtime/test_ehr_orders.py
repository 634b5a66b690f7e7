"""EHR auto-programming end to end on a real Stack: an EHR with an ehr certificate sends PIV
orders over MLLP in mutual TLS; a simulated pump over real mTLS MQTT pre-fills, a simulated
clinician confirms at the pump; the EHR receives RRG^O16 and IPEC on its own MLLP listener."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.interop.messages import order as base_order
from tests.server.runtime.support import (
    provision,
    run,
    running_stack,
    wait_for_event,
    wait_stored,
)

from pumpguard.clinical import PumpKind, load_library
from pumpguard.clock import SystemClock
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.devices.infusion import PumpState
from pumpguard.interop import (
    AckCode,
    AckMessage,
    AppError,
    DeliveryError,
    Endpoint,
    Hl7ErrorCode,
    InfusionOrder,
    MllpServer,
    OrderControl,
    PeerInfo,
    PumpEvent,
    PumpEventKind,
    Quantity,
    Responder,
    TransportProfile,
    build_accept_ack,
    build_piv,
    parse_ack,
    parse_event,
    send_message,
)
from pumpguard.pki import (
    CertKind,
    PeerIdentity,
    client_tls_context,
    server_tls_context,
    tls_configuration_problems,
)
from pumpguard.server.audit import AuditAction
from pumpguard.server.bedside import bedside_nurse
from pumpguard.server.device_runtime import SeqReservation, SimulatedPump, mqtt_connector
from pumpguard.server.ehr_gateway import EhrSettings, NurseSettings
from pumpguard.server.orders import OrderService, OrderStatus, OrderView
from pumpguard.server.runtime import Stack

CONFIRM_AT_ONCE = NurseSettings(confirm_after_s=0, reject_probability=0, edit_probability=0)
REJECT_ALWAYS = NurseSettings(confirm_after_s=0, reject_probability=1, edit_probability=0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeEhr:
    """The EHR's receiving side: records every message and answers a commit ACK."""

    def __init__(self, stack: Stack, port: int, directory: Path) -> None:
        stack.ca.issue(CertKind.EHR, "EHR-TEST", sans=("127.0.0.1", "localhost")).write(directory)
        self.directory = directory
        self.received: asyncio.Queue[str] = asyncio.Queue()
        self.server = MllpServer(
            self._handle,
            profile=TransportProfile.SECURE,
            tls_context=server_tls_context(directory),
            port=port,
            allowed_kinds=frozenset({CertKind.SERVER}),
        )

    async def _handle(self, text: str, peer: PeerInfo) -> str:
        await self.received.put(text)
        kind = text.split("|")[8].split("^")
        return build_accept_ack(
            AckCode.CA,
            text.split("|")[9],
            control_id=f"EHR-ACK-{self.received.qsize()}",
            now=datetime.now(UTC),
            responder=Responder("BCMA", "GENERAL"),
            event=kind[1] if len(kind) > 1 else "O16",
            profile=None,
        )

    async def next_rrg(self) -> AckMessage:
        while True:
            text = await self.received.get()
            if "|RRG^O16" in text:
                return parse_ack(text)

    async def next_event(self) -> PumpEvent:
        while True:
            text = await self.received.get()
            if "|ORU^R42" in text:
                return parse_event(text)

    async def order(self, stack: Stack, text: str, cert_dir: Path | None = None) -> AckMessage:
        assert stack.ehr is not None
        reply = await send_message(
            Endpoint("127.0.0.1", stack.ehr.port),
            text,
            profile=TransportProfile.SECURE,
            tls_context=client_tls_context(cert_dir or self.directory),
        )
        assert reply is not None
        return parse_ack(reply)


def _order(control_id: str, placer: str, **changes: Any) -> InfusionOrder:
    now = datetime.now(UTC)
    header = replace(base_order().header, control_id=control_id, sent_at=now)
    return base_order(header=header, placer_order_number=placer, order_time=now, **changes)


async def _pump(stack: Stack, nurse: NurseSettings) -> SimulatedPump:
    directory = await provision(stack, "PUMP-0001")
    return SimulatedPump(
        "PUMP-0001",
        PumpKind.LVP,
        mqtt_connector(
            stack.local_address,
            stack.mqtt_port,
            directory,
            PeerIdentity(CertKind.PUMP, "PUMP-0001"),
        ),
        clock=SystemClock(),
        events=stack.events,
        library=load_library(EXAMPLE_LIBRARY),
        care_area="ICU",
        seq=SeqReservation(directory / "outbox-seq"),
        workload=bedside_nurse(nurse),
    )


async def _order_view(stack: Stack, placer: str, *statuses: OrderStatus) -> OrderView:
    while True:
        with stack.store.transaction() as session:
            service = OrderService(session, stack.store.ctx)
            for view in service.list_orders(pump_id="PUMP-0001"):
                if view.placer_order_number == placer and view.status in statuses:
                    return service.get(view.id)
        await asyncio.sleep(0.05)


def _settings(ehr_port: int, nurse: NurseSettings) -> EhrSettings:
    return EhrSettings(ehr_endpoint=f"mllps://127.0.0.1:{ehr_port}", nurse=nurse)


def test_an_order_is_prefilled_confirmed_at_the_pump_and_acknowledged(
    tmp_path: Path, database_url: str | None
) -> None:
    ehr_port = _free_port()

    async def scenario() -> None:
        settings = _settings(ehr_port, CONFIRM_AT_ONCE)
        async with running_stack(tmp_path / "data", database_url, ehr=settings) as stack:
            ehr = FakeEhr(stack, ehr_port, tmp_path / "ehr")
            await ehr.server.start()
            pump = await _pump(stack, CONFIRM_AT_ONCE)
            task = asyncio.ensure_future(pump.run())
            try:
                await wait_stored(stack, "PUMP-0001", 1)  # the pump is connected
                order = _order("EHR-1", "ORD-1")
                ack = await ehr.order(stack, build_piv(order))
                assert (ack.code, ack.acknowledged_id) == (AckCode.CA, "EHR-1")

                rrg = await ehr.next_rrg()
                assert (rrg.code, rrg.acknowledged_id, rrg.errors) == (AckCode.AA, "EHR-1", ())
                assert rrg.placer_order_number == "ORD-1"
                event = await ehr.next_event()
                assert event.kind is PumpEventKind.DELIVERY_START
                assert (event.placer_order_number, event.patient_id) == ("ORD-1", "MRN-4711")
                assert event.rate_ml_h == Decimal("14.4")  # 18 units/kg/h x 80 kg / 100 units/mL

                running = pump.firmware.running_programmes()
                assert pump.firmware.state is PumpState.INFUSING
                assert [r.programme.order_id for r in running] == ["ORD-1"]

                view = await _order_view(stack, "ORD-1", OrderStatus.CONFIRMED)
                steps = [s.step for s in view.trail]
                for step in ("received", "checked", "prefill-sent", "prefilled", "confirmed"):
                    assert step in steps
                assert view.prefilled_at_ms is not None
                assert view.received_at_ms <= view.prefilled_at_ms
                assert (view.rate_ml_h, view.drug_code) == ("14.4", "HEP-25K-250")
                with stack.store.transaction() as session:
                    actions = [e.action for e in stack.store.ctx.audit(session).entries(0, 1000)]
                assert AuditAction.ORDER_RECEIVED in actions
                assert AuditAction.ORDER_CONFIRMED in actions

                # a new container while that infusion runs: refused, nothing reaches the pump
                busy = await ehr.order(stack, build_piv(_order("EHR-2", "ORD-2")))
                assert busy.code is AckCode.CA
                refusal = await ehr.next_rrg()
                assert (refusal.code, refusal.acknowledged_id) == (AckCode.AR, "EHR-2")
                assert refusal.app_errors == (AppError.CURRENTLY_INFUSING,)

                # a rate change (XO) of the running infusion beyond the hard limit (40 in ICU)
                hard = _order(
                    "EHR-3",
                    "ORD-1",
                    rate=Quantity(Decimal(45), base_order().rate.unit),  # type: ignore[union-attr]
                    control=OrderControl.CHANGE,
                )
                assert (await ehr.order(stack, build_piv(hard))).code is AckCode.CA
                refusal = await ehr.next_rrg()
                assert (refusal.code, refusal.app_errors) == (AckCode.AE, (AppError.HARD_LIMIT,))
                await wait_for_event(stack, "interop.order.hard_limit")
            finally:
                await pump.stop()
                await task

    run(scenario(), 120)


def test_a_clinician_who_rejects_at_the_pump_is_reported_9023(tmp_path: Path) -> None:
    ehr_port = _free_port()

    async def scenario() -> None:
        settings = _settings(ehr_port, REJECT_ALWAYS)
        async with running_stack(tmp_path / "data", None, ehr=settings) as stack:
            ehr = FakeEhr(stack, ehr_port, tmp_path / "ehr")
            await ehr.server.start()
            pump = await _pump(stack, REJECT_ALWAYS)
            task = asyncio.ensure_future(pump.run())
            try:
                await wait_stored(stack, "PUMP-0001", 1)  # the pump is connected
                await ehr.order(stack, build_piv(_order("EHR-9", "ORD-9")))
                rrg = await ehr.next_rrg()
                assert (rrg.code, rrg.app_errors) == (AckCode.AR, (AppError.REJECTED_BY_USER,))
                assert pump.firmware.state is PumpState.IDLE  # nothing was ever started
                view = await _order_view(stack, "ORD-9", OrderStatus.REJECTED)
                assert "rejected" in [s.step for s in view.trail]
            finally:
                await pump.stop()
                await task

    run(scenario(), 90)


def test_a_replayed_order_is_refused_also_after_a_restart(tmp_path: Path) -> None:
    ehr_port = _free_port()
    data_dir = tmp_path / "data"
    order = build_piv(_order("EHR-5", "ORD-5"))

    async def first_run() -> None:
        settings = _settings(ehr_port, CONFIRM_AT_ONCE)
        async with running_stack(data_dir, None, ehr=settings) as stack:
            ehr = FakeEhr(stack, ehr_port, tmp_path / "ehr")
            await ehr.server.start()
            await provision(stack, "PUMP-0001")
            # the pump is offline: the order is refused (AR 9007), but its ids are now used
            assert (await ehr.order(stack, order)).code is AckCode.CA
            first = await ehr.next_rrg()
            assert first.app_errors == (AppError.OFFLINE,)
            assert (await ehr.order(stack, order)).code is AckCode.CA
            replay = await ehr.next_rrg()
            assert (replay.code, replay.app_errors) == (AckCode.AE, (AppError.STALE_ORDER,))
            assert replay.errors[0].code is Hl7ErrorCode.DUPLICATE_KEY
            await wait_for_event(stack, "interop.order.replayed")
            await ehr.server.close()

    async def second_run() -> None:
        settings = _settings(ehr_port, CONFIRM_AT_ONCE)
        async with running_stack(data_dir, None, ehr=settings) as stack:
            ehr = FakeEhr(stack, ehr_port, tmp_path / "ehr2")
            await ehr.server.start()
            assert (await ehr.order(stack, order)).code is AckCode.CA
            replay = await ehr.next_rrg()
            assert (replay.code, replay.app_errors) == (AckCode.AE, (AppError.STALE_ORDER,))
            with stack.store.transaction() as session:
                views = OrderService(session, stack.store.ctx).list_orders()
            assert [(v.control_id, v.app_error) for v in views] == [
                ("EHR-5", 9007),
                ("EHR-5", 9022),
                ("EHR-5", 9022),
            ]

    run(first_run(), 90)
    run(second_run(), 90)


def test_only_an_ehr_certificate_may_send_and_malformed_hl7_is_answered(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path / "data", None, ehr=EhrSettings()) as stack:
            assert stack.ehr is not None
            assert tls_configuration_problems(stack.tls_contexts["mllp"]) == []
            endpoint = Endpoint("127.0.0.1", stack.ehr.port)
            pump_dir = await provision(stack, "PUMP-0001")
            try:  # a pump's certificate, valid and of our CA, is not an EHR's
                answer = await send_message(
                    endpoint,
                    build_piv(_order("EHR-7", "ORD-7")),
                    profile=TransportProfile.SECURE,
                    tls_context=client_tls_context(pump_dir),
                    timeout=5,
                )
            except DeliveryError:
                answer = None
            assert answer is None  # the connection was closed without reading the order
            await wait_for_event(stack, "interop.peer.wrong_kind")

            ehr_dir = tmp_path / "ehr"
            stack.ca.issue(CertKind.EHR, "EHR-TEST", sans=("127.0.0.1",)).write(ehr_dir)
            tls = client_tls_context(ehr_dir)
            wrong_version = build_piv(_order("EHR-8", "ORD-8")).replace("|2.6|", "|2.5|", 1)
            reply = await send_message(
                endpoint, wrong_version, profile=TransportProfile.SECURE, tls_context=tls
            )
            assert reply is not None
            ack = parse_ack(reply)
            assert (ack.code, ack.acknowledged_id) == (AckCode.CR, "EHR-8")
            assert ack.errors[0].code is Hl7ErrorCode.UNSUPPORTED_VERSION
            no_pid = "\r".join(
                s
                for s in build_piv(_order("EHR-9", "ORD-9")).split("\r")
                if not s.startswith("PID")
            )
            reply = await send_message(
                endpoint, no_pid, profile=TransportProfile.SECURE, tls_context=tls, timeout=10
            )
            assert reply is not None
            assert parse_ack(reply).code is AckCode.CE
            with stack.store.transaction() as session:
                assert OrderService(session, stack.store.ctx).list_orders() == []

    run(scenario(), 90)
