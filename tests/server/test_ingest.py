"""Event ingestion: exactly once per (device, seq), whatever the pumps resend."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from pumpguard.clock import VirtualClock
from pumpguard.security_events import SecurityEventLog
from pumpguard.server import (
    AssetKind,
    AssetService,
    AssetState,
    EventRecord,
    IngestResult,
    IngestService,
    ServerEventCode,
    Store,
)
from pumpguard.server.models import AssetRow, PumpEventRow


def register(store: Store, ident: str, state: AssetState = AssetState.IN_SERVICE) -> None:
    """Put a pump into ``state`` without a CA: the rows, not the life cycle, are under test."""
    with store.transaction() as session:
        AssetService(session, store.ctx).register(
            ident, AssetKind.LVP, "Acme", "LVP-1", f"SN-{ident}", "t"
        )
        session.execute(update(AssetRow).where(AssetRow.ident == ident).values(state=str(state)))


def ingest(store: Store, records: list[EventRecord]) -> IngestResult:
    with store.transaction() as session:
        return IngestService(session, store.ctx).ingest(records)


def status(
    seq: int, sent: int, state: str = "running", battery: int = 80, device: str = "PUMP-1"
) -> EventRecord:
    return EventRecord(
        device,
        seq,
        sent,
        "status",
        {"state": state, "battery_pct": battery, "programme": "Heparin"},
    )


def stored_count(store: Store) -> int:
    with store.transaction() as session:
        return session.query(PumpEventRow).count()


def test_resent_records_are_stored_once(store: Store) -> None:
    register(store, "PUMP-1")
    batch = [EventRecord("PUMP-1", i, 1000 + i, "alarm", {"n": i}) for i in range(1, 6)]
    first = ingest(store, batch)
    assert (first.accepted, first.duplicates, first.conflicts, first.rejected) == (5, 0, 0, ())
    again = ingest(store, [*batch[2:], EventRecord("PUMP-1", 6, 1006, "alarm", {"n": 6})])
    assert (again.accepted, again.duplicates, again.conflicts) == (1, 3, 0)
    inside = ingest(store, [batch[0], batch[0], EventRecord("PUMP-1", 7, 1, "alarm", {})] * 2)
    assert (inside.accepted, inside.duplicates) == (1, 5)
    assert stored_count(store) == 7


def test_a_resend_with_different_content_keeps_the_first(
    store: Store, events: SecurityEventLog
) -> None:
    register(store, "PUMP-1")
    ingest(store, [EventRecord("PUMP-1", 1, 1000, "alarm", {"rate": 5})])
    result = ingest(store, [EventRecord("PUMP-1", 1, 1000, "alarm", {"rate": 500})])
    assert (result.accepted, result.duplicates, result.conflicts) == (0, 1, 1)
    assert events.with_code(ServerEventCode.INGEST_SEQUENCE_CONFLICT)
    same_batch = ingest(
        store,
        [
            EventRecord("PUMP-1", 2, 1, "alarm", {"rate": 1}),
            EventRecord("PUMP-1", 2, 1, "alarm", {}),
        ],
    )
    assert (same_batch.accepted, same_batch.duplicates, same_batch.conflicts) == (1, 1, 1)
    with store.transaction() as session:
        stored = IngestService(session, store.ctx).events()
    assert [e.body for e in stored] == [{"rate": 5}, {"rate": 1}]


def test_unknown_and_retired_devices_are_refused(store: Store, events: SecurityEventLog) -> None:
    register(store, "PUMP-1")
    register(store, "PUMP-OLD", AssetState.DECOMMISSIONED)
    register(store, "PUMP-NEW", AssetState.PROCURED)
    result = ingest(
        store,
        [
            EventRecord("PUMP-1", 1, 1, "alarm", {}),
            EventRecord("PUMP-X", 1, 1, "alarm", {}),
            EventRecord("PUMP-OLD", 1, 1, "alarm", {}),
            EventRecord("PUMP-NEW", 1, 1, "alarm", {}),
        ],
    )
    assert result.accepted == 1
    assert [(r.device_id, r.reason) for r in result.rejected] == [
        ("PUMP-X", "unknown device"),
        ("PUMP-OLD", "device is decommissioned, not admitted"),
        ("PUMP-NEW", "device is procured, not admitted"),
    ]
    assert len(events.with_code(ServerEventCode.INGEST_UNKNOWN_DEVICE)) == 1
    assert len(events.with_code(ServerEventCode.INGEST_DEVICE_NOT_ADMITTED)) == 2


@pytest.mark.parametrize(
    "record",
    [
        EventRecord("pump-1", 1, 1, "alarm", {}),
        EventRecord("PUMP-1", -1, 1, "alarm", {}),
        EventRecord("PUMP-1", 2**63, 1, "alarm", {}),
        EventRecord("PUMP-1", 1, -5, "alarm", {}),
        EventRecord("PUMP-1", 1, 1, "Alarm!", {}),
        EventRecord("PUMP-1", 1, 1, "alarm", {"x": float("nan")}),
        EventRecord("PUMP-1", 1, 1, "alarm", {"x": "y" * 70_000}),
        EventRecord("PUMP-1", 1, 1, "status", {"state": "running", "battery_pct": 101}),
        EventRecord("PUMP-1", 1, 1, "status", {"state": "running", "extra": 1}),
        EventRecord("PUMP-1", 1, 1, "status", {"programme": "x"}),
        EventRecord("PUMP-1", 1, 1, "connection", {"connected": "no"}),
        EventRecord("PUMP-1", True, 1, "alarm", {}),  # type: ignore[arg-type]
        EventRecord("PUMP-1", "7", 1, "alarm", {}),  # type: ignore[arg-type]
        EventRecord(7, 1, 1, "alarm", {}),  # type: ignore[arg-type]
        EventRecord("PUMP-1", 1, 1, "status", {"state": "s" * 33}),
        EventRecord("PUMP-1", 1, 1, "alarm", []),  # type: ignore[arg-type]
    ],
)
def test_malformed_records_are_rejected_by_name(
    store: Store, events: SecurityEventLog, record: EventRecord
) -> None:
    register(store, "PUMP-1")
    result = ingest(store, [record, EventRecord("PUMP-1", 99, 1, "alarm", {})])
    assert result.accepted == 1
    assert len(result.rejected) == 1 and result.rejected[0].reason
    assert events.with_code(ServerEventCode.INGEST_MALFORMED)


def test_status_follows_the_newest_report_even_out_of_order(
    store: Store, clock: VirtualClock
) -> None:
    register(store, "PUMP-1")
    ingest(store, [status(1, 1000, "running", 80), status(3, 3000, "paused", 70)])
    ingest(store, [status(2, 2000, "alarm", 75)])
    with store.transaction() as session:
        view = IngestService(session, store.ctx).status("PUMP-1")
    assert (view.state, view.battery_pct, view.online, view.programme) == (
        "paused",
        70,
        True,
        "Heparin",
    )
    assert view.asset_state is AssetState.IN_SERVICE
    clock.advance(store.ctx.settings.pump_offline_after_ms + 1)
    with store.transaction() as session:
        assert not IngestService(session, store.ctx).status("PUMP-1").online
    ingest(store, [EventRecord("PUMP-1", 4, 5000, "connection", {"connected": False})])
    with store.transaction() as session:
        view = IngestService(session, store.ctx).status("PUMP-1")
    assert (view.connected, view.online, view.state) == (False, False, "paused")


def test_events_page_by_id_and_filter(store: Store) -> None:
    register(store, "PUMP-1")
    register(store, "PUMP-2")
    ingest(
        store,
        [
            EventRecord(d, i, i, "alarm" if i % 2 else "note", {})
            for d in ("PUMP-1", "PUMP-2")
            for i in range(5)
        ],
    )
    with store.transaction() as session:
        service = IngestService(session, store.ctx)
        page = service.events(limit=3)
        rest = service.events(after_id=page[-1].id, limit=100)
        assert len(page) + len(rest) == 10
        assert {e.device_id for e in service.events(device_id="PUMP-2")} == {"PUMP-2"}
        assert len(service.events(kind="alarm", device_id="PUMP-1")) == 2


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(
        st.lists(st.tuples(st.sampled_from(["PUMP-1", "PUMP-2"]), st.integers(0, 30)), max_size=40),
        min_size=1,
        max_size=6,
    )
)
def test_any_resend_pattern_stores_each_record_exactly_once(
    store: Store, batches: list[list[tuple[str, int]]]
) -> None:
    with store.transaction() as session:
        known = {a.ident for a in AssetService(session, store.ctx).list_assets()}
    for ident in ("PUMP-1", "PUMP-2"):
        if ident not in known:
            register(store, ident)
    with store.transaction() as session:
        session.query(PumpEventRow).delete()
    sent: set[tuple[str, int]] = set()
    for batch in batches:
        records = [EventRecord(d, s, s, "alarm", {"s": s}) for d, s in batch]
        result = ingest(store, records)
        fresh = {(d, s) for d, s in batch} - sent
        assert result.accepted == len(fresh)
        assert result.accepted + result.duplicates == len(batch)
        assert result.conflicts == 0
        sent |= fresh
    assert stored_count(store) == len(sent)
