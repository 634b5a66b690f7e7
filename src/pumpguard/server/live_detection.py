"""Live detection on the server's ingest: each record stored for the first time goes through the
monitor's ``ActivityWatch``, whose findings become security events like any other.

Only records the ingest stored now are observed (``IngestResult.stored``), so a pump's resends
are never judged twice. What the watch learned (dosing and programming habits) is rebuilt at
start from the stored events of its learning period, so a restart does not blind it for two
weeks.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

from pumpguard.monitor.live import (
    OVERRIDE,
    PCA_DOSE,
    PROGRAMMING,
    ActivityWatch,
    LiveSettings,
    PumpActivity,
)
from pumpguard.security_events import SecurityEventSink
from pumpguard.server.ingest import CONNECTION_KIND, EventRecord, IngestService
from pumpguard.server.store import Store

__all__ = ["LiveDetection", "activity_from_record"]

_DEMAND = re.compile(r"^demand (\d{1,6}(?:\.\d{1,6})?) (\S{1,20})")
"""The pump log's PCA dose detail: ``demand <dose> <unit>`` (``devices.infusion`` firmware)."""
_PAGE = 1000
_LEARNED_KINDS = (PCA_DOSE, OVERRIDE, *sorted(PROGRAMMING))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def activity_from_record(record: EventRecord, received_ms: int) -> PumpActivity:
    """What the watch needs from one stored record (see ``server.mqtt_ingest`` for the body)."""
    body = record.body
    raw = body.get("attributes")
    attributes = raw if isinstance(raw, dict) else {}
    occurred = body.get("occurred_at_ms")
    if not isinstance(occurred, int) or isinstance(occurred, bool):
        occurred = record.sent_at_ms
    dose: Decimal | None = None
    unit: str | None = None
    if record.kind == PCA_DOSE:
        found = _DEMAND.match(str(body.get("summary", "")))
        if found is not None:
            try:
                dose, unit = Decimal(found.group(1)), found.group(2)
            except InvalidOperation:
                dose = None
    connected = body.get("connected") if record.kind == CONNECTION_KIND else None
    return PumpActivity(
        device_id=record.device_id,
        kind=record.kind,
        occurred_ms=occurred,
        received_ms=received_ms,
        source=_text(attributes.get("source")),
        patient_id=_text(attributes.get("patient_id")),
        dose=dose,
        dose_unit=unit,
        connected=connected if isinstance(connected, bool) else None,
    )


class LiveDetection:
    """The watch behind a lock (batches are stored from worker threads)."""

    def __init__(self, events: SecurityEventSink, settings: LiveSettings | None = None) -> None:
        self._events = events
        self._watch = ActivityWatch(settings)
        self._lock = threading.Lock()

    @property
    def settings(self) -> LiveSettings:
        return self._watch.settings

    def observe(self, records: Iterable[EventRecord], received_ms: int) -> int:
        """Feed newly stored records; returns how many findings were emitted."""
        found = 0
        with self._lock:
            for record in records:
                for event in self._watch.observe(activity_from_record(record, received_ms)):
                    self._events.emit(event)
                    found += 1
        return found

    def warm_up(self, store: Store, now_ms: int) -> int:
        """Learn from the stored dosing and programming events of the learning period (findings
        on them were made when they arrived, so none are emitted now); returns how many."""
        since = now_ms - self._watch.settings.history_days * 24 * 3_600_000
        stored: list[tuple[int, EventRecord, int]] = []
        with store.transaction() as session:
            ingest = IngestService(session, store.ctx)
            for kind in _LEARNED_KINDS:
                after = 0
                while True:
                    page = ingest.events(kind=kind, after_id=after, limit=_PAGE)
                    stored += [
                        (
                            e.id,
                            EventRecord(e.device_id, e.seq, e.sent_at_ms, e.kind, e.body),
                            e.received_at_ms,
                        )
                        for e in page
                        if e.received_at_ms >= since
                    ]
                    if len(page) < _PAGE:
                        break
                    after = page[-1].id
        stored.sort(key=lambda item: item[0])
        with self._lock:
            for _, record, received in stored:
                self._watch.observe(activity_from_record(record, received))
        return len(stored)
