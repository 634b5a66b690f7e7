"""The HTTP API as a client sees it: logins, roles, assets, pumps, events, audit."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session
from tests.server.conftest import Account, make_account

from pumpguard.clock import VirtualClock
from pumpguard.security_events import SecurityEventLog
from pumpguard.server import (
    AssetKind,
    AssetService,
    AssetState,
    EventRecord,
    IngestService,
    Role,
    ServerEventCode,
    Store,
)
from pumpguard.server.api import create_app


def log_in(client: TestClient, account: Account, clock: VirtualClock) -> dict[str, str]:
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


def as_role(server: Store, client: TestClient, clock: VirtualClock, role: Role) -> dict[str, str]:
    return log_in(client, make_account(server, f"u-{role.value.replace('_', '-')}", role), clock)


def test_login_me_logout(server: Store, client: TestClient, clock: VirtualClock) -> None:
    headers = as_role(server, client, clock, Role.NURSE)
    me = client.get("/api/v1/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["role"] == "nurse"
    assert "pumps.read" in me.json()["permissions"]
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    again = client.get("/api/v1/auth/me", headers=headers)
    assert again.status_code == 401
    assert again.headers["WWW-Authenticate"] == "Bearer"


def test_a_failed_login_is_401_and_still_recorded(
    server: Store, client: TestClient, clock: VirtualClock, events: SecurityEventLog
) -> None:
    account = make_account(server, "nina", Role.NURSE)
    response = client.post(
        "/api/v1/auth/login",
        json={"username": "nina", "password": "wrong", "totp": account.code(clock)},
    )
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"
    assert events.with_code(ServerEventCode.LOGIN_FAILED)
    with server.transaction() as session:
        assert server.ctx.audit(session).entries()[-1].action == "auth.login.failed"


def test_request_bodies_are_strict_and_errors_readable(
    client: TestClient, events: SecurityEventLog
) -> None:
    response = client.post(
        "/api/v1/auth/login",
        json={"username": "a", "password": "hunter2-secret", "totp": 123456, "admin": True},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request"
    assert {p["field"] for p in body["problems"]} == {"body.totp", "body.admin"}
    assert "body.totp" in body["detail"]
    assert "hunter2-secret" not in response.text
    assert events.with_code(ServerEventCode.INVALID_REQUEST)
    query = client.get("/api/v1/events?limit=x")  # who you are is checked before what you sent
    assert query.status_code == 401


def test_admin_creates_an_account_that_can_log_in(
    server: Store, client: TestClient, clock: VirtualClock
) -> None:
    admin = as_role(server, client, clock, Role.ADMIN)
    created = client.post(
        "/api/v1/users", json={"username": "phil", "role": "pharmacist"}, headers=admin
    )
    assert created.status_code == 201, created.text
    secret = created.json()["totp_uri"].split("secret=")[1].split("&")[0]
    import pyotp

    clock.advance(30_000)
    login = client.post(
        "/api/v1/auth/login",
        json={
            "username": "phil",
            "password": created.json()["password"],
            "totp": pyotp.TOTP(secret).at(clock.now_ms() // 1000),
        },
    )
    assert login.status_code == 200
    duplicate = client.post(
        "/api/v1/users", json={"username": "phil", "role": "nurse"}, headers=admin
    )
    assert duplicate.status_code == 409
    listed = client.get("/api/v1/users", headers=admin).json()
    assert {u["username"] for u in listed} == {"u-admin", "phil"}
    assert all("password" not in u for u in listed)
    assert client.post("/api/v1/users/u-admin/disable", headers=admin).status_code == 422
    assert client.post("/api/v1/users/phil/disable", headers=admin).json()["active"] is False


def test_biomed_runs_the_life_cycle_over_http(
    server: Store, client: TestClient, clock: VirtualClock
) -> None:
    biomed = as_role(server, client, clock, Role.BIOMED)
    asset = {
        "ident": "PUMP-0001",
        "kind": "lvp",
        "manufacturer": "Acme",
        "model": "Volumat",
        "serial_number": "SN1",
        "location": "ICU",
    }
    assert client.post("/api/v1/assets", json=asset, headers=biomed).status_code == 201
    illegal = client.post(
        "/api/v1/assets/PUMP-0001/transitions", json={"to": "in_service"}, headers=biomed
    )
    assert illegal.status_code == 409
    assert "cannot go from procured to in_service" in illegal.json()["detail"]
    onboarded = client.post(
        "/api/v1/assets/PUMP-0001/transitions",
        json={"to": "onboarded", "reason": "delivered"},
        headers=biomed,
    )
    assert onboarded.status_code == 200, onboarded.text
    assert onboarded.json()["certificate_issued"] is True
    assert onboarded.json()["asset"]["cert_serial"]
    credential = client.post("/api/v1/assets/PUMP-0001/credential", headers=biomed)
    assert credential.status_code == 200
    assert "PRIVATE KEY" in credential.json()["key_pem"]
    assert credential.json()["serial"] == format(int(onboarded.json()["asset"]["cert_serial"]), "X")
    again = client.post("/api/v1/assets/PUMP-0001/credential", headers=biomed)
    assert again.status_code == 404
    patched = client.patch(
        "/api/v1/assets/PUMP-0001", json={"location": "Med-Surg"}, headers=biomed
    )
    assert patched.json()["location"] == "Med-Surg"
    history = client.get("/api/v1/assets/PUMP-0001/history", headers=biomed).json()
    assert [h["to_state"] for h in history] == ["onboarded"]
    assert client.get("/api/v1/assets?state=onboarded", headers=biomed).json()[0]["ident"] == (
        "PUMP-0001"
    )
    assert client.get("/api/v1/assets/PUMP-9", headers=biomed).status_code == 404


def test_pump_status_and_events(server: Store, client: TestClient, clock: VirtualClock) -> None:
    with server.transaction() as session:
        AssetService(session, server.ctx).register("PUMP-1", AssetKind.PCA, "A", "B", "C", "t")
        AssetService(session, server.ctx).transition("PUMP-1", AssetState.ONBOARDED, "t")
        IngestService(session, server.ctx).ingest(
            [
                EventRecord("PUMP-1", 1, 10, "status", {"state": "running", "battery_pct": 55}),
                EventRecord("PUMP-1", 2, 11, "alarm", {"code": "occlusion"}),
            ]
        )
    nurse = as_role(server, client, clock, Role.NURSE)
    pumps = client.get("/api/v1/pumps", headers=nurse).json()
    assert [(p["device_id"], p["state"], p["battery_pct"]) for p in pumps] == [
        ("PUMP-1", "running", 55)
    ]
    assert client.get("/api/v1/pumps/PUMP-1", headers=nurse).json()["asset_state"] == "onboarded"
    assert client.get("/api/v1/pumps/PUMP-2", headers=nurse).status_code == 404
    assert client.get("/api/v1/events", headers=nurse).status_code == 403
    analyst = as_role(server, client, clock, Role.SECURITY_ANALYST)
    events = client.get("/api/v1/events?kind=alarm", headers=analyst).json()
    assert [e["body"] for e in events] == [{"code": "occlusion"}]
    assert client.get("/api/v1/events?limit=0", headers=analyst).status_code == 422


def test_audit_view_and_verify(server: Store, client: TestClient, clock: VirtualClock) -> None:
    analyst = as_role(server, client, clock, Role.SECURITY_ANALYST)
    entries = client.get("/api/v1/audit", headers=analyst).json()
    assert [e["action"] for e in entries] == ["user.created", "auth.login.succeeded"]
    verdict = client.get("/api/v1/audit/verify", headers=analyst).json()
    assert verdict["ok"] is True and verdict["entries"] == 2


def _request(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Any:
    concrete = (
        path.replace("{ident}", "PUMP-0001")
        .replace("{device_id}", "PUMP-0001")
        .replace("{username}", "nobody")
    )
    return client.request(method, concrete, headers=headers, json={})


def test_every_endpoint_but_login_requires_a_permission(client: TestClient) -> None:
    from pumpguard.server.api import endpoint_permissions

    table = endpoint_permissions(client.app)  # type: ignore[arg-type]
    public = {key for key, permission in table.items() if permission is None}
    api = {key for key in table if key[1].startswith("/api/v1")}
    assert public & api == {("POST", "/api/v1/auth/login")}
    assert len(api) >= 17


def test_role_by_endpoint_matrix(
    server: Store, client: TestClient, clock: VirtualClock, events: SecurityEventLog
) -> None:
    """Generated from the permission table: every role, every endpoint, no token at all."""
    from pumpguard.server import ROLE_PERMISSIONS
    from pumpguard.server.api import endpoint_permissions

    table = endpoint_permissions(client.app)  # type: ignore[arg-type]
    protected = {k: p for k, p in table.items() if p is not None}
    for (method, path), _permission in protected.items():
        response = _request(client, method, path, {})
        assert response.status_code == 401, (method, path, response.text)
    assert len(events.with_code(ServerEventCode.UNAUTHENTICATED)) == len(protected)
    for role in Role:
        headers = as_role(server, client, clock, role)
        for (method, path), permission in sorted(protected.items()):
            if (method, path) == ("POST", "/api/v1/auth/logout"):
                continue
            response = _request(client, method, path, headers)
            if permission in ROLE_PERMISSIONS[role]:
                assert response.status_code not in (401, 403), (role, method, path, response.text)
            else:
                assert response.status_code == 403, (role, method, path, response.text)
    forbidden = sum(
        1
        for role in Role
        for (method, path), permission in protected.items()
        if permission not in ROLE_PERMISSIONS[role]
    )
    assert len(events.with_code(ServerEventCode.FORBIDDEN)) == forbidden


def test_the_openapi_spec_is_served_and_declares_bearer_auth(client: TestClient) -> None:
    spec = client.get("/api/v1/openapi.json").json()
    assert spec["info"]["title"] == "pumpguard server"
    assert "/api/v1/assets/{ident}/transitions" in spec["paths"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "security" not in spec["paths"]["/api/v1/auth/login"]["post"]
    assert spec["paths"]["/api/v1/pumps"]["get"]["security"] == [{"HTTPBearer": []}]


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
_bodies = st.one_of(
    _json,
    st.fixed_dictionaries(
        {},
        optional={
            "username": st.text(max_size=70),
            "role": st.sampled_from([*(r.value for r in Role), "root"]),
            "ident": st.text(max_size=70),
            "kind": st.sampled_from(["lvp", "pca", "x"]),
            "manufacturer": st.text(max_size=140),
            "model": st.text(max_size=5),
            "serial_number": st.text(max_size=5),
            "location": st.text(max_size=140),
            "to": st.sampled_from([*(s.value for s in AssetState), "gone"]),
            "reason": st.text(max_size=30),
            "password": st.text(max_size=20),
            "totp": st.text(max_size=8),
            "current": st.text(max_size=20),
            "new": st.text(max_size=20),
        },
    ),
)


@pytest.fixture
def sessions(server: Store, client: TestClient, clock: VirtualClock) -> dict[str, dict[str, str]]:
    return {
        "admin": as_role(server, client, clock, Role.ADMIN),
        "biomed": as_role(server, client, clock, Role.BIOMED),
    }


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_no_request_body_makes_the_server_fail(
    client: TestClient, sessions: dict[str, dict[str, str]], data: st.DataObject
) -> None:
    """A small stand-in for schemathesis: random bodies and path values never give a 5xx."""
    from pumpguard.server.api import endpoint_permissions

    routes = sorted(
        key
        for key in endpoint_permissions(client.app)  # type: ignore[arg-type]
        if key[0] != "GET" and not key[1].endswith(("/logout", "/password"))
    )
    method, path = data.draw(st.sampled_from(routes))
    segment = data.draw(st.sampled_from(["PUMP-0001", "u-admin", "x" * 200, "%00", "..", "ü"]))
    headers = sessions[data.draw(st.sampled_from(sorted(sessions)))]
    concrete = re.sub(r"\{[a-z_]+\}", segment, path)
    response = client.request(method, concrete, headers=headers, json=data.draw(_bodies))
    assert response.status_code < 500, (method, concrete, response.text)


def test_a_failed_commit_is_never_answered_as_success(
    server: Store, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transaction ends before the response is sent: a commit that fails is a 500."""
    headers_client = TestClient(create_app(server), raise_server_exceptions=False)
    admin = as_role(server, headers_client, clock, Role.ADMIN)
    real = server.transaction

    @contextmanager
    def failing_commit() -> Iterator[Session]:
        with real() as session:
            yield session
            raise RuntimeError("disk full at commit")

    monkeypatch.setattr(server, "transaction", failing_commit)
    response = headers_client.post(
        "/api/v1/users", json={"username": "phil", "role": "nurse"}, headers=admin
    )
    assert response.status_code == 500
    monkeypatch.undo()
    listed = headers_client.get("/api/v1/users", headers=admin).json()
    assert "phil" not in {u["username"] for u in listed}
