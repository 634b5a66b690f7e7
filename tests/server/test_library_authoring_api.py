"""Drug library authoring over HTTP: two accounts through the whole flow, one account refused."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from importlib.resources import files
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update
from tests.server.conftest import Account, make_account

from pumpguard.clinical import parse_library
from pumpguard.clock import VirtualClock
from pumpguard.security_events import SecurityEventLog
from pumpguard.server import LibraryAuthoring, Role, ServerEventCode, Store, verify_audit_log
from pumpguard.server.api import create_app, endpoint_permissions
from pumpguard.server.api import library as library_api
from pumpguard.server.models import UserRow

EXAMPLE_TEXT = (files("pumpguard.data") / "example-drug-library.json").read_text(encoding="utf-8")
API = "/api/v1/library"


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store)) as test_client:
        yield test_client


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


def audit_actions(store: Store) -> list[str]:
    with store.transaction() as session:
        assert store.ctx.audit_key is not None
        assert verify_audit_log(session, store.ctx.audit_key.public_key).ok
        return [e.action for e in store.ctx.audit(session).entries(limit=10_000)]


def test_two_accounts_take_a_library_from_import_to_approval(
    store: Store, client: TestClient, clock: VirtualClock, events: SecurityEventLog
) -> None:
    phil = log_in(client, make_account(store, "phil", Role.PHARMACIST), clock)
    anna = log_in(client, make_account(store, "anna", Role.PHARMACY_APPROVER), clock)
    nina = log_in(client, make_account(store, "nina", Role.NURSE), clock)

    created = client.post(
        f"{API}/versions/import-json", json=json.loads(EXAMPLE_TEXT), headers=phil
    )
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1 and created.json()["state"] == "draft"
    version = client.get(f"{API}/versions/1", headers=nina).json()
    icu = next(a for a in version["care_area_list"] if a["name"] == "ICU")
    first = icu["entries"][0]
    hard_max = first["entry"]["continuous"]["hard_max"]
    tighter = {
        **first["entry"],
        "continuous": {**first["entry"]["continuous"], "hard_max": hard_max / 2},
    }
    tighter["continuous"].pop("soft_max", None)
    edited = client.put(f"{API}/versions/1/entries/{first['id']}", json=tighter, headers=phil)
    assert edited.status_code == 200, edited.text
    bad = {**tighter, "continuous": {"hard_min": 5, "hard_max": 1}}
    refused = client.put(f"{API}/versions/1/entries/{first['id']}", json=bad, headers=phil)
    assert refused.status_code == 422
    assert (
        f"care area 'ICU' > drug '{first['entry']['name']}' > continuous"
        in refused.json()["detail"]
    )
    area = client.post(
        f"{API}/versions/1/care-areas", json={"name": "Burns", "max_rate_ml_h": 600}, headers=phil
    )
    assert area.status_code == 201
    assert (
        client.delete(f"{API}/versions/1/care-areas/{area.json()['id']}", headers=phil).status_code
        == 204
    )

    assert client.post(f"{API}/versions/1/submit", headers=nina).status_code == 403
    assert client.post(f"{API}/versions/1/submit", headers=phil).json()["state"] == "submitted"
    assert client.post(f"{API}/versions/1/approve", json={}, headers=phil).status_code == 403
    approved = client.post(f"{API}/versions/1/approve", json={"note": "reviewed"}, headers=anna)
    assert approved.status_code == 200, approved.text
    assert approved.json()["approved_by"] == "anna" and approved.json()["contributors"] == ["phil"]

    exported = client.get(f"{API}/versions/1/json", headers=nina)
    library = parse_library(json.loads(exported.text, parse_float=Decimal))
    assert library.care_area("ICU") is not None
    assert library.care_area("ICU").entries[0].continuous.hard_max == Decimal(str(hard_max / 2))  # type: ignore[union-attr]
    with store.transaction() as session:
        latest = LibraryAuthoring(session, store.ctx).latest_approved()
    assert latest is not None and latest.library == library
    after = client.post(f"{API}/versions/1/care-areas", json={"name": "Late"}, headers=phil)
    assert after.status_code == 422 and "approved version never changes" in after.json()["detail"]
    assert events.with_code(ServerEventCode.LIBRARY_NOT_EDITABLE)

    copy = client.post(f"{API}/versions", json={"from_latest_approved": True}, headers=phil).json()
    assert copy["version"] == 2 and copy["base_version"] == 1
    diff = client.get(f"{API}/diff?from=1&to=2", headers=nina).json()
    assert diff["entries"] == [] and "no differences" in diff["text"]
    csv_text = client.get(f"{API}/versions/1/csv", headers=nina)
    assert csv_text.headers["content-type"].startswith("text/csv")
    imported = client.post(f"{API}/versions/import-csv", json={"csv": csv_text.text}, headers=phil)
    assert imported.status_code == 201, imported.text
    assert client.get(f"{API}/diff?from=1&to=3", headers=nina).json()["entries"] == []
    broken = csv_text.text.replace("ICU,", "ICU,abc", 1)
    bad_csv = client.post(f"{API}/versions/import-csv", json={"csv": broken}, headers=phil)
    assert bad_csv.status_code == 422
    assert "line 2, column care_area_max_rate_ml_h: 'abc" in bad_csv.json()["detail"]

    actions = audit_actions(store)
    for action in (
        "library.draft.created",
        "library.draft.edited",
        "library.submitted",
        "library.approved",
    ):
        assert action in actions, action
    assert not events.with_code(ServerEventCode.LIBRARY_SELF_APPROVAL)


def test_one_account_cannot_pass_the_two_person_rule(
    store: Store, client: TestClient, clock: VirtualClock, events: SecurityEventLog
) -> None:
    """The check the issue names: one account, whatever its role, cannot draft and approve."""
    account = make_account(store, "solo", Role.PHARMACIST)
    solo = log_in(client, account, clock)
    assert (
        client.post(
            f"{API}/versions/import-json", json=json.loads(EXAMPLE_TEXT), headers=solo
        ).status_code
        == 201
    )
    assert client.post(f"{API}/versions/1/submit", headers=solo).status_code == 200
    as_pharmacist = client.post(f"{API}/versions/1/approve", json={}, headers=solo)
    assert as_pharmacist.status_code == 403
    assert "library.approve" in as_pharmacist.json()["detail"]
    forbidden = events.with_code(ServerEventCode.FORBIDDEN)
    assert forbidden and forbidden[-1].attributes["username"] == "solo"

    # Accounts hold one role and there is no role-change command yet; an administrator with
    # database access (or a future one) promotes the same account to approver.
    with store.transaction() as session:
        session.execute(
            update(UserRow).where(UserRow.username == "solo").values(role="pharmacy_approver")
        )
    promoted = log_in(client, account, clock)
    self_approval = client.post(f"{API}/versions/1/approve", json={}, headers=promoted)
    assert self_approval.status_code == 403
    assert "two-person rule" in self_approval.json()["detail"]
    (event,) = events.with_code(ServerEventCode.LIBRARY_SELF_APPROVAL)
    assert event.attributes == {"username": "solo", "version": "1", "reason": "self-approval"}
    assert client.get(f"{API}/versions/1", headers=promoted).json()["state"] == "submitted"
    assert client.get(f"{API}/versions/1/json", headers=promoted).status_code == 200
    actions = audit_actions(store)
    assert "library.approval.refused" in actions and "library.approved" not in actions


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "detail"),
    [
        ("GET", "/versions/99", None, 404, "there is no drug library v99"),
        ("GET", "/diff?from=1&to=99", None, 404, "there is no drug library v99"),
        ("POST", "/versions/import-json", {"format": "x"}, 422, "format"),
        ("POST", "/versions/1/care-areas/12345/entries", {"name": "x"}, 404, "no care area"),
        ("POST", "/versions", {"library_id": "other", "name": "x"}, 422, "one library id"),
        ("POST", "/versions/import-csv", {"csv": "a,b\n1,2\n"}, 422, "line 1, column a: unknown"),
        ("POST", "/versions/1/reject", {"note": ""}, 403, "library.approve"),
        ("GET", "/versions/4294967296", None, 422, "version"),
        ("POST", "/versions/1/care-areas", {"name": "a\u0000b"}, 422, "NUL characters"),
    ],
)
def test_bad_requests_get_specific_errors(
    store: Store,
    client: TestClient,
    clock: VirtualClock,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    detail: str,
) -> None:
    phil = log_in(client, make_account(store, "phil", Role.PHARMACIST), clock)
    imported = client.post(
        f"{API}/versions/import-json", json=json.loads(EXAMPLE_TEXT), headers=phil
    )
    assert imported.status_code == 201
    response = client.request(method, f"{API}{path}", json=body, headers=phil)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=100),
)
_entryish = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=90),
        "code": st.text(max_size=45),
        "dose_unit": st.sampled_from(["mL/h", "mcg/kg/min", "units", "x", ""]),
        "continuous": st.dictionaries(
            st.sampled_from(["hard_min", "soft_min", "soft_max", "hard_max", "x"]), _values
        ),
        "concentration": st.dictionaries(st.sampled_from(["amount", "unit", "volume_ml"]), _values),
        "pump_kinds": st.lists(st.sampled_from(["lvp", "pca", "x"]), max_size=3),
        "sources": st.lists(st.text(max_size=5), max_size=2),
        "max_rate_ml_h": _values,
        "csv": st.text(max_size=200),
        "note": st.text(max_size=50),
        "base_version": _values,
        "library_id": _values,
    },
)


@pytest.fixture
def drafter_and_approver(
    store: Store, client: TestClient, clock: VirtualClock
) -> tuple[dict[str, str], dict[str, str]]:
    phil = log_in(client, make_account(store, "fuzz-phil", Role.PHARMACIST), clock)
    anna = log_in(client, make_account(store, "fuzz-anna", Role.PHARMACY_APPROVER), clock)
    client.post(f"{API}/versions/import-json", json=json.loads(EXAMPLE_TEXT), headers=phil)
    return phil, anna


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_no_library_request_makes_the_server_fail(
    client: TestClient,
    drafter_and_approver: tuple[dict[str, str], dict[str, str]],
    data: st.DataObject,
) -> None:
    """Random bodies and path values at every library route, as a drafter and an approver."""
    phil, anna = drafter_and_approver
    routes = sorted(k for k in endpoint_permissions(library_api.router))
    method, path = data.draw(st.sampled_from(routes))
    segment = data.draw(st.sampled_from(["1", "2", "99", "0", "-1", "x", "9" * 30, "%00"]))
    concrete = re.sub(r"\{[a-z_]+\}", segment, path)
    headers = data.draw(st.sampled_from([phil, anna]))
    body = data.draw(st.one_of(_entryish, st.lists(_values, max_size=2), _values))
    response = client.request(method, concrete, headers=headers, json=body)
    assert response.status_code < 500, (method, concrete, body, response.text)
