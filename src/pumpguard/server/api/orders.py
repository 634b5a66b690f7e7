"""EHR order (auto-programming) endpoints: the orders the server received over MLLP and, for
one order, its trail from receipt to the pump's answer and the ``RRG^O16``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict

from pumpguard.server.api.deps import DbSession, Require, store_of
from pumpguard.server.authz import Permission
from pumpguard.server.orders import OrderService, OrderStatus, OrderView
from pumpguard.server.users import Principal

__all__ = ["OrderDetailOut", "OrderOut", "OrderStepOut", "router"]

router = APIRouter(prefix="/api/v1")

OrdersReader = Annotated[Principal, Depends(Require(Permission.ORDERS_READ))]
_MAX_ID = 2**31 - 1


class OrderOut(BaseModel):
    """One order; quantities are exact decimal strings, times milliseconds since the epoch."""

    model_config = ConfigDict(frozen=True)

    id: int
    status: OrderStatus
    control_id: str
    order_control: str
    placer_order_number: str
    placer_namespace: str
    sending_application: str
    sending_facility: str
    peer: str
    patient_id: str
    patient_name: str
    pump_id: str
    drug_code: str
    drug_name: str
    dose: str | None
    dose_unit: str | None
    rate_ml_h: str | None
    vtbi_ml: str | None
    weight_kg: str | None
    concentration: str | None
    care_area: str | None
    app_error: int | None
    reason: str
    ack_code: str | None
    order_time_ms: int
    received_at_ms: int
    prefilled_at_ms: int | None
    decided_at_ms: int | None
    acknowledged_at_ms: int | None


class OrderStepOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    at_ms: int
    step: str
    detail: str


class OrderDetailOut(OrderOut):
    """The order with the PIV message as received and its trail."""

    command_id: str | None
    message: str
    trail: list[OrderStepOut]


def _out(view: OrderView) -> OrderOut:
    fields = {name: getattr(view, name) for name in OrderOut.model_fields}
    return OrderOut(**fields)


@router.get("/orders", tags=["orders"])
def list_orders(
    request: Request,
    session: DbSession,
    _me: OrdersReader,
    pump_id: Annotated[str | None, Query(pattern=r"^[\x20-\x7e]{1,199}$")] = None,
    status: Annotated[OrderStatus | None, Query()] = None,
    after_id: Annotated[int, Query(ge=0, le=_MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[OrderOut]:
    """Orders in the order they arrived (page with ``after_id``: the last id seen)."""
    service = OrderService(session, store_of(request).ctx)
    views = service.list_orders(pump_id=pump_id, status=status, after_id=after_id, limit=limit)
    return [_out(v) for v in views]


@router.get("/orders/{order_id}", tags=["orders"])
def get_order(
    request: Request,
    session: DbSession,
    _me: OrdersReader,
    order_id: Annotated[int, Path(ge=1, le=_MAX_ID)],
) -> OrderDetailOut:
    """One order with its trail: received, checked, pre-filled, confirmed, edited or rejected
    at the pump, acknowledged to the EHR, and the pump's events reported for it."""
    view = OrderService(session, store_of(request).ctx).get(order_id)
    fields = {name: getattr(view, name) for name in OrderOut.model_fields}
    return OrderDetailOut(
        **fields,
        command_id=view.command_id,
        message=view.message,
        trail=[OrderStepOut(at_ms=s.at_ms, step=s.step, detail=s.detail) for s in view.trail],
    )
