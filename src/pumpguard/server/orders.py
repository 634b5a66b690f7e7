"""EHR orders kept by the server: each PIV order, its replay keys and its trail.

An order is stored *before* its ``ACK^O15`` CA leaves (enhanced mode: CA means the server took
responsibility for it). What makes an order a replay is decided by the database, through the
unique hashes of its message id (per sending application and facility) and, once it passed the
checks, of its new-container placer order number, so a restart or a second server worker
forgets nothing. Every step is also appended to the audit chain, the order-to-confirmation
trail an investigation starts from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from pumpguard.interop import InfusionOrder, OrderVerdict
from pumpguard.server._sql import insert_rows_ignoring_conflicts
from pumpguard.server.audit import AuditAction
from pumpguard.server.context import ServerContext
from pumpguard.server.errors import NotFound
from pumpguard.server.models import EhrOrderKeyRow, EhrOrderRow, EhrOrderStepRow

__all__ = [
    "OPEN_STATUSES",
    "ORDERS_ACTOR",
    "OrderService",
    "OrderStatus",
    "OrderStep",
    "OrderStepView",
    "OrderView",
    "StoredOrder",
]

ORDERS_ACTOR = "pumpguard-orders"
_MAX_DETAIL = 2000


class OrderStatus(StrEnum):
    """Where an order stands; ``prefilling``/``prefilled`` are the open ones."""

    RECEIVED = "received"
    REFUSED = "refused"
    PREFILLING = "prefilling"
    PREFILLED = "prefilled"
    CONFIRMED = "confirmed"
    EDITED = "edited"
    REJECTED = "rejected"
    FAILED = "failed"


OPEN_STATUSES = frozenset({OrderStatus.RECEIVED, OrderStatus.PREFILLING, OrderStatus.PREFILLED})


class OrderStep(StrEnum):
    """One line of an order's trail; a published step name is never renamed."""

    RECEIVED = "received"
    REPLAY = "replay"
    CHECKED = "checked"
    REFUSED = "refused"
    PREFILL_SENT = "prefill-sent"
    PREFILLED = "prefilled"
    PREFILL_REFUSED = "prefill-refused"
    EDITED_AT_PUMP = "edited-at-pump"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    FAILED = "failed"
    RRG_SENT = "rrg-sent"
    RRG_FAILED = "rrg-failed"
    EVENT_SENT = "event-sent"


_AUDITED = {
    OrderStep.RECEIVED: AuditAction.ORDER_RECEIVED,
    OrderStep.REPLAY: AuditAction.ORDER_REFUSED,
    OrderStep.REFUSED: AuditAction.ORDER_REFUSED,
    OrderStep.PREFILLED: AuditAction.ORDER_PREFILLED,
    OrderStep.PREFILL_REFUSED: AuditAction.ORDER_FAILED,
    OrderStep.EDITED_AT_PUMP: AuditAction.ORDER_EDITED,
    OrderStep.CONFIRMED: AuditAction.ORDER_CONFIRMED,
    OrderStep.REJECTED: AuditAction.ORDER_REJECTED,
    OrderStep.FAILED: AuditAction.ORDER_FAILED,
    OrderStep.RRG_SENT: AuditAction.ORDER_ACKNOWLEDGED,
}


@dataclass(frozen=True, slots=True)
class StoredOrder:
    """The order as stored at receipt; ``replayed`` when its message id was seen before."""

    order_id: int
    replayed: bool


@dataclass(frozen=True, slots=True)
class OrderStepView:
    at_ms: int
    step: str
    detail: str


@dataclass(frozen=True, slots=True)
class OrderView:
    """Everything known about one order (what a FHIR MedicationRequest needs, too)."""

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
    command_id: str | None
    order_time_ms: int
    received_at_ms: int
    prefilled_at_ms: int | None
    decided_at_ms: int | None
    acknowledged_at_ms: int | None
    message: str
    trail: tuple[OrderStepView, ...] = ()


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _key(kind: str, *parts: str) -> str:
    return hashlib.sha256("\x00".join((kind, *parts)).encode("utf-8")).hexdigest()


def message_key(order: InfusionOrder) -> str:
    header = order.header
    return _key("msh", header.sending_application, header.sending_facility, order.control_id)


def placer_key(order: InfusionOrder) -> str:
    return _key("placer", order.placer_namespace, order.placer_order_number)


