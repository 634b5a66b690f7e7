"""Live detection behind the ingest: what is observed, and what a restart remembers."""

from __future__ import annotations

from decimal import Decimal

from tests.server.test_ingest import ingest, register

from pumpguard.clock import VirtualClock
from pumpguard.monitor.live import LiveEvent
from pumpguard.security_events import SecurityEventLog
from pumpguard.server import EventRecord, Store
from pumpguard.server.live_detection import LiveDetection, activity_from_record

HOUR = 3_600_000
DAY = 24 * HOUR


def programmed(seq: int, at: int) -> EventRecord:
    return EventRecord(
        "PUMP-1",
        seq,
        at,
        "programmed",
        {
            "log_seq": seq,
            "occurred_at_ms": at,
            "summary": "morphine",
            "attributes": {"source": "keypad", "patient_id": "100001"},
        },
    )


def test_records_map_to_activity() -> None:
    dose = EventRecord(
        "PUMP-1",
        3,
        50,
        "pca-dose",
        {"occurred_at_ms": 40, "summary": "demand 1.5 mg", "attributes": {"patient_id": "7"}},
    )
    seen = activity_from_record(dose, received_ms=99)
    assert (seen.dose, seen.dose_unit, seen.occurred_ms, seen.received_ms, seen.patient_id) == (
        Decimal("1.5"),
        "mg",
        40,
        99,
        "7",
    )
    odd = EventRecord("PUMP-1", 4, 50, "pca-dose", {"summary": "demand lots", "attributes": 3})
    assert activity_from_record(odd, 99).dose is None
    assert activity_from_record(odd, 99).occurred_ms == 50


def test_a_restarted_server_remembers_the_pumps_hours(store: Store, clock: VirtualClock) -> None:
    register(store, "PUMP-1")
    day_shift = [
        programmed(1 + d * 10 + h, clock.now_ms() - (5 - d) * DAY + (8 + h) * HOUR)
        for d in range(4)
        for h in range(8)
    ]
    first = LiveDetection(SecurityEventLog())
    assert first.observe(ingest(store, day_shift).stored, clock.now_ms()) == 0
    night = [programmed(100, clock.now_ms() - clock.now_ms() % DAY + 3 * HOUR)]

    forgetful = SecurityEventLog()
    assert LiveDetection(forgetful).observe(night, clock.now_ms()) == 0  # knows nothing

    events = SecurityEventLog()
    restarted = LiveDetection(events)
    assert restarted.warm_up(store, clock.now_ms()) == len(day_shift)
    assert restarted.observe(night, clock.now_ms()) == 1
    assert events.codes() == {LiveEvent.OFF_HOURS_PROGRAMMING}


def test_resent_records_are_not_observed_twice(store: Store, clock: VirtualClock) -> None:
    register(store, "PUMP-1")
    first = ingest(store, [programmed(1, clock.now_ms())])
    again = ingest(store, [programmed(1, clock.now_ms())])
    assert len(first.stored) == 1 and again.stored == ()
