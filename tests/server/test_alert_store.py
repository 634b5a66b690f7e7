"""Alerts kept by the server: the monitor's book semantics, in the database, across restarts."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from tests.server.conftest import START_MS

from pumpguard.clock import VirtualClock
from pumpguard.monitor import AlertBook, AlertState, Detection
from pumpguard.security_events import Component, SecurityEvent, Severity
from pumpguard.server import InvalidInput, NotFound, ServerContext, Store
from pumpguard.server.alert_store import AlertQuery, AlertStore, AlertTransitionRefused
from pumpguard.server.models import AuditEntryRow

MIN = 60_000


def detection(
    clock: VirtualClock,
    analytic: str = "PG-LINK-001",
    device: str | None = "PUMP-0001",
    peer: str | None = None,
    severity: Severity = Severity.HIGH,
) -> Detection:
    event = SecurityEvent(
        time_ms=clock.now_ms(),
        component=Component.LINK,
        code="link.replay",
        severity=severity,
        message="replayed counter 41",
        device_id=device,
        peer=peer,
        attributes={"counter": "41"},
    )
    return Detection(
        analytic_id=analytic,
        title="Replayed frame",
        time_ms=clock.now_ms(),
        severity=severity,
        message="replayed counter 41",
        device_id=device,
        peer=peer,
        technique="T0855",
        evidence=(event,),
    )


def record(store: Store, d: Detection) -> str:
    with store.transaction() as session:
        return AlertStore(session, store.ctx).record(d).alert_id


def test_repeats_are_one_alert_and_related_alerts_one_incident(
    store: Store, clock: VirtualClock
) -> None:
    first = record(store, detection(clock))
    clock.advance(5 * MIN)
    assert record(store, detection(clock, severity=Severity.CRITICAL)) == first
    clock.advance(MIN)
    other = record(store, detection(clock, analytic="PG-LINK-002"))
    elsewhere = record(store, detection(clock, device="PUMP-0002"))
    with store.transaction() as session:
        alerts = AlertStore(session, store.ctx)
        a = alerts.get(first)
        assert (a.count, a.severity, a.state) == (2, Severity.CRITICAL, AlertState.NEW)
        assert [e.attributes["counter"] for e in a.evidence] == ["41", "41"]
        assert alerts.get(other).incident_id == a.incident_id
        assert alerts.get(elsewhere).incident_id != a.incident_id
        incident = alerts.incident(a.incident_id)
        assert incident.alert_ids == (first, other)
        assert incident.device_ids == {"PUMP-0001"}
        assert [i.incident_id for i in alerts.incidents()][-1] == a.incident_id


def test_life_cycle_is_audited_and_a_resolution_needs_a_note(
    store: Store, clock: VirtualClock
) -> None:
    alert_id = record(store, detection(clock))
    clock.advance(MIN)
    with store.transaction() as session:
        alerts = AlertStore(session, store.ctx)
        with pytest.raises(InvalidInput, match="note"):
            alerts.resolve(alert_id, "ana", "   ")
        alerts.acknowledge(alert_id, "ana", "looking")
        with pytest.raises(AlertTransitionRefused, match="acknowledged"):
            alerts.acknowledge(alert_id, "ana")
        done = alerts.resolve(alert_id, "ana", "pump replaced, old key revoked")
        with pytest.raises(NotFound):
            alerts.get("ALR-999999")
    assert [(c.state, c.actor) for c in done.history] == [
        (AlertState.NEW, "monitor"),
        (AlertState.ACKNOWLEDGED, "ana"),
        (AlertState.RESOLVED, "ana"),
    ]
    with store.transaction() as session:
        audit = [
            (r.action, r.actor, r.subject)
            for r in session.scalars(select(AuditEntryRow).order_by(AuditEntryRow.seq))
        ]
    assert audit == [
        ("alert.acknowledged", "ana", f"alert:{alert_id}"),
        ("alert.resolved", "ana", f"alert:{alert_id}"),
    ]
    clock.advance(MIN)
    assert record(store, detection(clock)) != alert_id  # a resolved alert is not reopened


def test_alerts_survive_a_restart_and_numbering_continues(
    db_url: str, ctx: ServerContext, clock: VirtualClock
) -> None:
    first = Store.open(db_url, ctx, migrate=False)
    try:
        kept = record(first, detection(clock))
        with first.transaction() as session:
            AlertStore(session, first.ctx).acknowledge(kept, "ana")
    finally:
        first.close()
    clock.advance(MIN)
    second = Store.open(db_url, ctx, migrate=False)
    try:
        assert record(second, detection(clock)) == kept  # still open: de-duplicated
        new = record(second, detection(clock, device="PUMP-0009"))
        with second.transaction() as session:
            alerts = AlertStore(session, second.ctx)
            assert alerts.get(kept).count == 2
            assert alerts.get(kept).state is AlertState.ACKNOWLEDGED
    finally:
        second.close()
    assert new == "ALR-000002"


def test_filters(store: Store, clock: VirtualClock) -> None:
    record(store, detection(clock, severity=Severity.MEDIUM))
    clock.advance(MIN)
    since = clock.now_ms()
    high = record(store, detection(clock, analytic="PG-TLS-001", device="PUMP-0002"))
    with store.transaction() as session:
        alerts = AlertStore(session, store.ctx)

        def ids(**kw: object) -> list[str]:
            return [a.alert_id for a in alerts.search(AlertQuery(**kw))]  # type: ignore[arg-type]

        assert ids(min_severity=Severity.HIGH) == [high]
        assert ids(analytic_id="PG-TLS-001") == [high]
        assert ids(device_id="PUMP-0002") == [high]
        assert ids(since_ms=since) == [high]
        assert ids(state=AlertState.RESOLVED) == []
        assert len(ids()) == 2
        with pytest.raises(InvalidInput):
            alerts.search(AlertQuery(device_id="PUMP\x00"))


_analytics = st.sampled_from(["PG-LINK-001", "PG-LINK-002"])
_devices = st.sampled_from(["PUMP-0001", "PUMP-0002", None])
_peers = st.sampled_from(["aa:bb", None])
_steps = st.lists(
    st.tuples(st.integers(0, 45), _analytics, _devices, _peers, st.booleans()),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=_steps)
def test_the_store_decides_exactly_as_the_monitor_book(
    migrated_sqlite: Path,
    tmp_path_factory: pytest.TempPathFactory,
    ctx: ServerContext,
    steps: list[tuple[int, str, str | None, str | None, bool]],
) -> None:
    """The same detections and resolutions give the same alerts, counts and incidents."""
    target = tmp_path_factory.mktemp("book") / "pumpguard.db"
    shutil.copyfile(migrated_sqlite, target)
    clock = VirtualClock(START_MS)
    store = Store.open(f"sqlite:///{target}", dataclasses.replace(ctx, clock=clock), migrate=False)
    book = AlertBook()
    try:
        for minutes, analytic, device, peer, resolve in steps:
            clock.advance(minutes * MIN)
            d = detection(clock, analytic, device, peer)
            expected = book.record(d)
            with store.transaction() as session:
                alerts = AlertStore(session, store.ctx)
                got = alerts.record(d)
                if resolve:
                    alerts.resolve(got.alert_id, "ana", "seen")
            if resolve:
                book.resolve(expected.alert_id, actor="ana", time_ms=clock.now_ms(), note="seen")
            assert (got.alert_id, got.count, got.incident_id, got.severity) == (
                expected.alert_id,
                expected.count,
                expected.incident_id,
                expected.severity,
            )
        with store.transaction() as session:
            alerts = AlertStore(session, store.ctx)
            for incident in book.incidents():
                assert alerts.incident(incident.incident_id) == incident
    finally:
        store.close()
