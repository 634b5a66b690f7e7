"""The dashboard's live attack launcher on a real ``up --demo --demo-ehr-port`` stack, over
its own HTTPS listener: the security analyst launches an attack and sees the live system's
verdict and the alert; without the permission, without the anti-forgery token, or on a server
whose live attacks are off, nothing is launched."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pyotp
import pytest
from tests.server.conftest import Account, make_account
from tests.server.runtime.support import security_events
from tests.web.live import RunningStack
from tests.web.support import csrf_of

from pumpguard.server import Role
from pumpguard.server.alert_store import AlertStore
from pumpguard.server.audit import AuditAction
from pumpguard.server.runtime import Stack

_ALERT_LINK = re.compile(r'<a href="/alerts/([A-Za-z0-9-]+)">')


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = RunningStack(tmp_path_factory.mktemp("launcher") / "data")
    try:
        yield running.start()
    finally:
        running.stop()


@contextmanager
def _browser(stack: Stack, account: Account) -> Iterator[httpx.Client]:
    """An HTTPS client logged in through the form, with its session cookie."""
    with httpx.Client(
        base_url=f"https://127.0.0.1:{stack.http_port}",
        verify=ssl.create_default_context(cafile=stack.ca.directory / "ca.pem"),
        timeout=60,
    ) as client:
        form = client.get("/login")
        response = client.post(
            "/login",
            data={
                "csrf": csrf_of(form.text),
                "username": account.username,
                "password": account.password,
                "totp": pyotp.TOTP(account.credentials.totp_secret).now(),
            },
        )
        assert response.status_code == 303, response.text
        yield client


def _unknown_ca_events(stack: Stack) -> int:
    return sum(1 for e in security_events(stack) if e.code == "pki.tls.unknown_ca")


def test_the_analyst_launches_a_live_attack_and_sees_its_alert(live: Stack) -> None:
    analyst = make_account(live.store, "sara", Role.SECURITY_ANALYST)
    with _browser(live, analyst) as browser:
        page = browser.get("/attacks")
        assert page.status_code == 200 and "Launch against the live system" in page.text
        assert "<script" not in page.text.lower()
        launched = browser.post(
            "/attacks/live", data={"csrf": csrf_of(page.text), "attack": "rogue-pump"}
        )
        assert launched.status_code == 200, launched.text
        assert "rogue-pump against mqtts://" in launched.text
        assert ": blocked, alerted" in launched.text
        assert ">mutual-tls<" in launched.text
        alert_ids = _ALERT_LINK.findall(launched.text)
        assert alert_ids
        with live.store.transaction() as session:
            stored = AlertStore(session, live.store.ctx).get(alert_ids[0])
        assert stored.analytic_id == "PG-TLS-001"
        shown = browser.get(f"/alerts/{alert_ids[0]}")
        assert shown.status_code == 200 and "pki.tls.unknown_ca" in shown.text
        with live.store.transaction() as session:
            entries = live.store.ctx.audit(session).entries(limit=10_000)
        launches = [e for e in entries if e.action == AuditAction.ATTACK_LAUNCHED]
        assert [(e.actor, e.subject) for e in launches] == [("sara", "attack:rogue-pump")]
        assert launches[0].details_dict()["blocked"] == "true"
        assert "PG-TLS-001" in str(launches[0].details_dict()["alerts"])

        unknown = browser.post(
            "/attacks/live", data={"csrf": csrf_of(page.text), "attack": "no-such-attack"}
        )
        assert unknown.status_code == 422 and "no live attack is called" in unknown.text


def test_no_launch_without_the_permission_or_the_token(live: Stack) -> None:
    analyst = make_account(live.store, "tom", Role.SECURITY_ANALYST)
    admin = make_account(live.store, "ada", Role.ADMIN)
    before = _unknown_ca_events(live)
    with _browser(live, analyst) as browser:
        forged = browser.post("/attacks/live", data={"csrf": "0" * 64, "attack": "rogue-pump"})
        assert forged.status_code == 403 and "anti-forgery" in forged.text
        bare = browser.post("/attacks/live", data={"attack": "rogue-pump"})
        assert bare.status_code == 403
    with _browser(live, admin) as browser:
        token = csrf_of(browser.get("/fleet").text)
        assert 'href="/attacks"' not in browser.get("/fleet").text
        denied = browser.post("/attacks/live", data={"csrf": token, "attack": "rogue-pump"})
        assert denied.status_code == 403 and "lacks the permission attacks.launch" in denied.text
        assert browser.get("/attacks").status_code == 403
    assert _unknown_ca_events(live) == before  # nothing reached the broker


def test_a_server_without_live_attacks_refuses_to_launch(tmp_path: Path) -> None:
    running = RunningStack(tmp_path / "data", demo=False, demo_ehr=False, live_attacks=False)
    stack = running.start()
    try:
        analyst = make_account(stack.store, "sam", Role.SECURITY_ANALYST)
        before = _unknown_ca_events(stack)
        with _browser(stack, analyst) as browser:
            page = browser.get("/attacks")
            assert page.status_code == 200 and "Live attacks are off on this server" in page.text
            assert 'action="/attacks/live"' not in page.text
            refused = browser.post(
                "/attacks/live", data={"csrf": csrf_of(page.text), "attack": "rogue-pump"}
            )
            assert refused.status_code == 403
            assert "Live attacks are off on this server" in refused.text
        assert _unknown_ca_events(stack) == before
    finally:
        running.stop()
