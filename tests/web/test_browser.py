"""The dashboard in a real browser against a real ``pumpguard up --demo --demo-ehr-port``
stack: log in with MFA, see the fleet, import and submit a library as a pharmacist, approve it
as a second person, guess passwords as an attacker, launch a catalogue attack in the lab as the
analyst, launch a live attack at the running server and follow its alert, and see the alert
the guessing raised. Screenshots go to ``build/screenshots/`` (test artefacts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from tests.server.conftest import Account, make_account
from tests.web.live import RunningStack

from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.server import Role
from pumpguard.server.runtime import Stack

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install chromium)",
)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Stack]:
    running = RunningStack(tmp_path / "data")
    try:
        yield running.start()
    finally:
        running.stop()


def _code(account: Account) -> str:
    return pyotp.TOTP(account.credentials.totp_secret).now()


def test_log_in_see_fleet_approve_attack_and_alert(live: Stack, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import expect

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pharmacist = make_account(live.store, "phil", Role.PHARMACIST)
    approver = make_account(live.store, "anna", Role.PHARMACY_APPROVER)
    analyst = make_account(live.store, "sam", Role.SECURITY_ANALYST)
    base = f"https://127.0.0.1:{live.http_port}"

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            ignore_https_errors=True,  # the stack's own CA signed the listener
            java_script_enabled=False,  # the dashboard must work without scripts
        )
        page = browser.pages[0] if browser.pages else browser.new_page()
        page.set_default_timeout(30_000)

        def log_in(account: Account) -> None:
            page.goto(f"{base}/")
            expect(page).to_have_url(f"{base}/login")
            page.get_by_label("Username").fill(account.username)
            page.get_by_label("Password").fill(account.password)
            page.get_by_label("One-time code").fill(_code(account))
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(f"{base}/fleet")

        def log_out() -> None:
            page.get_by_role("button", name="Log out").click()
            expect(page).to_have_url(f"{base}/login")

        page.goto(f"{base}/login")
        page.keyboard.press("Tab")
        expect(page.locator(":focus")).to_have_text("Skip to content")
        page.screenshot(path=str(SCREENSHOTS / "01-login.png"))

        log_in(pharmacist)
        for _ in range(60):
            if page.get_by_role("rowheader", name="PUMP-0001").count():
                break
            page.wait_for_timeout(500)
            page.reload()
        expect(page.get_by_role("rowheader", name="PUMP-0024")).to_be_visible()
        expect(page.get_by_role("img", name="Pumps by state")).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "02-fleet.png"), full_page=True)

        page.get_by_role("link", name="Drug library").click()
        page.get_by_text("Import a drug library file as a new draft").click()
        page.get_by_label("Drug library JSON").fill(EXAMPLE_LIBRARY.read_text(encoding="utf-8"))
        page.get_by_role("button", name="Import as draft").click()
        expect(page.get_by_role("status")).to_contain_text("Draft v1 imported")
        page.get_by_role("button", name="Submit for approval").click()
        expect(page.locator("#version-state")).to_have_text("submitted")
        log_out()

        log_in(approver)
        page.goto(f"{base}/library/1")
        page.get_by_label("Approval note").fill("checked against the pharmacy's references")
        page.get_by_role("button", name="Approve").click()
        expect(page.locator("#version-state")).to_have_text("approved")
        page.screenshot(path=str(SCREENSHOTS / "03-library-approved.png"), full_page=True)
        log_out()

        for guess in ("000000", "111111", "222222", "333333", "444444"):
            page.get_by_label("Username").fill("mallory")
            page.get_by_label("Password").fill("Winter2026!")
            page.get_by_label("One-time code").fill(guess)
            page.get_by_role("button", name="Log in").click()
            expect(page.locator("#login-error")).to_contain_text("login refused")

        log_in(analyst)
        page.get_by_role("link", name="Attacks").click()
        page.get_by_label("Attack", exact=True).select_option("unsigned-library-push")
        page.get_by_role("button", name="Launch in the lab").click()
        verdict = page.locator("section.lab-verdict")
        expect(verdict).to_contain_text("signature-threshold")
        page.screenshot(path=str(SCREENSHOTS / "04-attack-verdict.png"), full_page=True)

        page.get_by_label("Live attack", exact=True).select_option("order-unauthenticated-host")
        page.get_by_role("button", name="Launch against the live system").click()
        live_verdict = page.locator("section.live-verdict")
        expect(live_verdict).to_contain_text("blocked, alerted")
        expect(live_verdict).to_contain_text("mutual-tls")
        expect(live_verdict).to_contain_text("PG-TLS-001")
        page.screenshot(path=str(SCREENSHOTS / "05-live-attack.png"), full_page=True)
        alert_link = (
            live_verdict.get_by_role("row").filter(has_text="PG-TLS-001").get_by_role("link")
        )
        alert_link.first.click()
        expect(page.locator("h1")).to_contain_text("Device connection refused")
        expect(page.get_by_role("cell", name="pki.tls.unknown_ca").first).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "06-live-alert.png"), full_page=True)

        page.get_by_role("link", name="Alerts", exact=True).click()
        alert_row = page.get_by_role("row").filter(has_text="Repeated failed logins")
        for _ in range(40):
            if alert_row.count():
                break
            page.wait_for_timeout(250)
            page.reload()
        expect(alert_row.first).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "07-alerts.png"), full_page=True)
        alert_row.first.get_by_role("link").first.click()
        page.get_by_role("button", name="Acknowledge").click()
        expect(page.locator("#alert-state")).to_have_text("acknowledged")
        browser.close()
