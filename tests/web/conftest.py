"""Fixtures of the dashboard tests: the server test fixtures, and an app with the dashboard
behind a browser-like client (https, so the Secure cookies travel)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from tests.server.conftest import (  # noqa: F401 - fixtures re-exported for this directory
    audit_key,
    clock,
    ctx,
    db_url,
    events,
    migrated_postgres,
    migrated_sqlite,
    server,
    settings,
    store,
)

from pumpguard.server import Store
from pumpguard.server.api import create_app
from pumpguard.web import add_dashboard


@pytest.fixture
def web(server: Store) -> Iterator[TestClient]:  # noqa: F811
    app = create_app(server)
    add_dashboard(app)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        yield client
