"""A live pump server (``server.runtime.Stack``) on free ports in a temporary data directory,
on SQLite and, when ``PUMPGUARD_TEST_POSTGRES_URL`` is set, on a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.server.runtime.support import database_urls

__all__ = ["database_url"]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    yield from database_urls(str(request.param))
