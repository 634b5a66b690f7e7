"""Fixtures of the runtime tests: see ``support``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.server.runtime.support import database_urls


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    yield from database_urls(str(request.param))
