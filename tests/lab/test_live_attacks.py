"""Live attacks against a real ``up --demo --demo-ehr-port`` stack: each is refused by the
control it aims at, on the wire or by the server's own check as stored, and the live monitor
stores the alert; the verdicts are read from the system, so a control that let an attack
through would fail these tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.server.runtime.support import run, running_stack, security_events
from tests.web.live import RunningStack

from pumpguard.clock import SystemClock
from pumpguard.lab.live_attacks import (
    LIVE_ATTACKS,
    LiveAttackError,
    LiveAttackResult,
    get_live_attack,
    launch_live,
)
from pumpguard.server.alert_store import AlertStore
from pumpguard.server.ingest import IngestService
from pumpguard.server.orders import OrderService
from pumpguard.server.runtime import Stack
from pumpguard.server.users import UserService


def _reported(stack: Stack) -> int:
    with stack.store.transaction() as session:
        return sum(1 for s in IngestService(session, stack.store.ctx).statuses() if s.online)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = RunningStack(tmp_path_factory.mktemp("live") / "data")
    try:
        stack = running.start()
        deadline = time.monotonic() + 60
        while _reported(stack) < 24 and time.monotonic() < deadline:
            time.sleep(0.2)  # the ward is up, as on a running demo
        yield stack
    finally:
        running.stop()


def _launch(stack: Stack, name: str) -> LiveAttackResult:
    """From this thread's own loop, as the dashboard's worker thread does."""
    return asyncio.run(launch_live(stack, name))


def _evidence(stack: Stack, result: LiveAttackResult) -> set[str]:
    with stack.store.transaction() as session:
        store = AlertStore(session, stack.store.ctx)
        return {e.code for a in result.alerts for e in store.get(a.alert_id).evidence}


def _rules(result: LiveAttackResult) -> set[str]:
    return {a.analytic_id for a in result.alerts}


def test_an_order_from_a_host_without_the_ehr_certificate_is_refused(live: Stack) -> None:
    result = _launch(live, "order-unauthenticated-host")
    assert result.target == f"mllps://127.0.0.1:{live.ehr.port if live.ehr else 0}"
    assert [s.blocked_by for s in result.steps] == ["mutual-tls", "mutual-tls"]
    assert all(s.answer.startswith("not delivered") for s in result.steps)
    assert "PG-TLS-001" in _rules(result)
    assert "pki.tls.unknown_ca" in _evidence(live, result)
    codes = {e.code for e in security_events(live) if e.time_ms >= result.started_ms}
    assert {"pki.tls.no_client_cert", "pki.tls.unknown_ca"} <= codes
    assert {"pki.tls.no_client_cert", "pki.tls.unknown_ca"} <= set(result.events)


def test_a_rogue_pump_is_refused_by_the_broker(live: Stack) -> None:
    result = _launch(live, "rogue-pump")
    assert result.blocked and result.steps[0].blocked_by == "mutual-tls"
    assert result.steps[0].sent.startswith("MQTT CONNECT as PUMP-0001")
    assert "PG-TLS-001" in _rules(result)
    assert "pki.tls.unknown_ca" in _evidence(live, result)


def test_an_insider_order_beyond_the_hard_limit_is_refused_9024(live: Stack) -> None:
    result = _launch(live, "order-beyond-hard-limit")
    (step,) = result.steps
    assert step.blocked_by == "order-check", step.answer
    assert step.code == "AE 9024", step.answer
    assert "ACK^O15 CA" in step.answer and "sent to the EHR" in step.answer
    assert _rules(result) == {"PG-HL7-003"}
    assert "interop.order.hard_limit" in _evidence(live, result)


def test_an_insider_order_naming_another_patient_is_refused_9012(live: Stack) -> None:
    result = _launch(live, "order-wrong-patient")
    (step,) = result.steps
    assert (step.blocked_by, step.code) == ("patient-match", "AE 9012"), step.answer
    assert "PG-HL7-002" in _rules(result)
    assert "interop.order.patient_mismatch" in _evidence(live, result)


def _ehr_orders(stack: Stack) -> int:
    with stack.store.transaction() as session:
        orders = OrderService(session, stack.store.ctx).list_orders(limit=1000)
    return sum(1 for o in orders if not o.control_id.startswith("ATK"))


def test_a_replayed_ehr_order_is_refused_9022(live: Stack) -> None:
    deadline = time.monotonic() + 60
    while _ehr_orders(live) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)  # the demo EHR sends its first order as soon as a pump is free
    result = _launch(live, "order-replay")
    (step,) = result.steps
    assert (step.blocked_by, step.code) == ("replay-memory", "AE 9022"), step.answer
    assert "already received" in step.answer
    assert "PG-HL7-002" in _rules(result)
    assert "interop.order.replayed" in _evidence(live, result)


def test_password_guessing_locks_the_account_and_alerts(live: Stack) -> None:
    result = _launch(live, "password-guessing")
    (step,) = result.steps
    assert step.blocked_by == "login-lockout", step.answer
    assert step.code == "HTTP 401" and "200" not in step.answer
    assert _rules(result) == {"PG-AUTH-001", "PG-AUTH-002"}
    with live.store.transaction() as session:
        admin = UserService(session, live.store.ctx).get_user("demo-admin")
    assert admin.locked_until_ms > SystemClock().now_ms()


def test_every_live_attack_names_its_lab_entry_or_none() -> None:
    from pumpguard.lab.attacks import CATALOGUE

    names = {a.name for a in CATALOGUE}
    for attack in LIVE_ATTACKS:
        if attack.lab_entry is not None:
            assert attack.lab_entry == attack.name and attack.name in names
    with pytest.raises(LiveAttackError, match="no live attack is called 'nope'"):
        get_live_attack("nope")


def test_attacks_a_stack_cannot_take_say_why(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path / "data", None) as stack:
            problems = {a.name: a.problem(stack) for a in LIVE_ATTACKS}
            assert problems["rogue-pump"] is None
            assert "no MLLP order listener" in str(problems["order-beyond-hard-limit"])
            with pytest.raises(LiveAttackError, match="no MLLP order listener"):
                await launch_live(stack, "order-replay")

    run(scenario(), 120)
