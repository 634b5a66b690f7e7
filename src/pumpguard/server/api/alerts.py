"""Alert and incident endpoints: what the security analyst works through.

Reading needs ``alerts.read``; acknowledging and resolving need ``alerts.manage`` and are
recorded in the audit chain under the caller's name. Resolving without a note is refused.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from pumpguard.monitor.alerts import Alert, AlertState, Incident
from pumpguard.security_events import Severity
from pumpguard.server.alert_store import AlertQuery, AlertStore
from pumpguard.server.api.deps import DbSession, Require, store_of
from pumpguard.server.authz import Permission
from pumpguard.server.errors import InvalidInput
from pumpguard.server.users import Principal

__all__ = [
    "AlertDetailOut",
    "AlertOut",
    "IncidentDetailOut",
    "IncidentOut",
    "alert_detail_out",
    "alert_out",
    "incident_out",
    "router",
]

router = APIRouter(prefix="/api/v1")

AlertsReader = Annotated[Principal, Depends(Require(Permission.ALERTS_READ))]
AlertsManager = Annotated[Principal, Depends(Require(Permission.ALERTS_MANAGE))]

_SEVERITIES = {s.name.lower(): s for s in Severity}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AcknowledgeIn(_In):
    note: str = Field(default="", max_length=2000, strict=True)


class ResolveIn(_In):
    note: str = Field(min_length=1, max_length=2000, strict=True)


class AlertChangeOut(BaseModel):
    time_ms: int
    state: AlertState
    actor: str
    note: str


class EvidenceOut(BaseModel):
    """One security event behind the alert."""

    time_ms: int
    component: str
    code: str
    severity: str
    message: str
    device_id: str | None
    peer: str | None
    attributes: dict[str, str]


class AlertOut(BaseModel):
    alert_id: str
    rule: str
    title: str
    severity: str
    state: AlertState
    count: int
    first_ms: int
    last_ms: int
    incident_id: str
    device_id: str | None
    peer: str | None
    technique: str | None
    message: str


class AlertDetailOut(AlertOut):
    history: list[AlertChangeOut]
    evidence: list[EvidenceOut]


class IncidentOut(BaseModel):
    incident_id: str
    severity: str
    first_ms: int
    last_ms: int
    open: bool
    device_ids: list[str]
    peers: list[str]
    alert_ids: list[str]


class IncidentDetailOut(IncidentOut):
    alerts: list[AlertOut]


def alert_out(a: Alert) -> AlertOut:
    """Also what ``pumpguard alerts ... --json`` prints: one JSON shape for API and CLI."""
    return AlertOut(
        alert_id=a.alert_id,
        rule=a.analytic_id,
        title=a.title,
        severity=a.severity.name.lower(),
        state=a.state,
        count=a.count,
        first_ms=a.first_ms,
        last_ms=a.last_ms,
        incident_id=a.incident_id,
        device_id=a.device_id,
        peer=a.peer,
        technique=a.technique,
        message=a.message,
    )


def alert_detail_out(a: Alert) -> AlertDetailOut:
    return AlertDetailOut(
        **alert_out(a).model_dump(),
        history=[
            AlertChangeOut(time_ms=c.time_ms, state=c.state, actor=c.actor, note=c.note)
            for c in a.history
        ],
        evidence=[
            EvidenceOut(
                time_ms=e.time_ms,
                component=str(e.component),
                code=e.code,
                severity=e.severity.name.lower(),
                message=e.message,
                device_id=e.device_id,
                peer=e.peer,
                attributes=dict(e.attributes),
            )
            for e in a.evidence
        ],
    )


def incident_out(i: Incident, alerts: list[Alert]) -> IncidentOut:
    return IncidentOut(
        incident_id=i.incident_id,
        severity=i.severity.name.lower(),
        first_ms=i.first_ms,
        last_ms=i.last_ms,
        open=any(a.open for a in alerts),
        device_ids=sorted(i.device_ids),
        peers=sorted(i.peers),
        alert_ids=list(i.alert_ids),
    )


def _alerts(request: Request, session: DbSession) -> AlertStore:
    return AlertStore(session, store_of(request).ctx)


@router.get("/alerts", tags=["alerts"])
def list_alerts(
    request: Request,
    session: DbSession,
    _me: AlertsReader,
    state: Annotated[AlertState | None, Query()] = None,
    severity: Annotated[
        str | None, Query(description="This severity and above: " + ", ".join(_SEVERITIES))
    ] = None,
    rule: Annotated[str | None, Query(max_length=32)] = None,
    device: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="last seen, ms")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertOut]:
    """Alerts, newest first."""
    minimum = None
    if severity is not None:
        minimum = _SEVERITIES.get(severity.strip().lower())
        if minimum is None:
            raise InvalidInput(f"severity must be one of {', '.join(_SEVERITIES)}")
    query = AlertQuery(state, minimum, rule, device, since, limit)
    return [alert_out(a) for a in _alerts(request, session).search(query)]


@router.get("/alerts/{alert_id}", tags=["alerts"])
def getalert_out(
    alert_id: str, request: Request, session: DbSession, _me: AlertsReader
) -> AlertDetailOut:
    """One alert with its life cycle and the security events behind it."""
    return alert_detail_out(_alerts(request, session).get(alert_id))


@router.post("/alerts/{alert_id}/acknowledge", tags=["alerts"])
def acknowledgealert_out(
    alert_id: str, body: AcknowledgeIn, request: Request, session: DbSession, me: AlertsManager
) -> AlertDetailOut:
    return alert_detail_out(_alerts(request, session).acknowledge(alert_id, me.username, body.note))


@router.post("/alerts/{alert_id}/resolve", tags=["alerts"])
def resolvealert_out(
    alert_id: str, body: ResolveIn, request: Request, session: DbSession, me: AlertsManager
) -> AlertDetailOut:
    """Close an alert; the note (why it was closed) is required."""
    return alert_detail_out(_alerts(request, session).resolve(alert_id, me.username, body.note))


@router.get("/incidents", tags=["alerts"])
def list_incidents(
    request: Request,
    session: DbSession,
    _me: AlertsReader,
    open_only: Annotated[bool, Query(alias="open")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[IncidentOut]:
    """Incidents (correlated alerts), newest first."""
    store = _alerts(request, session)
    found = []
    for incident in store.incidents(open_only=open_only, limit=limit):
        found.append(incident_out(incident, store.incident_alerts(incident.incident_id)))
    return found


@router.get("/incidents/{incident_id}", tags=["alerts"])
def getincident_out(
    incident_id: str, request: Request, session: DbSession, _me: AlertsReader
) -> IncidentDetailOut:
    store = _alerts(request, session)
    incident = store.incident(incident_id)
    alerts = store.incident_alerts(incident_id)
    return IncidentDetailOut(
        **incident_out(incident, alerts).model_dump(), alerts=[alert_out(a) for a in alerts]
    )
