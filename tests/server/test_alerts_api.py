"""The alert and incident endpoints as an analyst and the other roles see them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from tests.server.conftest import make_account
from tests.server.test_alert_store import detection, record

from pumpguard.clock import VirtualClock
from pumpguard.server import Role, Store
from pumpguard.server.api import create_app

MIN = 60_000


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store)) as test_client:
        yield test_client


def login(store: Store, client: TestClient, clock: VirtualClock, role: Role) -> dict[str, str]:
    account = make_account(store, f"u-{role.value.replace('_', '-')}", role)
    clock.advance(30_000)
    response = client.post(
        "/api/v1/auth/login",
        json={
            "username": account.username,
            "password": account.password,
            "totp": account.code(clock),
        },
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def test_an_analyst_works_an_alert_through_its_life_cycle(
    store: Store, client: TestClient, clock: VirtualClock
) -> None:
    first = record(store, detection(clock))
    clock.advance(MIN)
    record(store, detection(clock))
    other = record(store, detection(clock, analytic="PG-LINK-002"))
    analyst = login(store, client, clock, Role.SECURITY_ANALYST)

    listed = client.get("/api/v1/alerts", headers=analyst).json()
    assert {a["alert_id"] for a in listed} == {first, other}
    one = client.get(f"/api/v1/alerts/{first}", headers=analyst).json()
    assert one["count"] == 2 and one["rule"] == "PG-LINK-001" and one["state"] == "new"
    assert [e["code"] for e in one["evidence"]] == ["link.replay", "link.replay"]
    assert one["technique"] == "T0855"

    ack = client.post(f"/api/v1/alerts/{first}/acknowledge", headers=analyst, json={})
    assert ack.status_code == 200 and ack.json()["state"] == "acknowledged"
    assert ack.json()["history"][-1]["actor"] == "u-security-analyst"
    again = client.post(f"/api/v1/alerts/{first}/acknowledge", headers=analyst, json={})
    assert again.status_code == 409 and "acknowledged" in again.json()["detail"]
    no_note = client.post(f"/api/v1/alerts/{first}/resolve", headers=analyst, json={})
    assert no_note.status_code == 422
    blank = client.post(f"/api/v1/alerts/{first}/resolve", headers=analyst, json={"note": "  "})
    assert blank.status_code == 422 and "note" in blank.json()["detail"]
    done = client.post(
        f"/api/v1/alerts/{first}/resolve", headers=analyst, json={"note": "counter reset by a bug"}
    )
    assert done.status_code == 200
    assert [h["state"] for h in done.json()["history"]] == ["new", "acknowledged", "resolved"]
    assert done.json()["history"][-1]["note"] == "counter reset by a bug"

    resolved = client.get("/api/v1/alerts?state=resolved", headers=analyst).json()
    assert [a["alert_id"] for a in resolved] == [first]
    assert (
        client.get("/api/v1/alerts?rule=PG-LINK-002", headers=analyst).json()[0]["alert_id"]
        == other
    )
    assert client.get("/api/v1/alerts?severity=critical", headers=analyst).json() == []
    assert (
        len(client.get("/api/v1/alerts?severity=high&device=PUMP-0001", headers=analyst).json())
        == 2
    )
    assert client.get(f"/api/v1/alerts?since={clock.now_ms() + 1}", headers=analyst).json() == []
    bad = client.get("/api/v1/alerts?severity=urgent", headers=analyst)
    assert bad.status_code == 422 and "severity must be one of" in bad.json()["detail"]
    assert client.get("/api/v1/alerts/ALR-404404", headers=analyst).status_code == 404

    audit = client.get("/api/v1/audit", headers=analyst).json()
    assert [(e["action"], e["actor"]) for e in audit if e["action"].startswith("alert.")] == [
        ("alert.acknowledged", "u-security-analyst"),
        ("alert.resolved", "u-security-analyst"),
    ]

    incidents = client.get("/api/v1/incidents", headers=analyst).json()
    assert len(incidents) == 1 and incidents[0]["alert_ids"] == [first, other]
    assert incidents[0]["open"] is True and incidents[0]["device_ids"] == ["PUMP-0001"]
    detail = client.get(f"/api/v1/incidents/{incidents[0]['incident_id']}", headers=analyst)
    assert [a["state"] for a in detail.json()["alerts"]] == ["resolved", "new"]
    assert client.get("/api/v1/incidents/INC-999999", headers=analyst).status_code == 404


def test_reading_roles_cannot_change_alerts(
    store: Store, client: TestClient, clock: VirtualClock
) -> None:
    alert_id = record(store, detection(clock))
    biomed = login(store, client, clock, Role.BIOMED)
    assert client.get(f"/api/v1/alerts/{alert_id}", headers=biomed).status_code == 200
    refused = client.post(f"/api/v1/alerts/{alert_id}/acknowledge", headers=biomed, json={})
    assert refused.status_code == 403
    nurse = login(store, client, clock, Role.NURSE)
    assert client.get("/api/v1/alerts", headers=nurse).status_code == 403


def test_odd_ids_and_bodies_are_refused_not_failed(
    store: Store, client: TestClient, clock: VirtualClock
) -> None:
    analyst = login(store, client, clock, Role.SECURITY_ANALYST)
    for segment in ["x" * 200, "%00", "..", "ü", "ALR-000001"]:
        for method, path, body in [
            ("GET", f"/api/v1/alerts/{segment}", None),
            ("GET", f"/api/v1/incidents/{segment}", None),
            ("POST", f"/api/v1/alerts/{segment}/acknowledge", {"note": 5}),
            ("POST", f"/api/v1/alerts/{segment}/resolve", {"note": "x", "extra": 1}),
            ("POST", f"/api/v1/alerts/{segment}/resolve", {"note": "x" * 3000}),
        ]:
            response = client.request(method, path, headers=analyst, json=body)
            assert response.status_code in (404, 422), (method, path, response.text)
    for query in ["state=open", "since=-1", "limit=0", "device=" + "x" * 65, "rule=%00"]:
        response = client.get(f"/api/v1/alerts?{query}", headers=analyst)
        assert response.status_code == 422, (query, response.text)
