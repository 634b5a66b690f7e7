"""Alerts and incidents: what a security analyst works through.

A detection opens an alert, or adds to the open alert of the same analytic on the same device
and peer (de-duplication: a replay flood is one alert with a count, not ten thousand). Alerts
move new -> acknowledged -> resolved; resolving needs a note, because "why was this closed" is
the first question of any review. Open alerts on the same device, or from the same peer, within
the correlation window are grouped into one incident: an attacker who jams, then replays, then
spoofs a CGM is one story, and the analyst should read it as one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum

from pumpguard.monitor.detections import MAX_EVIDENCE, Detection
from pumpguard.security_events import SecurityEvent, Severity

__all__ = [
    "Alert",
    "AlertBook",
    "AlertChange",
    "AlertError",
    "AlertNotFound",
    "AlertState",
    "AlertTransitionError",
    "Incident",
]

DEDUP_WINDOW_MS = 60 * 60_000
CORRELATION_WINDOW_MS = 30 * 60_000


class AlertState(StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


_NEXT: dict[AlertState, frozenset[AlertState]] = {
    AlertState.NEW: frozenset({AlertState.ACKNOWLEDGED, AlertState.RESOLVED}),
    AlertState.ACKNOWLEDGED: frozenset({AlertState.RESOLVED}),
    AlertState.RESOLVED: frozenset(),
}


class AlertError(ValueError):
    """A refused alert operation: unknown id, illegal transition, missing note."""


class AlertNotFound(AlertError):
    """No alert or incident with that id."""


class AlertTransitionError(AlertError):
    """A life-cycle move the alert's state does not allow (a resolved alert stays resolved)."""


