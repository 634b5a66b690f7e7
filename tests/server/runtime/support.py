"""Running a ``Stack`` in tests, and waiting for what it records (bounded, never timed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pyotp
from sqlalchemy import func, select
from tests.server.conftest import TEST_ARGON2, PostgresDatabase, require_postgres

from pumpguard.pki import PeerIdentity, client_tls_context, read_credential
from pumpguard.security_events import JsonLinesEventFile, SecurityEvent
from pumpguard.server import SECURITY_EVENTS_FILE, Role, ServerSettings, UserService
from pumpguard.server.alert_store import AlertQuery, AlertStore
from pumpguard.server.models import PumpEventRow
from pumpguard.server.runtime import Stack, StackConfig
from pumpguard.transport import MqttClient

T = TypeVar("T")

CHEAP_SETTINGS = ServerSettings(argon2=TEST_ARGON2)


def database_urls(kind: str) -> Iterator[str | None]:
    """``None`` (SQLite in the data directory) or a fresh PostgreSQL database, dropped after."""
    if kind == "sqlite":
        yield None
        return
    database = PostgresDatabase(require_postgres())
    try:
        yield database.url
    finally:
        database.drop()


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
    """Run one test coroutine; a hang fails the test instead of hanging the run."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout_s):
            return await coro

    return asyncio.run(bounded())


def config(data_dir: Path, database_url: str | None, **changes: Any) -> StackConfig:
    fields: dict[str, Any] = {
        "http_port": 0,
        "mqtt_port": 0,
        "updates_port": 0,
        "settings": CHEAP_SETTINGS,
    }
    fields.update(changes)
    return StackConfig(data_dir=data_dir, database_url=database_url, **fields)


@asynccontextmanager
async def running_stack(
    data_dir: Path, database_url: str | None, **changes: Any
) -> AsyncIterator[Stack]:
    stack = await Stack.start(config(data_dir, database_url, **changes))
    try:
        yield stack
    finally:
        await stack.stop()


@asynccontextmanager
async def logged_in_api(
    stack: Stack, username: str, role: Role
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """An HTTPS client of ``stack``'s API and the headers of a session of a new account,
    logged in with its password and TOTP code as any API client would."""
    with stack.store.transaction() as session:
        account = UserService(session, stack.store.ctx).create_user(username, role, "test")
    verify = client_tls_context(stack.data_dir / "server" / "ingest")
    async with httpx.AsyncClient(
        base_url=f"https://{stack.local_address}:{stack.http_port}", verify=verify
    ) as http:
        login = await http.post(
            "/api/v1/auth/login",
            json={
                "username": account.username,
                "password": account.password,
                "totp": pyotp.TOTP(account.totp_secret).now(),
            },
        )
        assert login.status_code == 200, login.text
        yield http, {"Authorization": f"Bearer {login.json()['token']}"}


def security_events(stack_or_dir: Stack | Path) -> list[SecurityEvent]:
    directory = stack_or_dir if isinstance(stack_or_dir, Path) else stack_or_dir.data_dir
    path = directory / SECURITY_EVENTS_FILE
    return JsonLinesEventFile(path).read() if path.exists() else []


async def wait_for_event(stack: Stack, code: str, **match: str) -> SecurityEvent:
    """The first security event with ``code`` (and matching fields), once the stack wrote it.

    The broker reports a refused handshake on its side of the socket, which may be a moment
    after the client saw the refusal; the test's overall timeout bounds the wait."""
    while True:
        try:
            events = security_events(stack)
        except ValueError:  # a line being appended right now
            events = []
        for event in events:
            if event.code == code and all(
                str(getattr(event, k, event.attributes.get(k))) == v for k, v in match.items()
            ):
                return event
        await asyncio.sleep(0.05)


def alert_analytics(stack: Stack) -> list[str]:
    """The analytic ids of the alerts the stack's monitor raised (stored now, then read)."""
    stack.flush_alerts()
    with stack.store.transaction() as session:
        alerts = AlertStore(session, stack.store.ctx).search(AlertQuery(limit=1000))
    return [a.analytic_id for a in alerts]


def client_for(stack: Stack, cert_dir: Path, identity: PeerIdentity | None = None) -> MqttClient:
    ident = identity if identity is not None else read_credential(cert_dir).identity
    return MqttClient(
        stack.local_address,
        stack.mqtt_port,
        client_tls_context(cert_dir),
        ident,
        connect_timeout_s=10,
    )


async def provision(stack: Stack, ident: str, kind: str = "lvp") -> Path:
    return await asyncio.to_thread(stack.provision_device, ident, kind)


def stored_events(stack: Stack, device_id: str) -> int:
    with stack.store.transaction() as session:
        count = session.scalar(
            select(func.count())
            .select_from(PumpEventRow)
            .where(PumpEventRow.device_id == device_id)
        )
    return int(count or 0)


async def wait_stored(stack: Stack, device_id: str, at_least: int) -> int:
    while (count := await asyncio.to_thread(stored_events, stack, device_id)) < at_least:
        await asyncio.sleep(0.05)
    return count


__all__ = [
    "CHEAP_SETTINGS",
    "alert_analytics",
    "client_for",
    "config",
    "database_urls",
    "logged_in_api",
    "provision",
    "run",
    "running_stack",
    "security_events",
    "stored_events",
    "wait_for_event",
    "wait_stored",
]
