"""Security events and alerts as OCSF 1.1 records, the shape SIEMs and data lakes ingest.

Raw events map to the OCSF class that describes them best: refusals on the radio, the MQTT
broker and the MLLP listener are Network Activity (4001) *Refuse*; login and session failures at
the server are Authentication (3002) *Logon* with status Failure; other server refusals are API
Activity (6003); update verification and device-level events have no close OCSF class and go as
Base Event (0), with our code in ``metadata.event_code`` so nothing is lost. Alerts are Detection
Findings (2004): created, updated, closed as the analyst works them.

OCSF facts used (schema 1.1.0): ``type_uid = class_uid * 100 + activity_id``; ``category_uid``
is the class's thousands digit; severity ids 1-5 as in ``Severity``; status_id 1 Success,
2 Failure; Detection Finding status_id 1 New, 2 In Progress, 4 Resolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pumpguard import __version__
from pumpguard.monitor.alerts import Alert, AlertState
from pumpguard.security_events import Component, SecurityEvent

__all__ = ["OCSF_VERSION", "OcsfClass", "alert_to_ocsf", "event_class", "event_to_ocsf"]

OCSF_VERSION = "1.1.0"

_PRODUCT = {"name": "pumpguard", "vendor_name": "pumpguard project", "version": __version__}


@dataclass(frozen=True, slots=True)
class OcsfClass:
    class_uid: int
    class_name: str
    activity_id: int
    activity_name: str

    @property
    def category_uid(self) -> int:
        return self.class_uid // 1000

    @property
    def type_uid(self) -> int:
        return self.class_uid * 100 + self.activity_id


NETWORK_REFUSE = OcsfClass(4001, "Network Activity", 5, "Refuse")
AUTH_LOGON = OcsfClass(3002, "Authentication", 1, "Logon")
API_OTHER = OcsfClass(6003, "API Activity", 99, "Other")
BASE_OTHER = OcsfClass(0, "Base Event", 99, "Other")
_FINDING_ACTIVITY = {AlertState.NEW: (1, "Create"), AlertState.ACKNOWLEDGED: (2, "Update")}
_FINDING_STATUS = {AlertState.NEW: 1, AlertState.ACKNOWLEDGED: 2, AlertState.RESOLVED: 4}
_AUTH_WORDS = ("auth", "login", "session", "mfa", "totp", "password")


def event_class(event: SecurityEvent) -> OcsfClass:
    if event.component in (Component.LINK, Component.TRANSPORT, Component.INTEROP):
        return NETWORK_REFUSE
    if event.component is Component.SERVER:
        if any(word in event.code for word in _AUTH_WORDS):
            return AUTH_LOGON
        return API_OTHER
    return BASE_OTHER


def event_to_ocsf(event: SecurityEvent) -> dict[str, Any]:
    """One event as an OCSF record (a JSON-ready mapping; the wire format is the point here)."""
    cls = event_class(event)
    record: dict[str, Any] = {
        "class_uid": cls.class_uid,
        "class_name": cls.class_name,
        "category_uid": cls.category_uid,
        "activity_id": cls.activity_id,
        "activity_name": cls.activity_name,
        "type_uid": cls.type_uid,
        "time": event.time_ms,
        "severity_id": int(event.severity),
        "severity": event.severity.name.capitalize(),
        "status_id": 2,
        "status": "Failure",
        "message": event.message,
        "metadata": {
            "version": OCSF_VERSION,
            "product": dict(_PRODUCT, feature={"name": str(event.component)}),
            "event_code": event.code,
        },
    }
    if event.device_id is not None:
        record["device"] = {"uid": event.device_id, "type_id": 99}
    if event.peer is not None:
        record["src_endpoint"] = {"name": event.peer}
    if event.attributes:
        record["unmapped"] = dict(event.attributes)
    return record


def alert_to_ocsf(alert: Alert) -> dict[str, Any]:
    """An alert as an OCSF Detection Finding (2004)."""
    activity_id, activity_name = _FINDING_ACTIVITY.get(alert.state, (3, "Close"))
    record: dict[str, Any] = {
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": 2004 * 100 + activity_id,
        "time": alert.history[-1].time_ms,
        "severity_id": int(alert.severity),
        "severity": alert.severity.name.capitalize(),
        "status_id": _FINDING_STATUS[alert.state],
        "status": str(alert.state).capitalize(),
        "message": alert.message,
        "count": alert.count,
        "finding_info": {
            "uid": alert.alert_id,
            "title": alert.title,
            "first_seen_time": alert.first_ms,
            "last_seen_time": alert.last_ms,
            "related_events_count": alert.count,
            "analytic": {"uid": alert.analytic_id, "name": alert.title, "type_id": 1},
        },
        "metadata": {
            "version": OCSF_VERSION,
            "product": _PRODUCT,
            "correlation_uid": alert.incident_id,
        },
    }
    if alert.technique is not None:
        record["finding_info"]["attacks"] = [{"technique": {"uid": alert.technique}}]
    if alert.device_id is not None:
        record["device"] = {"uid": alert.device_id, "type_id": 99}
    if alert.peer is not None:
        record["src_endpoint"] = {"name": alert.peer}
    return record
