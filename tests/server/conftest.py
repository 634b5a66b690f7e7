"""Fixtures for the server tests: a migrated database (SQLite always, PostgreSQL when
``PUMPGUARD_TEST_POSTGRES_URL`` is set), a virtual clock, cheap-but-explicit argon2 costs."""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text

from pumpguard.clock import VirtualClock
from pumpguard.pki import CertificateAuthority
from pumpguard.security_events import SecurityEventLog
from pumpguard.server import (
    Argon2Parameters,
    CheckpointKey,
    NewUserCredentials,
    PkiDeviceCertificates,
    Role,
    ServerContext,
    ServerSettings,
    Store,
    UserService,
    make_engine,
    normalise_database_url,
    upgrade_database,
)
from pumpguard.server.api import create_app
from pumpguard.server.models import Base

POSTGRES_ENV = "PUMPGUARD_TEST_POSTGRES_URL"
START_MS = 1_800_000_000_000
PASSPHRASE = b"correct horse battery staple"
TEST_ARGON2 = Argon2Parameters(time_cost=1, memory_cost_kib=64, parallelism=1)


def postgres_admin_url() -> str | None:
    url = os.environ.get(POSTGRES_ENV, "").strip()
    return normalise_database_url(url) if url else None


class PostgresDatabase:
    """A uniquely named database on the test server, dropped by ``drop``."""

    def __init__(self, admin_url: str) -> None:
        self.name = f"pumpguard_test_{uuid.uuid4().hex[:12]}"
        self._admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = make_url(admin_url).set(database=self.name).render_as_string(hide_password=False)

    def drop(self) -> None:
        with self._admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self._admin.dispose()


def require_postgres() -> str:
    url = postgres_admin_url()
    if url is None:
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql://postgres@127.0.0.1/test)"
        )
    return url


@pytest.fixture(scope="session")
def migrated_postgres() -> Iterator[str]:
    """One migrated PostgreSQL database for the whole run; tests empty it before use."""
    database = PostgresDatabase(require_postgres())
    try:
        engine = make_engine(database.url)
        upgrade_database(engine)
        engine.dispose()
        yield database.url
    finally:
        database.drop()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies (migrating costs more than copying)."""
    path = tmp_path_factory.mktemp("template") / "pumpguard.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_database(engine)
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template = request.getfixturevalue("migrated_sqlite")
        target = tmp_path / "pumpguard.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    url = str(request.getfixturevalue("migrated_postgres"))
    engine = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START_MS)


@pytest.fixture
def events() -> SecurityEventLog:
    return SecurityEventLog()


@pytest.fixture
def audit_key(tmp_path: Path) -> CheckpointKey:
    return CheckpointKey.create(tmp_path / "audit", PASSPHRASE)


@pytest.fixture
def settings() -> ServerSettings:
    return ServerSettings(argon2=TEST_ARGON2, audit_checkpoint_every=4)


@pytest.fixture
def ctx(
    clock: VirtualClock,
    events: SecurityEventLog,
    settings: ServerSettings,
    audit_key: CheckpointKey,
) -> ServerContext:
    return ServerContext(clock=clock, events=events, settings=settings, audit_key=audit_key)


@pytest.fixture
def store(db_url: str, ctx: ServerContext) -> Iterator[Store]:
    opened = Store.open(db_url, ctx, migrate=False)
    try:
        yield opened
    finally:
        opened.close()


@dataclass(frozen=True)
class Account:
    credentials: NewUserCredentials

    @property
    def username(self) -> str:
        return self.credentials.username

    @property
    def password(self) -> str:
        return self.credentials.password

    def code(self, clock: VirtualClock, offset_steps: int = 0) -> str:
        return pyotp.TOTP(self.credentials.totp_secret).at(
            clock.now_ms() // 1000 + 30 * offset_steps
        )


def make_account(store: Store, username: str, role: Role) -> Account:
    with store.transaction() as session:
        return Account(UserService(session, store.ctx).create_user(username, role, "test"))


@pytest.fixture
def server(store: Store, tmp_path: Path) -> Store:
    ca = CertificateAuthority.init(tmp_path / "pki", PASSPHRASE)
    return Store(
        store.engine, dataclasses.replace(store.ctx, certificates=PkiDeviceCertificates(ca))
    )


@pytest.fixture
def client(server: Store) -> Iterator[TestClient]:
    with TestClient(create_app(server)) as test_client:
        yield test_client