@dataclass(frozen=True, slots=True)
class AlertChange:
    """One step of an alert's life, with who took it and why."""

    time_ms: int
    state: AlertState
    actor: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert as the analyst sees it; a new value is made for every change."""

    alert_id: str
    analytic_id: str
    title: str
    severity: Severity
    first_ms: int
    last_ms: int
    count: int
    state: AlertState
    incident_id: str
    device_id: str | None = None
    peer: str | None = None
    technique: str | None = None
    message: str = ""
    evidence: tuple[SecurityEvent, ...] = ()
    history: tuple[AlertChange, ...] = field(default_factory=tuple)

    @property
    def open(self) -> bool:
        return self.state is not AlertState.RESOLVED


@dataclass(frozen=True, slots=True)
class Incident:
    """Correlated alerts: the same device or the same peer, close together in time."""

    incident_id: str
    alert_ids: tuple[str, ...]
    severity: Severity
    first_ms: int
    last_ms: int
    device_ids: frozenset[str]
    peers: frozenset[str]


AlertListener = Callable[[Alert], None]
IdFactory = Callable[[], str]


class AlertBook:
    """The alert store: de-duplicates detections, correlates alerts, enforces the life cycle.

    ``listeners`` are called with every alert that is new or changed (routing to exporters,
    the dashboard); a failing listener is the listener's problem, so it is never allowed to lose
    the alert itself: the book is updated before anyone is told.

    A book kept in a database is rebuilt per operation from the rows that operation can touch
    (``restore``), with ids handed out by the database (``alert_ids``, ``incident_ids``), so the
    same rules decide whether the alerts live in memory (the lab) or on disk (the server).
    """

    def __init__(
        self,
        *,
        dedup_window_ms: int = DEDUP_WINDOW_MS,
        correlation_window_ms: int = CORRELATION_WINDOW_MS,
        alert_ids: IdFactory | None = None,
        incident_ids: IdFactory | None = None,
    ) -> None:
        if dedup_window_ms <= 0 or correlation_window_ms <= 0:
            raise ValueError("windows must be positive")
        self._dedup_ms = dedup_window_ms
        self._corr_ms = correlation_window_ms
        self._alerts: dict[str, Alert] = {}
        self._incidents: dict[str, Incident] = {}
        self._listeners: list[AlertListener] = []
        self._listener_failures = 0
        self._alert_ids = alert_ids or (lambda: f"ALR-{len(self._alerts) + 1:06d}")
        self._incident_ids = incident_ids or (lambda: f"INC-{len(self._incidents) + 1:06d}")

    def restore(self, alerts: Iterable[Alert], incidents: Iterable[Incident]) -> None:
        """Load alerts and incidents kept elsewhere, oldest first; listeners are not told."""
        for alert in sorted(alerts, key=lambda a: (a.first_ms, a.alert_id)):
            self._alerts[alert.alert_id] = alert
        for incident in sorted(incidents, key=lambda i: (i.last_ms, i.incident_id)):
            self._incidents[incident.incident_id] = incident

    def subscribe(self, listener: AlertListener) -> None:
        self._listeners.append(listener)

    def __iter__(self) -> Iterator[Alert]:
        return iter(tuple(self._alerts.values()))

    def __len__(self) -> int:
        return len(self._alerts)

    def get(self, alert_id: str) -> Alert:
        try:
            return self._alerts[alert_id]
        except KeyError:
            raise AlertNotFound(f"no alert {alert_id!r}") from None

    def incidents(self) -> tuple[Incident, ...]:
        return tuple(self._incidents.values())

    def incident(self, incident_id: str) -> Incident:
        try:
            return self._incidents[incident_id]
        except KeyError:
            raise AlertNotFound(f"no incident {incident_id!r}") from None

    def record(self, detection: Detection) -> Alert:
        """File a detection: a new alert, or one more occurrence of an open one."""
        existing = self._duplicate_of(detection)
        if existing is not None:
            alert = replace(
                existing,
                last_ms=max(existing.last_ms, detection.time_ms),
                count=existing.count + 1,
                severity=max(existing.severity, detection.severity),
                evidence=(existing.evidence + detection.evidence)[-MAX_EVIDENCE:],
            )
        else:
            alert = Alert(
                alert_id=self._alert_ids(),
                analytic_id=detection.analytic_id,
                title=detection.title,
                severity=detection.severity,
                first_ms=detection.time_ms,
                last_ms=detection.time_ms,
                count=1,
                state=AlertState.NEW,
                incident_id="",
                device_id=detection.device_id,
                peer=detection.peer,
                technique=detection.technique,
                message=detection.message,
                evidence=detection.evidence,
                history=(AlertChange(detection.time_ms, AlertState.NEW, "monitor"),),
            )
        alert = self._correlate(alert)
        self._alerts[alert.alert_id] = alert
        self._notify(alert)
        return alert

    def acknowledge(self, alert_id: str, *, actor: str, time_ms: int, note: str = "") -> Alert:
        return self._move(alert_id, AlertState.ACKNOWLEDGED, actor, time_ms, note)

    def resolve(self, alert_id: str, *, actor: str, time_ms: int, note: str) -> Alert:
        if not note.strip():
            raise AlertError("resolving an alert needs a note saying why")
        return self._move(alert_id, AlertState.RESOLVED, actor, time_ms, note.strip())

    def _move(self, alert_id: str, state: AlertState, actor: str, time_ms: int, note: str) -> Alert:
        alert = self.get(alert_id)
        if state not in _NEXT[alert.state]:
            raise AlertTransitionError(
                f"alert {alert_id} is {alert.state}; it cannot become {state}"
            )
        if not actor.strip():
            raise AlertError("every alert change needs the actor who made it")
        if time_ms < alert.history[-1].time_ms:
            raise AlertError("an alert change cannot predate the alert's last change")
        change = AlertChange(time_ms, state, actor.strip(), note)
        alert = replace(alert, state=state, history=(*alert.history, change))
        self._alerts[alert_id] = alert
        self._notify(alert)
        return alert

    def _duplicate_of(self, detection: Detection) -> Alert | None:
        for alert in reversed(self._alerts.values()):
            if (
                alert.open
                and alert.analytic_id == detection.analytic_id
                and alert.device_id == detection.device_id
                and alert.peer == detection.peer
                and detection.time_ms - alert.last_ms <= self._dedup_ms
            ):
                return alert
        return None

    def _correlate(self, alert: Alert) -> Alert:
        if alert.incident_id:
            incident = self._incidents[alert.incident_id]
        else:
            incident = self._related_incident(alert) or Incident(
                incident_id=self._incident_ids(),
                alert_ids=(),
                severity=alert.severity,
                first_ms=alert.first_ms,
                last_ms=alert.last_ms,
                device_ids=frozenset(),
                peers=frozenset(),
            )
        ids = (
            incident.alert_ids
            if alert.alert_id in incident.alert_ids
            else (
                *incident.alert_ids,
                alert.alert_id,
            )
        )
        self._incidents[incident.incident_id] = replace(
            incident,
            alert_ids=ids,
            severity=max(incident.severity, alert.severity),
            first_ms=min(incident.first_ms, alert.first_ms),
            last_ms=max(incident.last_ms, alert.last_ms),
            device_ids=incident.device_ids | _some(alert.device_id),
            peers=incident.peers | _some(alert.peer),
        )
        return replace(alert, incident_id=incident.incident_id)

    def _related_incident(self, alert: Alert) -> Incident | None:
        for incident in reversed(self._incidents.values()):
            if alert.first_ms - incident.last_ms > self._corr_ms:
                continue
            members = (self._alerts.get(a) for a in incident.alert_ids)
            if not any(m is not None and m.open for m in members):
                continue
            if (alert.device_id and alert.device_id in incident.device_ids) or (
                alert.peer and alert.peer in incident.peers
            ):
                return incident
        return None

    @property
    def listener_failures(self) -> int:
        """How many times a listener raised; the alert was kept each time."""
        return self._listener_failures

    def _notify(self, alert: Alert) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(alert)
            except Exception:
                self._listener_failures += 1


def _some(value: str | None) -> frozenset[str]:
    return frozenset() if value is None else frozenset({value})
