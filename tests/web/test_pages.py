"""The dashboard over HTTP: login with MFA, each page for the roles that may and may not see
it, CSRF on every form, the two-person library approval through forms, and no script."""

from __future__ import annotations

import html
import json
import re

import pytest
from fastapi.testclient import TestClient
from tests.server.test_alert_store import detection, record
from tests.server.test_library_authoring import example, principal
from tests.web.support import as_role, csrf_of, log_in, make_account, post_form

from pumpguard.clock import VirtualClock
from pumpguard.security_events import SecurityEventLog
from pumpguard.server import Role, Store
from pumpguard.server.assets import AssetKind, AssetService
from pumpguard.server.ingest import EventRecord, IngestService
from pumpguard.server.library_authoring import LibraryAuthoring, VersionState
from pumpguard.server.lifecycle import AssetState


def _approved_library(server: Store) -> int:
    """v1 of the example library, drafted by one pharmacist and approved by an approver."""
    drafter = principal(server, "seed-pharm", Role.PHARMACIST)
    approver = principal(server, "seed-approver", Role.PHARMACY_APPROVER)
    with server.transaction() as session:
        service = LibraryAuthoring(session, server.ctx)
        version = service.import_json(drafter, example()).version
        service.submit(version, drafter)
        service.approve(version, approver, "seed")
    return version


def test_login_needs_password_and_code_and_sets_a_strict_cookie(
    server: Store, web: TestClient, clock: VirtualClock
) -> None:
    account = make_account(server, "nina", Role.NURSE)
    assert web.get("/fleet").headers["location"] == "/login"
    clock.advance(30_000)
    form = web.get("/login")
    assert form.status_code == 200 and 'name="totp"' in form.text
    token = csrf_of(form.text)
    wrong = web.post(
        "/login",
        data={"csrf": token, "username": "nina", "password": account.password, "totp": "000000"},
    )
    assert wrong.status_code == 401 and "login refused" in wrong.text
    assert "pg_session" not in web.cookies
    good = web.post(
        "/login",
        data={
            "csrf": token,
            "username": "nina",
            "password": account.password,
            "totp": account.code(clock),
        },
    )
    assert good.status_code == 303 and good.headers["location"] == "/fleet"
    cookie = next(
        h for h in good.headers.get_list("set-cookie") if h.startswith("pg_session=")
    ).lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie
    assert web.get("/fleet").status_code == 200


def test_a_one_time_code_is_refused_the_second_time(
    server: Store, web: TestClient, clock: VirtualClock
) -> None:
    account = make_account(server, "nina", Role.NURSE)
    log_in(web, account, clock)
    web.cookies.clear()
    form = web.get("/login")
    again = web.post(
        "/login",
        data={
            "csrf": csrf_of(form.text),
            "username": "nina",
            "password": account.password,
            "totp": account.code(clock),
        },
    )
    assert again.status_code == 401


def test_the_login_form_needs_its_csrf_token(
    server: Store, web: TestClient, clock: VirtualClock
) -> None:
    account = make_account(server, "nina", Role.NURSE)
    web.get("/login")
    forged = web.post(
        "/login",
        data={"username": "nina", "password": account.password, "totp": account.code(clock)},
    )
    assert forged.status_code == 403 and "expired" in forged.text
    assert "pg_session" not in web.cookies


def test_logout_ends_the_server_session(
    server: Store, web: TestClient, clock: VirtualClock
) -> None:
    as_role(server, web, clock, Role.NURSE)
    stolen = web.cookies["pg_session"]
    out = post_form(web, "/fleet", "/logout")
    assert out.status_code == 303
    web.cookies.set("pg_session", stolen, domain="testserver.local")
    assert web.get("/fleet").headers["location"] == "/login"


PAGES = [
    ("/fleet", Role.NURSE, None),
    ("/alerts", Role.SECURITY_ANALYST, Role.NURSE),
    ("/library", Role.PHARMACIST, None),
    ("/orders", Role.NURSE, Role.BIOMED),
    ("/audit", Role.ADMIN, Role.PHARMACIST),
    ("/risk", Role.BIOMED, Role.NURSE),
    ("/attacks", Role.SECURITY_ANALYST, Role.ADMIN),
]


@pytest.mark.parametrize(("path", "allowed", "refused"), PAGES, ids=[p[0] for p in PAGES])
def test_each_page_obeys_the_role_table(
    server: Store,
    web: TestClient,
    clock: VirtualClock,
    events: SecurityEventLog,
    path: str,
    allowed: Role,
    refused: Role | None,
) -> None:
    as_role(server, web, clock, allowed)
    page = web.get(path)
    assert page.status_code == 200, page.text
    assert "<script" not in page.text.lower()
    assert "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert 'href="#main"' in page.text  # skip link
    if refused is None:
        return
    web.cookies.clear()
    as_role(server, web, clock, refused)
    denied = web.get(path)
    assert denied.status_code == 403 and "lacks the permission" in denied.text
    assert list(events)[-1].code == "server.auth.forbidden"
    assert f'href="{path}"' not in denied.text  # the menu only offers what the role may see


