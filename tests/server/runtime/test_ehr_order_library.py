"""Which drug library an EHR order is checked against: the one installed on the target pump
(its status reports the version; the server holds it approved), else the configured library,
and then the trail, the audit and a library-related refusal say so."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any

from tests.server.conftest import make_account
from tests.server.runtime.support import provision, run, running_stack, wait_stored
from tests.server.runtime.test_ehr_orders import (
    CONFIRM_AT_ONCE,
    FakeEhr,
    _free_port,
    _order,
    _order_view,
    _settings,
)

from pumpguard.clinical import DrugLibrary, PumpKind, parse_library
from pumpguard.clock import SystemClock
from pumpguard.interop import AckCode, AppError, Quantity, build_piv
from pumpguard.pki import CertKind, PeerIdentity
from pumpguard.server import LibraryAuthoring, Principal, Role, UserService
from pumpguard.server.audit import AuditAction
from pumpguard.server.bedside import bedside_nurse
from pumpguard.server.device_runtime import SeqReservation, SimulatedPump, mqtt_connector
from pumpguard.server.orders import OrderStatus
from pumpguard.server.runtime import Stack

EXAMPLE = files("pumpguard.data") / "example-drug-library.json"
HEPARIN = "HEP-25K-250"


def _example(*, version: int = 1, icu_heparin_hard_max: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"), parse_float=Decimal)
    data["version"] = version
    if icu_heparin_hard_max is not None:
        for area in data["care_areas"]:
            for entry in area["entries"]:
                if area["name"] == "ICU" and entry["code"] == HEPARIN:
                    entry["continuous"]["hard_max"] = icu_heparin_hard_max
    return data


def _principal(stack: Stack, username: str, role: Role) -> Principal:
    make_account(stack.store, username, role)
    with stack.store.transaction() as session:
        user = UserService(session, stack.store.ctx).get_user(username)
    return Principal(user.id, user.username, user.role, session_id=0)


def _approve(stack: Stack, document: dict[str, Any]) -> DrugLibrary:
    """Two pharmacists: one imports and submits, the other approves."""
    author = _principal(stack, "phil", Role.PHARMACIST)
    approver = _principal(stack, "anna", Role.PHARMACY_APPROVER)
    with stack.store.transaction() as session:
        authoring = LibraryAuthoring(session, stack.store.ctx)
        version = authoring.import_json(author, document).version
        authoring.submit(version, author)
        return authoring.approve(version, approver, "test").library


async def _pump(stack: Stack, library: DrugLibrary) -> SimulatedPump:
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
        library=library,
        care_area="ICU",
        seq=SeqReservation(directory / "outbox-seq"),
        workload=bedside_nurse(CONFIRM_AT_ONCE),
    )


def _heparin(control_id: str, placer: str, rate: int) -> str:
    order = _order(control_id, placer)
    assert order.rate is not None
    return build_piv(_order(control_id, placer, rate=Quantity(Decimal(rate), order.rate.unit)))


def _received_audit(stack: Stack) -> list[str]:
    with stack.store.transaction() as session:
        entries = stack.store.ctx.audit(session).entries(0, 1000)
    return [
        str(e.details_dict().get("detail", ""))
        for e in entries
        if e.action == AuditAction.ORDER_RECEIVED
    ]


def test_an_order_is_checked_against_the_library_installed_on_the_pump(tmp_path: Path) -> None:
    """The pump runs an approved v1 whose ICU heparin hard limit is 30 units/kg/h; the
    configured (example) library allows 40. An order at 35 is refused by the server with the
    pump's limit, before any pre-fill, and the trail names the installed library."""
    ehr_port = _free_port()

    async def scenario() -> None:
        settings = _settings(ehr_port, CONFIRM_AT_ONCE)
        async with running_stack(tmp_path / "data", None, ehr=settings) as stack:
            installed = _approve(stack, _example(icu_heparin_hard_max=30))
            assert stack.ehr is not None
            assert installed.version == stack.ehr.library.version == 1  # same number, other limits
            ehr = FakeEhr(stack, ehr_port, tmp_path / "ehr")
            await ehr.server.start()
            pump = await _pump(stack, installed)
            task = asyncio.ensure_future(pump.run())
            try:
                await wait_stored(stack, "PUMP-0001", 1)
                assert (await ehr.order(stack, _heparin("EHR-1", "ORD-1", 35))).code is AckCode.CA
                rrg = await ehr.next_rrg()
                assert (rrg.code, rrg.app_errors) == (AckCode.AE, (AppError.HARD_LIMIT,))
                assert "configured library" not in rrg.errors[0].message
                view = await _order_view(stack, "ORD-1", OrderStatus.REFUSED, OrderStatus.FAILED)
                assert view.status is OrderStatus.REFUSED
                steps = {s.step: s.detail for s in view.trail}
                assert "prefill-sent" not in steps  # refused by the server, not by the pump
                installed_note = "checked against pumpguard-example v1, installed on PUMP-0001"
                assert installed_note in steps["received"]
                assert pump.firmware.awaiting_confirmation is False
            finally:
                await pump.stop()
                await task

    run(scenario(), 120)


def test_a_pump_library_the_server_does_not_hold_falls_back_and_says_so(tmp_path: Path) -> None:
    """The pump reports v7, which this server never approved: the order is checked against
    the configured library, and the audit and the refusal's reason (ERR-8) say so."""
    ehr_port = _free_port()

    async def scenario() -> None:
        settings = _settings(ehr_port, CONFIRM_AT_ONCE)
        async with running_stack(tmp_path / "data", None, ehr=settings) as stack:
            ehr = FakeEhr(stack, ehr_port, tmp_path / "ehr")
            await ehr.server.start()
            pump = await _pump(stack, parse_library(_example(version=7), "test library"))
            task = asyncio.ensure_future(pump.run())
            try:
                await wait_stored(stack, "PUMP-0001", 1)
                assert (await ehr.order(stack, _heparin("EHR-1", "ORD-1", 45))).code is AckCode.CA
                rrg = await ehr.next_rrg()
                assert (rrg.code, rrg.app_errors) == (AckCode.AE, (AppError.HARD_LIMIT,))
                fallback = (
                    "checked against the configured library pumpguard-example v1: PUMP-0001 "
                    "reports library v7 and there is no drug library v7"
                )
                assert fallback in rrg.errors[0].message
                assert any(fallback in detail for detail in _received_audit(stack))

                # an order the fallback library accepts is pre-filled, the trail still says how
                ack = await ehr.order(stack, _heparin("EHR-2", "ORD-2", 18))
                assert ack.code is AckCode.CA
                assert (await ehr.next_rrg()).code is AckCode.AA
                view = await _order_view(stack, "ORD-2", OrderStatus.CONFIRMED)
                received = next(s.detail for s in view.trail if s.step == "received")
                assert fallback in received
            finally:
                await pump.stop()
                await task

    run(scenario(), 120)
