"""Alerts and incidents kept by the server: the monitor's ``AlertBook``, backed by the database.

Every operation locks the alert head row, rebuilds an ``AlertBook`` from just the rows it can
touch (open alerts that could absorb the detection, incidents recent enough to take it, and
those incidents' alerts), lets the book decide, and writes back what changed. De-duplication,
correlation and the life cycle are therefore exactly the monitor's, the database stays the one
truth when the server and the CLI write at the same time, and a restart loses nothing.

Each write also takes the next ``change_seq`` from the head, so exporters can forward "every
alert changed since N" whoever made the change (a detection, the API, the CLI).
Acknowledging and resolving are recorded in the audit chain with the acting user.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from pumpguard.monitor.alerts import (
    CORRELATION_WINDOW_MS,
    DEDUP_WINDOW_MS,
    Alert,
    AlertBook,
    AlertChange,
    AlertError,
    AlertState,
    AlertTransitionError,
    Incident,
)
from pumpguard.monitor.detections import Detection
from pumpguard.security_events import Component, SecurityEvent, Severity
from pumpguard.server._sql import insert_ignoring_conflicts
from pumpguard.server.audit import AuditAction
from pumpguard.server.context import ServerContext
from pumpguard.server.errors import IllegalTransition, InvalidInput, NotFound
from pumpguard.server.models import AlertChangeRow, AlertHeadRow, AlertRow, IncidentRow

__all__ = ["AlertQuery", "AlertStore", "AlertTransitionRefused", "ChangedAlert"]

_HEAD_ID = 1
_MAX_NOTE = 2000
_MAX_LIMIT = 1000


class AlertTransitionRefused(IllegalTransition):
    """An alert life-cycle move its state does not allow (HTTP 409, like asset transitions)."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)
        self.ident = ""
        self.current = ""
        self.requested = ""
        self.allowed = ()


@dataclass(frozen=True, slots=True)
class AlertQuery:
    """Filters of an alert listing; ``min_severity`` keeps that severity and above, ``since_ms``
    alerts seen (``last_ms``) at or after that time. Newest first."""

    state: AlertState | None = None
    min_severity: Severity | None = None
    analytic_id: str | None = None
    device_id: str | None = None
    since_ms: int | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class ChangedAlert:
    change_seq: int
    alert: Alert


def _event_json(event: SecurityEvent) -> dict[str, Any]:
    return {
        "time_ms": event.time_ms,
        "component": str(event.component),
        "code": event.code,
        "severity": int(event.severity),
        "message": event.message,
        "device_id": event.device_id,
        "peer": event.peer,
        "attributes": dict(event.attributes),
    }


def _event_from(record: dict[str, Any]) -> SecurityEvent:
    return SecurityEvent(
        time_ms=int(record["time_ms"]),
        component=Component(record["component"]),
        code=str(record["code"]),
        severity=Severity(int(record["severity"])),
        message=str(record["message"]),
        device_id=record.get("device_id"),
        peer=record.get("peer"),
        attributes={str(k): str(v) for k, v in dict(record.get("attributes") or {}).items()},
    )