def test_fleet_shows_each_pump(server: Store, web: TestClient, clock: VirtualClock) -> None:
    with server.transaction() as session:
        AssetService(session, server.ctx).register("PUMP-1", AssetKind.LVP, "A", "B", "C", "t")
        AssetService(session, server.ctx).transition("PUMP-1", AssetState.ONBOARDED, "t")
        IngestService(session, server.ctx).ingest(
            [
                EventRecord(
                    "PUMP-1",
                    1,
                    10,
                    "status",
                    {
                        "state": "infusing",
                        "programme": "Heparin 18 units/kg/h",
                        "battery_pct": 55,
                        "firmware_version": "2.1.0",
                        "library_version": "7",
                    },
                )
            ]
        )
    as_role(server, web, clock, Role.NURSE)
    page = web.get("/fleet").text
    row = re.search(r"<tr>\s*<th scope=\"row\">PUMP-1</th>(.*?)</tr>", page, re.S)
    assert row is not None
    cells = re.findall(r"<td>(.*?)</td>", row.group(1), re.S)
    text = [re.sub(r"<[^>]+>", "", c).strip() for c in cells]
    assert text[1:6] == ["infusing", "Heparin 18 units/kg/h", "55 %", "2.1.0", "7"]
    assert "<svg" in page and 'role="img"' in page


def test_a_form_without_its_csrf_token_changes_nothing(
    server: Store, web: TestClient, clock: VirtualClock, events: SecurityEventLog
) -> None:
    _approved_library(server)
    as_role(server, web, clock, Role.PHARMACIST)
    for data in ({}, {"csrf": "0" * 64}):
        refused = web.post("/library/drafts", data=data)
        assert refused.status_code == 403 and "anti-forgery" in refused.text
        assert list(events)[-1].attributes["reason"] == "csrf"
    with server.transaction() as session:
        assert len(LibraryAuthoring(session, server.ctx).versions()) == 1
    made = post_form(web, "/library", "/library/drafts")
    assert made.status_code == 200 and "Draft v2 created" in made.text


def test_two_people_approve_a_library_through_the_forms(
    server: Store, web: TestClient, clock: VirtualClock, events: SecurityEventLog
) -> None:
    _approved_library(server)
    pharmacist = make_account(server, "phil", Role.PHARMACIST)
    approver = make_account(server, "anna", Role.PHARMACY_APPROVER)
    log_in(web, pharmacist, clock)
    made = post_form(web, "/library", "/library/drafts")
    assert "Draft v2 created" in made.text
    page = web.get("/library/2").text
    entry_id, body = re.search(
        r'action="/library/2/entries/(\d+)".*?<textarea[^>]*>(.*?)</textarea>', page, re.S
    ).groups()  # type: ignore[union-attr]
    entry = json.loads(html.unescape(body))
    entry["continuous"]["hard_max"] = entry["continuous"]["hard_max"] - 4
    saved = post_form(web, "/library/2", f"/library/2/entries/{entry_id}", entry=json.dumps(entry))
    assert "Entry saved" in saved.text
    bad = post_form(web, "/library/2", f"/library/2/entries/{entry_id}", entry="{not json")
    assert bad.status_code == 422 and "not valid JSON" in bad.text
    submitted = post_form(web, "/library/2", "/library/2/submit")
    assert "submitted for approval" in submitted.text
    own = post_form(web, "/library/2", "/library/2/approve", note="")
    assert own.status_code == 403

    web.cookies.clear()
    log_in(web, approver, clock)
    diff = web.get("/library/diff?from=1&to=2")
    assert diff.status_code == 200 and "hard_max" in diff.text and "tightened" in diff.text
    page = web.get("/library/2").text
    assert 'action="/library/2/approve"' in page and 'action="/library/2/submit"' not in page
    no_note = post_form(web, "/library/2", "/library/2/reject", note=" ")
    assert no_note.status_code == 422
    approved = post_form(web, "/library/2", "/library/2/approve", note="checked")
    assert approved.status_code == 200 and "v2 approved" in approved.text
    with server.transaction() as session:
        info = LibraryAuthoring(session, server.ctx).get(2)
    assert info.state is VersionState.APPROVED
    assert info.decided_by == "anna" and info.submitted_by == "phil"


def test_an_approver_rejects_with_a_note_through_the_form(
    server: Store, web: TestClient, clock: VirtualClock
) -> None:
    version = _approved_library(server)
    drafter = principal(server, "helper", Role.PHARMACIST)
    with server.transaction() as session:
        service = LibraryAuthoring(session, server.ctx)
        draft = service.create_draft(drafter, base_version=version).version
        service.submit(draft, drafter)
    as_role(server, web, clock, Role.PHARMACY_APPROVER)
    page = f"/library/{draft}"
    done = post_form(web, page, f"{page}/reject", note="heparin cap missing")
    assert done.status_code == 200 and f"v{draft} rejected" in done.text
    with server.transaction() as session:
        info = LibraryAuthoring(session, server.ctx).get(draft)
    assert info.state is VersionState.REJECTED and info.decision_note == "heparin cap missing"
    again = post_form(web, page, f"{page}/approve", note="")
    assert again.status_code == 422 and "rejected" in again.text


