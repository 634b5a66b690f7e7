"""The order consumer's answers without sockets: ACK^O15, RRG^O16 and the security events."""

from __future__ import annotations

from dataclasses import replace

from tests.interop.messages import NOW, header, library, order, piv
from tests.interop.test_order_check import PUMPS

from pumpguard.clock import VirtualClock
from pumpguard.interop import (
    AckCode,
    AppError,
    FrameProblem,
    FrameProblemKind,
    Hl7ErrorCode,
    InteropEvent,
    OrderContext,
    PivReceiver,
    check_order,
    parse_ack,
)
from pumpguard.security_events import Component, SecurityEventLog


def _receiver() -> tuple[PivReceiver, SecurityEventLog]:
    events = SecurityEventLog()
    return PivReceiver(clock=VirtualClock(1_795_000_000_000), events=events), events


def test_a_good_order_is_committed_and_handed_over() -> None:
    receiver, events = _receiver()
    reception = receiver.receive(piv())
    assert reception.order is not None and reception.error is None
    ack = parse_ack(reception.ack)
    assert (ack.code, ack.acknowledged_id) == (AckCode.CA, "EHR-0001")
    assert len(events) == 0


def test_a_wrong_version_is_rejected_and_logged() -> None:
    receiver, events = _receiver()
    reception = receiver.receive(piv(version="2.5"))
    assert reception.order is None
    ack = parse_ack(reception.ack)
    assert (ack.code, ack.acknowledged_id) == (AckCode.CR, "EHR-0001")
    assert ack.errors[0].code is Hl7ErrorCode.UNSUPPORTED_VERSION
    (event,) = events.with_code(InteropEvent.MALFORMED)
    assert event.component is Component.INTEROP
    assert event.attributes["hl7_error"] == "203"


def test_garbage_gets_a_reject_without_a_control_id() -> None:
    receiver, _ = _receiver()
    ack = parse_ack(receiver.receive("\x00\x01 not hl7").ack)
    assert (ack.code, ack.acknowledged_id) == (AckCode.CR, "")


def test_each_ack_has_its_own_control_id() -> None:
    receiver, _ = _receiver()
    ids = {parse_ack(receiver.receive(piv()).ack).control_id for _ in range(3)}
    assert len(ids) == 3


def test_frame_problems_are_answered_only_when_a_control_id_is_known() -> None:
    receiver, events = _receiver()
    garbage = FrameProblem(FrameProblemKind.GARBAGE, "12 byte(s) dropped")
    assert receiver.answer_problem(garbage) is None
    oversized = FrameProblem(FrameProblemKind.OVERSIZED, "too big", piv().encode()[:300])
    reply = receiver.answer_problem(oversized)
    assert reply is not None
    assert (parse_ack(reply).code, parse_ack(reply).acknowledged_id) == (AckCode.CR, "EHR-0001")
    assert events.codes() == {InteropEvent.GARBAGE, InteropEvent.OVERSIZED_FRAME}


def test_application_ack_follows_the_verdict_and_msh16() -> None:
    receiver, events = _receiver()
    context = OrderContext(PUMPS, library(), NOW)
    good = order()
    rrg = receiver.application_ack(good, check_order(good, context))
    assert rrg is not None and parse_ack(rrg).code is AckCode.AA
    stale = check_order(good, replace(context, seen_control_ids=frozenset({"EHR-0001"})))
    rrg = receiver.application_ack(good, stale, peer="ehr:ehr-main")
    assert rrg is not None
    ack = parse_ack(rrg)
    assert (ack.code, ack.app_errors) == (AckCode.AE, (AppError.STALE_ORDER,))
    assert ack.errors[0].code is Hl7ErrorCode.DUPLICATE_KEY
    (event,) = events.with_code(InteropEvent.REPLAYED)
    assert event.peer == "ehr:ehr-main" and event.device_id == "PUMP-0001"
    errors_only = order(header=header(application_ack="ER"))
    assert receiver.application_ack(errors_only, check_order(errors_only, context)) is None
    never = order(header=header(application_ack="NE"))
    assert receiver.application_ack(never, stale) is None


def test_outcome_ack_reports_a_rejection_at_the_pump() -> None:
    receiver, _ = _receiver()
    rrg = receiver.outcome_ack(order(), AppError.REJECTED_BY_USER)
    assert rrg is not None
    ack = parse_ack(rrg)
    assert (ack.code, ack.app_errors) == (AckCode.AR, (AppError.REJECTED_BY_USER,))
    accepted = receiver.outcome_ack(order(), None)
    assert accepted is not None and parse_ack(accepted).code is AckCode.AA
