"""The order store (replay keys kept by the database, the trail, the audit chain) and the orders
API as a client sees it."""

from __future__ import annotations

from dataclasses import replace

from fastapi.testclient import TestClient
from tests.interop.messages import NOW, library
from tests.interop.messages import order as make_order
from tests.server.test_http_api import as_role

from pumpguard.clinical import PumpKind
from pumpguard.clock import VirtualClock
from pumpguard.interop import (
    InfusionOrder,
    OrderContext,
    PumpStatus,
    build_piv,
    check_order,
)
from pumpguard.server import Role, Store
from pumpguard.server.orders import OrderService, OrderStatus, OrderStep

PUMP = PumpStatus("PUMP-0001", PumpKind.LVP, care_area="ICU")


def _order(control_id: str, placer: str) -> InfusionOrder:
    base = make_order()
    return replace(
        base, header=replace(base.header, control_id=control_id), placer_order_number=placer
    )


def _keep(server: Store, order: InfusionOrder) -> tuple[int, bool, bool]:
    """Record and check one order as the gateway does; (id, replayed, accepted)."""
    with server.transaction() as session:
        service = OrderService(session, server.ctx)
        stored = service.record(order, build_piv(order), "ehr:EHR-1")
        seen = service.placer_seen(order)
        context = OrderContext(
            {"PUMP-0001": PUMP},
            library(),
            NOW,
            seen_control_ids=frozenset({order.control_id}) if stored.replayed else frozenset(),
            seen_placer_orders=frozenset({order.placer_order_number}) if seen else frozenset(),
        )
        accepted = service.checked(stored.order_id, order, check_order(order, context))
        return stored.order_id, stored.replayed, accepted


def test_message_ids_and_new_order_numbers_are_used_once(server: Store) -> None:
    first, replayed, accepted = _keep(server, _order("EHR-1", "ORD-1"))
    assert (replayed, accepted) == (False, True)
    again, replayed, accepted = _keep(server, _order("EHR-1", "ORD-1"))
    assert (replayed, accepted) == (True, False)
    same_number, replayed, accepted = _keep(server, _order("EHR-2", "ORD-1"))
    assert (replayed, accepted) == (False, False)  # a new message, but the same new bag
    _, replayed, accepted = _keep(server, _order("EHR-3", "ORD-3"))
    assert (replayed, accepted) == (False, True)
    with server.transaction() as session:
        service = OrderService(session, server.ctx)
        views = {v.id: v for v in service.list_orders()}
        trail = [s.step for s in service.get(again).trail]
    assert views[first].status is OrderStatus.PREFILLING
    assert (views[again].status, views[again].app_error) == (OrderStatus.REFUSED, 9022)
    assert (views[same_number].status, views[same_number].app_error) == (
        OrderStatus.REFUSED,
        9022,
    )
    assert trail == [OrderStep.RECEIVED, OrderStep.REPLAY, OrderStep.REFUSED]


def test_a_refused_order_does_not_use_up_its_number(server: Store) -> None:
    """An AE order can be corrected and sent again (HL7 v2.6 2.9.2) under the same number."""
    hard = _order("EHR-1", "ORD-1")
    hard = replace(hard, rate=replace(hard.rate, value=hard.rate.value * 3))  # type: ignore[arg-type,union-attr]
    _, _, accepted = _keep(server, hard)
    assert not accepted
    _, _, accepted = _keep(server, _order("EHR-2", "ORD-1"))
    assert accepted


def test_the_orders_api_lists_and_shows_one_order_with_its_trail(
    server: Store, client: TestClient, clock: VirtualClock
) -> None:
    order_id, _, _ = _keep(server, _order("EHR-1", "ORD-1"))
    _keep(server, _order("EHR-1", "ORD-1"))
    nurse = as_role(server, client, clock, Role.NURSE)
    listed = client.get("/api/v1/orders", headers=nurse)
    assert listed.status_code == 200, listed.text
    rows = listed.json()
    assert [(r["control_id"], r["status"]) for r in rows] == [
        ("EHR-1", "prefilling"),
        ("EHR-1", "refused"),
    ]
    assert rows[0]["patient_id"] == "MRN-4711" and rows[0]["pump_id"] == "PUMP-0001"
    assert rows[0]["vtbi_ml"] == "250" and rows[0]["drug_code"] == "HEP-25K-250"
    refused = client.get("/api/v1/orders", params={"status": "refused"}, headers=nurse).json()
    assert [r["app_error"] for r in refused] == [9022]
    one = client.get(f"/api/v1/orders/{order_id}", headers=nurse)
    assert one.status_code == 200
    body = one.json()
    assert [s["step"] for s in body["trail"]] == ["received", "checked"]
    assert body["message"].startswith("MSH|^~\\&|")
    assert client.get("/api/v1/orders/999", headers=nurse).status_code == 404
    assert client.get("/api/v1/orders/0", headers=nurse).status_code == 422
    assert (
        client.get("/api/v1/orders", params={"pump_id": "\x00"}, headers=nurse).status_code == 422
    )
    biomed = as_role(server, client, clock, Role.BIOMED)
    assert client.get("/api/v1/orders", headers=biomed).status_code == 403
    with server.transaction() as session:
        actions = [e.action for e in server.ctx.audit(session).entries(0, 1000)]
    assert actions.count("order.received") == 2 and "order.refused" in actions
