"""The Infusion Order Consumer's message logic, without sockets: what to answer to each PIV
frame on the same connection, and which application acknowledgement to send later.

``pumpguard up`` wires this between an ``MllpServer`` and the pump server; keeping it free of
I/O lets the lab drive it in virtual time and the tests check every answer exactly.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime

from pumpguard.clock import Clock, SystemClock
from pumpguard.interop._er7 import recover_control_id
from pumpguard.interop.acks import Responder, build_accept_ack, build_app_ack, error_detail
from pumpguard.interop.codes import (
    AckCode,
    AppError,
    ErrorSeverity,
    Hl7ErrorCode,
    InteropEvent,
)
from pumpguard.interop.errors import Hl7Error
from pumpguard.interop.mllp import FrameProblem, FrameProblemKind
from pumpguard.interop.models import AckMode, AppErrorDetail, InfusionOrder
from pumpguard.interop.order_check import OrderVerdict
from pumpguard.interop.piv import parse_piv
from pumpguard.security_events import Component, SecurityEvent, SecurityEventSink, Severity

__all__ = ["PivReceiver", "Reception"]


@dataclass(frozen=True, slots=True)
class Reception:
    """The answer to one received frame: the ``ACK^O15`` and, if it was a PIV order, the order."""

    ack: str
    order: InfusionOrder | None = None
    error: Hl7Error | None = None


_SEVERITY = {
    InteropEvent.MALFORMED: Severity.MEDIUM,
    InteropEvent.OVERSIZED_FRAME: Severity.MEDIUM,
    InteropEvent.GARBAGE: Severity.LOW,
    InteropEvent.REPLAYED: Severity.HIGH,
    InteropEvent.STALE: Severity.MEDIUM,
    InteropEvent.PATIENT_MISMATCH: Severity.HIGH,
    InteropEvent.HARD_LIMIT: Severity.HIGH,
}


class PivReceiver:
    """Turns frames into acknowledgements and security events; holds only an id counter."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        responder: Responder | None = None,
        events: SecurityEventSink | None = None,
        id_prefix: str = "PG",
    ) -> None:
        self._clock = clock or SystemClock()
        self._responder = responder or Responder()
        self._events = events
        self._prefix = id_prefix
        self._counter = itertools.count(1)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now_ms() / 1000, tz=UTC)

    def next_control_id(self) -> str:
        return f"{self._prefix}{self._clock.now_ms()}.{next(self._counter)}"

    def emit(
        self,
        code: InteropEvent,
        message: str,
        *,
        peer: str | None = None,
        device_id: str | None = None,
        attributes: dict[str, str] | None = None,
    ) -> None:
        if self._events is None:
            return
        self._events.emit(
            SecurityEvent(
                time_ms=self._clock.now_ms(),
                component=Component.INTEROP,
                code=code,
                severity=_SEVERITY.get(code, Severity.MEDIUM),
                message=message,
                device_id=device_id,
                peer=peer,
                attributes=attributes or {},
            )
        )

    def receive(self, text: str, peer: str | None = None) -> Reception:
        """Parse one frame as a PIV order: CA with the order, or CE/CR with the error."""
        reception = self.parse(text, peer)
        if reception.order is None:
            return reception
        return Reception(self.accept_ack(reception.order), reception.order)

    def parse(self, text: str, peer: str | None = None) -> Reception:
        """``receive`` without building the CA: the order (and an empty ``ack``, to be built
        by ``accept_ack`` once the order is kept), or the CE/CR answer with the error. The
        server uses it to start the order's work before the acknowledgement is written."""
        try:
            order = parse_piv(text)
        except Hl7Error as error:
            self.emit(
                InteropEvent.MALFORMED,
                f"PIV message refused ({error.commit_code}): {error}",
                peer=peer,
                attributes={
                    "hl7_error": str(int(error.code)),
                    "control_id": error.control_id or "",
                },
            )
            return Reception(self._reject(error), None, error)
        return Reception("", order)

    def accept_ack(self, order: InfusionOrder) -> str:
        """The ``ACK^O15`` CA for an order that was parsed and kept."""
        return build_accept_ack(
            AckCode.CA,
            order.control_id,
            control_id=self.next_control_id(),
            now=self._now(),
            responder=self._responder.to(order.header),
        )

    def _reject(self, error: Hl7Error) -> str:
        return build_accept_ack(
            error.commit_code,
            error.control_id,
            control_id=self.next_control_id(),
            now=self._now(),
            responder=self._responder,
            errors=(error_detail(error),),
        )

    def answer_problem(self, problem: FrameProblem, peer: str | None = None) -> str | None:
        """A broken frame: CR when its MSH-10 can be recovered, nothing otherwise (there is no
        message to acknowledge); always a security event."""
        code = {
            FrameProblemKind.OVERSIZED: InteropEvent.OVERSIZED_FRAME,
            FrameProblemKind.GARBAGE: InteropEvent.GARBAGE,
            FrameProblemKind.TRUNCATED: InteropEvent.MALFORMED,
        }[problem.kind]
        self.emit(code, f"MLLP stream problem: {problem.detail}", peer=peer)
        control_id = recover_control_id(problem.prefix_text) if problem.prefix else None
        if control_id is None:
            return None
        error = Hl7Error(
            problem.detail,
            Hl7ErrorCode.INTERNAL_ERROR,
            reject=True,
            control_id=control_id,
        )
        return self._reject(error)

    def application_ack(
        self, order: InfusionOrder, verdict: OrderVerdict, peer: str | None = None
    ) -> str | None:
        """The ``RRG^O16`` for a checked order, or None when MSH-16 asked not to get one."""
        for event in verdict.events:
            self.emit(
                event,
                f"order {order.placer_order_number} for pump {order.pump_id}: "
                f"{verdict.finding.message if verdict.finding else 'accepted'}",
                peer=peer,
                device_id=order.pump_id,
                attributes={"control_id": order.control_id, "placer": order.placer_order_number},
            )
        if not AckMode.of(order.header.application_ack).wants(verdict.accepted):
            return None
        return build_app_ack(
            verdict.code,
            order.control_id,
            control_id=self.next_control_id(),
            now=self._now(),
            responder=self._responder.to(order.header),
            errors=verdict.details(),
            placer_order_number=order.placer_order_number,
            patient_id=order.patient_id,
        )

    def outcome_ack(
        self, order: InfusionOrder, refusal: AppError | None, message: str = ""
    ) -> str | None:
        """The ``RRG^O16`` once the pump has answered: AA, or AR/AE with the pump's reason
        (9023 when the clinician rejected the programme at the pump)."""
        accepted = refusal is None
        if not AckMode.of(order.header.application_ack).wants(accepted):
            return None
        errors: tuple[AppErrorDetail, ...] = ()
        code = AckCode.AA
        if refusal is not None:
            code = AckCode.AR if refusal.rejects else AckCode.AE
            detail = AppErrorDetail(
                Hl7ErrorCode.INTERNAL_ERROR, ErrorSeverity.ERROR, refusal, message or refusal.text
            )
            errors = (detail,)
        return build_app_ack(
            code,
            order.control_id,
            control_id=self.next_control_id(),
            now=self._now(),
            responder=self._responder.to(order.header),
            errors=errors,
            placer_order_number=order.placer_order_number,
            patient_id=order.patient_id,
        )
