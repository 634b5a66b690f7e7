"""Schemathesis against the server's own OpenAPI document: no input makes the server fail, and
nothing but the login answers a caller without a session.

Every operation of every router is generated from the spec (paths, parameters, bodies), without
a session and with a session of each role. The role x endpoint authorisation matrix itself is
``tests/server/test_http_api.py::test_role_by_endpoint_matrix``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from tests.server.test_http_api import as_role

from pumpguard.clock import VirtualClock
from pumpguard.server import Role, Store
from pumpguard.server.api import ROUTERS, create_app, endpoint_permissions

EXAMPLES = settings(
    max_examples=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


PUBLIC = {
    endpoint
    for router in ROUTERS
    for endpoint, permission in endpoint_permissions(router).items()
    if permission is None
}
"""Endpoints that need no session by design (the login, the FHIR capability statement)."""


def _each_operation(server: Store, check: Callable[[schemathesis.Case], None]) -> int:
    api = schemathesis.openapi.from_asgi("/api/v1/openapi.json", create_app(server))
    operations = [result.ok() for result in api.get_all_operations()]
    for operation in operations:

        @EXAMPLES
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            check(case)

        run()
    return len(operations)


def test_without_a_session_nothing_but_login_answers(server: Store) -> None:
    def check(case: schemathesis.Case) -> None:
        response = case.call_and_validate(checks=[not_a_server_error])
        if (case.method.upper(), case.path) not in PUBLIC:
            assert response.status_code in (401, 404, 405, 422), (
                f"{case.method} {case.formatted_path}: {response.status_code} without a session"
            )

    assert _each_operation(server, check) >= 20


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
def test_no_input_makes_the_server_fail_for_any_role(
    server: Store, client: TestClient, clock: VirtualClock, role: Role, request: Any
) -> None:
    if "postgresql" in request.node.callspec.id:
        pytest.skip("the role sweep runs on SQLite; the session-less sweep covers PostgreSQL")
    headers = as_role(server, client, clock, role)

    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    _each_operation(server, check)