def _view(row: EhrOrderRow, trail: Sequence[EhrOrderStepRow] = ()) -> OrderView:
    return OrderView(
        id=row.id,
        status=OrderStatus(row.status),
        control_id=row.control_id,
        order_control=row.order_control,
        placer_order_number=row.placer_order_number,
        placer_namespace=row.placer_namespace,
        sending_application=row.sending_application,
        sending_facility=row.sending_facility,
        peer=row.peer,
        patient_id=row.patient_id,
        patient_name=row.patient_name,
        pump_id=row.pump_id,
        drug_code=row.drug_code,
        drug_name=row.drug_name,
        dose=row.dose,
        dose_unit=row.dose_unit,
        rate_ml_h=row.rate_ml_h,
        vtbi_ml=row.vtbi_ml,
        weight_kg=row.weight_kg,
        concentration=row.concentration,
        care_area=row.care_area,
        app_error=row.app_error,
        reason=row.reason,
        ack_code=row.ack_code,
        command_id=row.command_id,
        order_time_ms=row.order_time_ms,
        received_at_ms=row.received_at_ms,
        prefilled_at_ms=row.prefilled_at_ms,
        decided_at_ms=row.decided_at_ms,
        acknowledged_at_ms=row.acknowledged_at_ms,
        message=row.message,
        trail=tuple(OrderStepView(s.at_ms, s.step, s.detail) for s in trail),
    )