def test_an_analyst_acknowledges_and_resolves_an_alert(
    server: Store, web: TestClient, clock: VirtualClock
) -> None:
    alert_id = record(server, detection(clock))
    as_role(server, web, clock, Role.SECURITY_ANALYST)
    listed = web.get("/alerts")
    assert f'href="/alerts/{alert_id}"' in listed.text
    page = f"/alerts/{alert_id}"
    ack = post_form(web, page, f"{page}/acknowledge", note="looking")
    assert "Acknowledged." in ack.text and ">acknowledged<" in ack.text
    empty = post_form(web, page, f"{page}/resolve", note="")
    assert empty.status_code == 422
    done = post_form(web, page, f"{page}/resolve", note="replay from the lab bench")
    assert ">resolved<" in done.text and "replay from the lab bench" in done.text
    assert 'action="' + page + '/resolve"' not in done.text


def test_biomed_reads_alerts_but_has_no_forms(
    server: Store, web: TestClient, clock: VirtualClock
) -> None:
    alert_id = record(server, detection(clock))
    as_role(server, web, clock, Role.BIOMED)
    page = web.get(f"/alerts/{alert_id}")
    assert page.status_code == 200 and "/acknowledge" not in page.text
    token = csrf_of(page.text)
    refused = web.post(f"/alerts/{alert_id}/acknowledge", data={"csrf": token})
    assert refused.status_code == 403


def test_the_audit_page_verifies_the_chain(
    server: Store, web: TestClient, clock: VirtualClock
) -> None:
    as_role(server, web, clock, Role.ADMIN)
    page = web.get("/audit")
    assert "user.created" in page.text and "auth.login.succeeded" in page.text
    verified = post_form(web, "/audit", "/audit/verify")
    assert "Chain intact" in verified.text


def test_the_risk_page_renders_the_example_inventory(
    server: Store, web: TestClient, clock: VirtualClock
) -> None:
    as_role(server, web, clock, Role.BIOMED)
    page = web.get("/risk")
    assert "ICSMA-" in page.text and "<svg" in page.text
    report = web.get("/risk/report")
    assert report.status_code == 200 and "<script" not in report.text.lower()


def test_the_attack_launcher_runs_both_profiles_in_the_lab(
    server: Store, web: TestClient, clock: VirtualClock
) -> None:
    as_role(server, web, clock, Role.SECURITY_ANALYST)
    ran = post_form(web, "/attacks", "/attacks/run", attack="unsigned-library-push")
    text = ran.text
    rows = re.findall(r'<th scope="row">(legacy|secure)</th>\s*<td class="(ok|bad)">', text)
    assert rows == [("legacy", "bad"), ("secure", "ok")]
    assert "signature-threshold" in text
    unknown = post_form(web, "/attacks", "/attacks/run", attack="no-such-attack")
    assert unknown.status_code == 422 and "unknown attack" in unknown.text


def test_live_attacks_are_refused_where_the_server_does_not_enable_them(
    server: Store, web: TestClient, clock: VirtualClock
) -> None:
    as_role(server, web, clock, Role.SECURITY_ANALYST)
    page = web.get("/attacks")
    assert "Live attacks are off on this server" in page.text
    assert 'action="/attacks/live"' not in page.text
    refused = post_form(web, "/attacks", "/attacks/live", attack="rogue-pump")
    assert refused.status_code == 403 and "only `pumpguard up --demo`" in refused.text


def test_bad_parameters_get_a_readable_page(
    server: Store, web: TestClient, clock: VirtualClock
) -> None:
    as_role(server, web, clock, Role.PHARMACIST)
    missing = web.get("/library/99")
    assert missing.status_code == 404 and "v99" in missing.text
    assert web.get("/library/diff?from=a&to=2").status_code == 422
    assert web.get("/orders?status=nope").status_code == 422


def test_an_idle_session_sends_the_browser_back_to_login(
    server: Store, web: TestClient, clock: VirtualClock, events: SecurityEventLog
) -> None:
    as_role(server, web, clock, Role.NURSE)
    clock.advance(server.ctx.settings.session_idle_ms + 1)
    page = web.get("/fleet")
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert list(events)[-1].code == "server.auth.unauthenticated"
    assert (
        'pg_session=""' in page.headers["set-cookie"] or "Max-Age=0" in page.headers["set-cookie"]
    )


def test_the_stylesheet_is_served_from_the_package(web: TestClient) -> None:
    css = web.get("/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in css.text


def test_the_page_table_of_the_docs_names_each_menu_page_permission() -> None:
    from pathlib import Path

    from pumpguard.web._pages import NAV

    doc = (Path(__file__).resolve().parents[2] / "docs" / "dashboard.md").read_text()
    for item in NAV:
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{item.href}`"))
        assert f"| `{item.permission}` |" in row, row
