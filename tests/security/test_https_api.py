"""Black-box: the live HTTPS API of a ``Stack``, logged in with a password and a TOTP code."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import httpx
import pyotp
from tests.server.runtime.support import provision, run, running_stack

from pumpguard.server import Role, UserService
from pumpguard.server.runtime import Stack


def _admin(stack: Stack) -> tuple[str, str]:
    with stack.store.transaction() as session:
        created = UserService(session, stack.store.ctx).create_user("ada", Role.ADMIN, "test")
    return created.password, pyotp.TOTP(created.totp_secret).now()


def _requests(stack: Stack, ca: Path, password: str, code: str) -> dict[str, int]:
    base = f"https://{stack.local_address}:{stack.http_port}/api/v1"
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=30) as client:
        anonymous = client.get(f"{base}/assets").status_code
        login = client.post(
            f"{base}/auth/login", json={"username": "ada", "password": password, "totp": code}
        )
        token = login.json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        statuses = {"anonymous": anonymous, "login": login.status_code}
        for name, method, path in (
            ("assets", "GET", "/assets"),
            ("nul asset", "GET", "/assets/%00"),
            ("nul pump", "GET", "/pumps/%00"),
            ("nul user", "POST", "/users/%00/disable"),
        ):
            statuses[name] = client.request(method, base + path, headers=headers).status_code
    return statuses


def test_the_api_needs_a_session_and_never_fails_on_hostile_paths(
    tmp_path: Path, database_url: str | None
) -> None:
    """PostgreSQL refuses a NUL character in any text parameter: such ids are "not found"."""

    async def scenario() -> dict[str, int]:
        async with running_stack(tmp_path / "data", database_url) as stack:
            creds = await provision(stack, "PUMP-0001")
            password, code = await asyncio.to_thread(_admin, stack)
            return await asyncio.to_thread(_requests, stack, creds / "ca.pem", password, code)

    statuses = run(scenario())
    assert statuses == {
        "anonymous": 401,
        "login": 200,
        "assets": 200,
        "nul asset": 404,
        "nul pump": 404,
        "nul user": 404,
    }
