"""Helpers of the dashboard tests: log in through the form, submit forms with their token."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient
from tests.server.conftest import Account, make_account

from pumpguard.clock import VirtualClock
from pumpguard.server import Role, Store

__all__ = ["as_role", "csrf_of", "log_in", "make_account", "post_form"]

_CSRF = re.compile(r'name="csrf" value="([0-9A-Za-z_\-]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)


def log_in(client: TestClient, account: Account, clock: VirtualClock) -> None:
    """Log in through the login form, as a browser does; leaves the session cookie set."""
    clock.advance(30_000)
    form = client.get("/login")
    response = client.post(
        "/login",
        data={
            "csrf": csrf_of(form.text),
            "username": account.username,
            "password": account.password,
            "totp": account.code(clock),
        },
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/fleet"


def as_role(server: Store, client: TestClient, clock: VirtualClock, role: Role) -> Account:
    account = make_account(server, f"w-{role.value.replace('_', '-')}", role)
    log_in(client, account, clock)
    return account


def post_form(client: TestClient, page: str, action: str, **fields: str) -> httpx.Response:
    """Submit a form found on ``page`` with the CSRF token the page carries."""
    token = csrf_of(client.get(page).text)
    response: httpx.Response = client.post(action, data={"csrf": token, **fields})
    return response