class OrderService:
    """The order store's one door; every write also lands in the audit chain."""

    def __init__(self, session: Session, ctx: ServerContext) -> None:
        self._session = session
        self._ctx = ctx

    def _now(self) -> int:
        return self._ctx.clock.now_ms()

    def _row(self, order_id: int) -> EhrOrderRow:
        row = self._session.get(EhrOrderRow, order_id)
        if row is None:
            raise NotFound(f"no order {order_id}")
        return row

    def _claim(self, key_hash: str, kind: str, order_id: int) -> bool:
        inserted = insert_rows_ignoring_conflicts(
            self._session,
            _table(EhrOrderKeyRow),
            [{"key_hash": key_hash, "kind": kind, "order_id": order_id}],
            ["key_hash"],
            returning=("key_hash",),
        )
        return bool(inserted)

    def record(
        self, order: InfusionOrder, text: str, peer: str, library_note: str = ""
    ) -> StoredOrder:
        """Store a PIV order that parsed; claim its message id (a replay when taken).
        ``library_note`` (which drug library the order is checked against, and why) goes into
        the audited ``received`` step, so the audit tells a check against a fallback library."""
        drug = order.drug
        name = " ".join(p for p in (order.patient_given, order.patient_family) if p)
        row = EhrOrderRow(
            received_at_ms=self._now(),
            peer=peer,
            control_id=order.control_id,
            sending_application=order.header.sending_application,
            sending_facility=order.header.sending_facility,
            order_control=str(order.control),
            placer_order_number=order.placer_order_number,
            placer_namespace=order.placer_namespace,
            patient_id=order.patient_id,
            patient_name=name,
            pump_id=order.pump_id,
            drug_code=drug.identifier,
            drug_name=drug.text,
            dose=_decimal(order.rate.value if order.rate else None),
            dose_unit=None
            if order.rate is None or order.rate.unit is None
            else str(order.rate.unit),
            vtbi_ml=_decimal(order.volume.value if order.volume else None),
            weight_kg=_decimal(order.weight.value if order.weight else None),
            care_area=order.care_area,
            order_time_ms=int(order.order_time.timestamp() * 1000),
            status=OrderStatus.RECEIVED,
            reason="",
            message=text,
        )
        self._session.add(row)
        self._session.flush()
        fresh = self._claim(message_key(order), "message", row.id)
        detail = f"from {peer}: {order.control_id}"
        if library_note:
            detail = f"{detail}; {library_note}"
        self._step(row, OrderStep.RECEIVED, detail, actor=peer)
        if not fresh:
            self._step(row, OrderStep.REPLAY, f"message id {order.control_id} was seen before")
        return StoredOrder(row.id, not fresh)

    def placer_seen(self, order: InfusionOrder) -> bool:
        found = self._session.get(EhrOrderKeyRow, placer_key(order))
        return found is not None

    def checked(self, order_id: int, order: InfusionOrder, verdict: OrderVerdict) -> bool:
        """Record the check; an accepted new-container order claims its placer number.
        False when that number was taken meanwhile (a replay racing its original)."""
        row = self._row(order_id)
        finding = verdict.finding
        if finding is not None:
            self._refuse(row, int(finding.app_error), finding.message)
            return False
        if order.control.value == "RE" and not self._claim(placer_key(order), "placer", row.id):
            self._refuse(row, 9022, f"order {order.placer_order_number} was already received")
            return False
        programme = verdict.programme
        if programme is not None:
            row.dose = _decimal(getattr(programme, "dose", None)) or row.dose
            row.dose_unit = getattr(programme, "dose_unit", None) or row.dose_unit
            row.care_area = programme.care_area
            row.weight_kg = _decimal(programme.weight_kg)
            row.vtbi_ml = _decimal(programme.vtbi_ml)
            if programme.concentration is not None:
                c = programme.concentration
                row.concentration = f"{c.amount:f} {c.unit} in {c.volume_ml:f} mL"
            row.drug_code = programme.drug if not row.drug_code else row.drug_code
        if verdict.ders is not None and verdict.ders.entry is not None:
            row.drug_name = verdict.ders.entry.name
        row.status = OrderStatus.PREFILLING
        soft = " (soft limit: the clinician must give a reason)" if verdict.needs_override else ""
        self._step(row, OrderStep.CHECKED, f"accepted by the server checks{soft}")
        return True

    def _refuse(self, row: EhrOrderRow, app_error: int, reason: str) -> None:
        row.status = OrderStatus.REFUSED
        row.app_error = app_error
        row.reason = reason[:_MAX_DETAIL]
        row.decided_at_ms = self._now()
        self._step(row, OrderStep.REFUSED, f"{app_error}: {reason}")

    def set_rate(self, order_id: int, rate_ml_h: Decimal) -> None:
        self._row(order_id).rate_ml_h = _decimal(rate_ml_h)

    def prefill_sent(self, order_id: int, command_id: str) -> None:
        row = self._row(order_id)
        row.command_id = command_id
        self._step(row, OrderStep.PREFILL_SENT, f"command {command_id}")

    def prefilled(self, order_id: int, detail: str, at_ms: int) -> None:
        """``at_ms`` is when the pump pre-filled (its acknowledgement's own time), never
        before the order arrived nor after now; the trail step keeps when the server learnt
        it."""
        row = self._row(order_id)
        row.status = OrderStatus.PREFILLED
        row.prefilled_at_ms = max(row.received_at_ms, min(at_ms, self._now()))
        self._step(row, OrderStep.PREFILLED, detail, actor=f"pump:{row.pump_id}")

    def finish(
        self,
        order_id: int,
        status: OrderStatus,
        step: OrderStep,
        detail: str,
        *,
        app_error: int | None = None,
        actor: str | None = None,
    ) -> None:
        """The pump's (or the clinician's) answer: confirmed, edited, rejected or failed."""
        row = self._row(order_id)
        row.status = status
        row.decided_at_ms = self._now()
        if app_error is not None:
            row.app_error = app_error
            row.reason = detail[:_MAX_DETAIL]
        self._step(row, step, detail, actor=actor)

    def note(self, order_id: int, step: OrderStep, detail: str) -> None:
        self._step(self._row(order_id), step, detail)

    def acknowledged(self, order_id: int, ack_code: str, detail: str) -> None:
        row = self._row(order_id)
        row.ack_code = ack_code
        row.acknowledged_at_ms = self._now()
        self._step(row, OrderStep.RRG_SENT, f"RRG^O16 {ack_code}: {detail}")

    def _step(
        self, row: EhrOrderRow, step: OrderStep, detail: str, *, actor: str | None = None
    ) -> None:
        text = detail[:_MAX_DETAIL]
        self._session.add(
            EhrOrderStepRow(order_id=row.id, at_ms=self._now(), step=step, detail=text)
        )
        action = _AUDITED.get(step)
        if action is not None:
            self._ctx.audit(self._session).append(
                action,
                (actor or ORDERS_ACTOR)[:64],
                f"order:{row.id}",
                {
                    "pump": row.pump_id[:64],
                    "placer": row.placer_order_number[:64],
                    "control_id": row.control_id[:64],
                    "patient": row.patient_id[:64],
                    "detail": text[:500],
                },
            )

    # -- reading --------------------------------------------------------------------------

    def get(self, order_id: int) -> OrderView:
        row = self._row(order_id)
        trail = self._session.scalars(
            select(EhrOrderStepRow)
            .where(EhrOrderStepRow.order_id == order_id)
            .order_by(EhrOrderStepRow.id)
        ).all()
        return _view(row, trail)

    def list_orders(
        self,
        *,
        pump_id: str | None = None,
        status: OrderStatus | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[OrderView]:
        """Orders by id (pass the last id seen as ``after_id``), without their trails."""
        query = select(EhrOrderRow).where(EhrOrderRow.id > after_id)
        if pump_id is not None:
            query = query.where(EhrOrderRow.pump_id == pump_id)
        if status is not None:
            query = query.where(EhrOrderRow.status == str(status))
        query = query.order_by(EhrOrderRow.id).limit(limit)
        return [_view(row) for row in self._session.scalars(query)]

    def open_orders(self, pump_id: str | None = None) -> list[OrderView]:
        query = select(EhrOrderRow).where(EhrOrderRow.status.in_([str(s) for s in OPEN_STATUSES]))
        if pump_id is not None:
            query = query.where(EhrOrderRow.pump_id == pump_id)
        return [_view(row) for row in self._session.scalars(query.order_by(EhrOrderRow.id))]


def _table(model: type[object]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table
