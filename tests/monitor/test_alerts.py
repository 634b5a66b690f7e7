from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pumpguard.monitor import Alert, AlertBook, AlertError, AlertState, Detection
from pumpguard.security_events import Severity

MIN = 60_000


def _det(
    t_min: float,
    *,
    analytic: str = "PG-LINK-001",
    device: str | None = "PUMP-0001",
    peer: str | None = "aa:bb",
    severity: Severity = Severity.MEDIUM,
) -> Detection:
    return Detection(
        analytic_id=analytic,
        title="replayed frames",
        time_ms=int(t_min * MIN),
        severity=severity,
        message="m",
        device_id=device,
        peer=peer,
    )


def test_repeats_within_the_window_are_one_alert_with_a_count() -> None:
    book = AlertBook()
    first = book.record(_det(0))
    again = book.record(_det(10, severity=Severity.HIGH))
    assert again.alert_id == first.alert_id
    assert again.count == 2
    assert again.last_ms == 10 * MIN
    assert again.severity is Severity.HIGH
    assert len(book) == 1


def test_a_repeat_after_the_window_or_after_resolution_opens_a_new_alert() -> None:
    book = AlertBook(dedup_window_ms=60 * MIN)
    a = book.record(_det(0))
    b = book.record(_det(61))
    assert b.alert_id != a.alert_id
    book.resolve(b.alert_id, actor="ana", time_ms=62 * MIN, note="bench test")
    c = book.record(_det(63))
    assert c.alert_id not in {a.alert_id, b.alert_id}


def test_different_device_or_analytic_is_a_different_alert() -> None:
    book = AlertBook()
    a = book.record(_det(0))
    assert book.record(_det(1, device="PUMP-0002")).alert_id != a.alert_id
    assert book.record(_det(1, analytic="PG-LINK-002")).alert_id != a.alert_id


def test_life_cycle_is_enforced() -> None:
    book = AlertBook()
    alert = book.record(_det(0))
    acked = book.acknowledge(alert.alert_id, actor="ana", time_ms=MIN)
    assert acked.state is AlertState.ACKNOWLEDGED
    with pytest.raises(AlertError, match="cannot become acknowledged"):
        book.acknowledge(alert.alert_id, actor="ana", time_ms=2 * MIN)
    with pytest.raises(AlertError, match="needs a note"):
        book.resolve(alert.alert_id, actor="ana", time_ms=2 * MIN, note="  ")
    with pytest.raises(AlertError, match="predate"):
        book.resolve(alert.alert_id, actor="ana", time_ms=0, note="x")
    done = book.resolve(alert.alert_id, actor="ana", time_ms=3 * MIN, note="false positive")
    assert [c.state for c in done.history] == [
        AlertState.NEW,
        AlertState.ACKNOWLEDGED,
        AlertState.RESOLVED,
    ]
    assert done.history[-1].note == "false positive"
    with pytest.raises(AlertError, match="cannot become"):
        book.resolve(alert.alert_id, actor="ana", time_ms=4 * MIN, note="again")
    with pytest.raises(AlertError, match="no alert"):
        book.get("ALR-999999")


def test_alerts_on_one_device_or_from_one_peer_form_one_incident() -> None:
    book = AlertBook(correlation_window_ms=30 * MIN)
    a = book.record(_det(0, analytic="PG-LINK-001", peer=None))
    b = book.record(_det(5, analytic="PG-CGM-RATE", peer=None))
    c = book.record(_det(6, analytic="PG-LINK-002", device="PUMP-0009", peer="ee:ff"))
    d = book.record(_det(7, analytic="PG-LINK-003", device="PUMP-0010", peer="ee:ff"))
    late = book.record(_det(100, analytic="PG-LINK-004", peer=None))
    assert a.incident_id == b.incident_id
    assert c.incident_id == d.incident_id != a.incident_id
    assert late.incident_id not in {a.incident_id, c.incident_id}
    incident = book.incident(a.incident_id)
    assert set(incident.alert_ids) == {a.alert_id, b.alert_id}
    assert incident.device_ids == {"PUMP-0001"}


def test_a_failing_listener_never_loses_the_alert() -> None:
    book = AlertBook()
    seen: list[Alert] = []

    def broken(alert: Alert) -> None:
        raise RuntimeError("SIEM down")

    book.subscribe(broken)
    book.subscribe(seen.append)
    alert = book.record(_det(0))
    assert book.get(alert.alert_id) == alert
    assert seen == [alert]
    assert book.listener_failures == 1


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10_000)), min_size=1, max_size=60))
def test_every_detection_is_counted_exactly_once(items: list[tuple[int, int]]) -> None:
    book = AlertBook()
    for device, minute in sorted(items, key=lambda x: x[1]):
        book.record(_det(minute, device=f"PUMP-{device:04d}"))
    assert sum(a.count for a in book) == len(items)
    assert sorted(i for inc in book.incidents() for i in inc.alert_ids) == sorted(
        a.alert_id for a in book
    )