def _filter_text(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not value or len(value) > 64 or not value.isprintable():
        raise InvalidInput(f"{name} must be 1-64 printable characters")
    return value


class AlertStore:
    """Alerts and incidents in one database session (see the module docstring)."""

    def __init__(
        self,
        session: Session,
        ctx: ServerContext,
        *,
        dedup_window_ms: int = DEDUP_WINDOW_MS,
        correlation_window_ms: int = CORRELATION_WINDOW_MS,
    ) -> None:
        self._session = session
        self._ctx = ctx
        self._dedup_ms = dedup_window_ms
        self._corr_ms = correlation_window_ms

    # -- writing ------------------------------------------------------------------------

    def record(self, detection: Detection) -> Alert:
        """File a detection: a new alert, or one more occurrence of an open one."""
        head = self._lock_head()
        t = detection.time_ms
        same = (
            AlertRow.analytic_id == detection.analytic_id,
            AlertRow.state != str(AlertState.RESOLVED),
            AlertRow.last_ms >= t - self._dedup_ms,
            AlertRow.device_id.is_(None)
            if detection.device_id is None
            else AlertRow.device_id == detection.device_id,
            AlertRow.peer.is_(None) if detection.peer is None else AlertRow.peer == detection.peer,
        )
        duplicates = list(self._session.scalars(select(AlertRow).where(*same)))
        incident_ids = {r.incident_id for r in duplicates}
        related = [
            column == value
            for column, value in (
                (AlertRow.device_id, detection.device_id),
                (AlertRow.peer, detection.peer),
            )
            if value is not None
        ]
        if related:
            recent = select(IncidentRow.incident_id).where(IncidentRow.last_ms >= t - self._corr_ms)
            incident_ids |= set(
                self._session.scalars(
                    select(AlertRow.incident_id)
                    .where(or_(*related), AlertRow.incident_id.in_(recent))
                    .distinct()
                )
            )
        book = self._book(head, incident_ids, duplicates)
        alert = book.record(detection)
        self._write(head, alert, book.incident(alert.incident_id))
        return alert

    def acknowledge(self, alert_id: str, actor: str, note: str = "") -> Alert:
        return self._move(alert_id, AlertState.ACKNOWLEDGED, actor, note)

    def resolve(self, alert_id: str, actor: str, note: str) -> Alert:
        return self._move(alert_id, AlertState.RESOLVED, actor, note)

    def _move(self, alert_id: str, state: AlertState, actor: str, note: str) -> Alert:
        if len(note) > _MAX_NOTE:
            raise InvalidInput(f"the note must be at most {_MAX_NOTE} characters")
        head = self._lock_head()
        row = self._row(alert_id)
        book = AlertBook(dedup_window_ms=self._dedup_ms, correlation_window_ms=self._corr_ms)
        book.restore([self._alert(row)], ())
        now = self._ctx.clock.now_ms()
        try:
            if state is AlertState.RESOLVED:
                moved = book.resolve(alert_id, actor=actor, time_ms=now, note=note)
            else:
                moved = book.acknowledge(alert_id, actor=actor, time_ms=now, note=note.strip())
        except AlertTransitionError as exc:
            raise AlertTransitionRefused(str(exc)) from None
        except AlertError as exc:
            raise InvalidInput(str(exc)) from None
        self._write(head, moved, None)
        action = (
            AuditAction.ALERT_RESOLVED
            if state is AlertState.RESOLVED
            else AuditAction.ALERT_ACKNOWLEDGED
        )
        self._ctx.audit(self._session).append(
            action,
            moved.history[-1].actor,
            f"alert:{alert_id}",
            {
                "analytic": moved.analytic_id,
                "incident": moved.incident_id,
                "note": moved.history[-1].note,
            },
        )
        return moved

    def _lock_head(self) -> AlertHeadRow:
        self._session.execute(
            insert_ignoring_conflicts(self._session, AlertHeadRow, ["id"]).values(
                id=_HEAD_ID, last_alert=0, last_incident=0, last_change=0
            )
        )
        return self._session.execute(
            select(AlertHeadRow)
            .where(AlertHeadRow.id == _HEAD_ID)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one()

    def _book(
        self, head: AlertHeadRow, incident_ids: set[str], extra: Sequence[AlertRow]
    ) -> AlertBook:
        def next_alert() -> str:
            head.last_alert += 1
            return f"ALR-{head.last_alert:06d}"

        def next_incident() -> str:
            head.last_incident += 1
            return f"INC-{head.last_incident:06d}"

        book = AlertBook(
            dedup_window_ms=self._dedup_ms,
            correlation_window_ms=self._corr_ms,
            alert_ids=next_alert,
            incident_ids=next_incident,
        )
        members = (
            list(
                self._session.scalars(
                    select(AlertRow).where(AlertRow.incident_id.in_(incident_ids))
                )
            )
            if incident_ids
            else []
        )
        rows = {r.alert_id: r for r in [*members, *extra]}
        alerts = [self._alert(r) for r in rows.values()]
        incidents = (
            [
                self._incident(i, [a for a in alerts if a.incident_id == i.incident_id])
                for i in self._session.scalars(
                    select(IncidentRow).where(IncidentRow.incident_id.in_(incident_ids))
                )
            ]
            if incident_ids
            else []
        )
        book.restore(alerts, incidents)
        return book

    def _write(self, head: AlertHeadRow, alert: Alert, incident: Incident | None) -> None:
        head.last_change += 1
        row = self._session.scalars(
            select(AlertRow).where(AlertRow.alert_id == alert.alert_id)
        ).first()
        stored_changes = 0
        if row is None:
            row = AlertRow(alert_id=alert.alert_id)
            self._session.add(row)
        else:
            stored_changes = len(self._changes(row.id))
        row.analytic_id = alert.analytic_id[:32]
        row.title = alert.title[:200]
        row.severity = int(alert.severity)
        row.state = str(alert.state)
        row.first_ms = alert.first_ms
        row.last_ms = alert.last_ms
        row.count = alert.count
        row.incident_id = alert.incident_id
        row.device_id = alert.device_id
        row.peer = alert.peer
        row.technique = alert.technique
        row.message = alert.message
        row.evidence = json.dumps([_event_json(e) for e in alert.evidence], sort_keys=True)
        row.change_seq = head.last_change
        self._session.flush()
        for change in alert.history[stored_changes:]:
            self._session.add(
                AlertChangeRow(
                    alert_row_id=row.id,
                    time_ms=change.time_ms,
                    state=str(change.state),
                    actor=change.actor[:64],
                    note=change.note,
                )
            )
        if incident is not None:
            kept = self._session.scalars(
                select(IncidentRow).where(IncidentRow.incident_id == incident.incident_id)
            ).first()
            if kept is None:
                kept = IncidentRow(incident_id=incident.incident_id)
                self._session.add(kept)
            kept.severity = int(incident.severity)
            kept.first_ms = incident.first_ms
            kept.last_ms = incident.last_ms
        self._session.flush()

    # -- reading ------------------------------------------------------------------------

    def get(self, alert_id: str) -> Alert:
        return self._alert(self._row(alert_id))

    def search(self, query: AlertQuery | None = None) -> list[Alert]:
        q = query or AlertQuery()
        if not 1 <= q.limit <= _MAX_LIMIT:
            raise InvalidInput(f"limit must be from 1 to {_MAX_LIMIT}")
        statement = select(AlertRow).order_by(AlertRow.last_ms.desc(), AlertRow.id.desc())
        if q.state is not None:
            statement = statement.where(AlertRow.state == str(q.state))
        if q.min_severity is not None:
            statement = statement.where(AlertRow.severity >= int(q.min_severity))
        analytic = _filter_text("rule", q.analytic_id)
        if analytic is not None:
            statement = statement.where(AlertRow.analytic_id == analytic)
        device = _filter_text("device", q.device_id)
        if device is not None:
            statement = statement.where(AlertRow.device_id == device)
        if q.since_ms is not None:
            statement = statement.where(AlertRow.last_ms >= q.since_ms)
        return [self._alert(r) for r in self._session.scalars(statement.limit(q.limit))]

    def incidents(self, *, open_only: bool = False, limit: int = 100) -> list[Incident]:
        if not 1 <= limit <= _MAX_LIMIT:
            raise InvalidInput(f"limit must be from 1 to {_MAX_LIMIT}")
        rows = list(
            self._session.scalars(
                select(IncidentRow)
                .order_by(IncidentRow.last_ms.desc(), IncidentRow.id.desc())
                .limit(limit)
            )
        )
        found = [self._incident(r, self._members(r.incident_id)) for r in rows]
        if open_only:
            found = [i for i in found if self._open(i)]
        return found

    def incident(self, incident_id: str) -> Incident:
        row = (
            self._session.scalars(
                select(IncidentRow).where(IncidentRow.incident_id == incident_id)
            ).first()
            if _looks_like_id(incident_id)
            else None
        )
        if row is None:
            raise NotFound(f"no incident {incident_id!r}")
        return self._incident(row, self._members(incident_id))

    def incident_alerts(self, incident_id: str) -> list[Alert]:
        return self._members(self.incident(incident_id).incident_id)

    def changed_since(self, change_seq: int, limit: int = 100) -> list[ChangedAlert]:
        """Alerts whose latest change is after ``change_seq``, oldest change first."""
        rows = self._session.scalars(
            select(AlertRow)
            .where(AlertRow.change_seq > change_seq)
            .order_by(AlertRow.change_seq)
            .limit(limit)
        )
        return [ChangedAlert(r.change_seq, self._alert(r)) for r in rows]

    def last_change(self) -> int:
        head = self._session.get(AlertHeadRow, _HEAD_ID)
        return 0 if head is None else head.last_change

    def _open(self, incident: Incident) -> bool:
        return any(a.open for a in self._members(incident.incident_id))

    def _members(self, incident_id: str) -> list[Alert]:
        rows = self._session.scalars(
            select(AlertRow).where(AlertRow.incident_id == incident_id).order_by(AlertRow.id)
        )
        return [self._alert(r) for r in rows]

    def _row(self, alert_id: str) -> AlertRow:
        row = (
            self._session.scalars(select(AlertRow).where(AlertRow.alert_id == alert_id)).first()
            if _looks_like_id(alert_id)
            else None
        )
        if row is None:
            raise NotFound(f"no alert {alert_id!r}")
        return row

    def _changes(self, row_id: int) -> list[AlertChangeRow]:
        return list(
            self._session.scalars(
                select(AlertChangeRow)
                .where(AlertChangeRow.alert_row_id == row_id)
                .order_by(AlertChangeRow.id)
            )
        )

    def _alert(self, row: AlertRow) -> Alert:
        return Alert(
            alert_id=row.alert_id,
            analytic_id=row.analytic_id,
            title=row.title,
            severity=Severity(row.severity),
            first_ms=row.first_ms,
            last_ms=row.last_ms,
            count=row.count,
            state=AlertState(row.state),
            incident_id=row.incident_id,
            device_id=row.device_id,
            peer=row.peer,
            technique=row.technique,
            message=row.message,
            evidence=tuple(_event_from(e) for e in json.loads(row.evidence)),
            history=tuple(
                AlertChange(c.time_ms, AlertState(c.state), c.actor, c.note)
                for c in self._changes(row.id)
            ),
        )

    @staticmethod
    def _incident(row: IncidentRow, alerts: Sequence[Alert]) -> Incident:
        return Incident(
            incident_id=row.incident_id,
            alert_ids=tuple(a.alert_id for a in sorted(alerts, key=lambda a: a.alert_id)),
            severity=Severity(row.severity),
            first_ms=row.first_ms,
            last_ms=row.last_ms,
            device_ids=frozenset(a.device_id for a in alerts if a.device_id is not None),
            peers=frozenset(a.peer for a in alerts if a.peer is not None),
        )


def _looks_like_id(text: str) -> bool:
    return 0 < len(text) <= 16 and text.isprintable()
