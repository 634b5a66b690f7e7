"""Per-request plumbing: the transaction, the caller, and the permission each route requires.

``Require(permission)`` is the only way a route learns who is calling, so a route cannot be
written without naming its permission; ``endpoint_permissions`` reads them back from the app
for the role x endpoint authorisation matrix.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.routing import BaseRoute

from pumpguard.security_events import Severity
from pumpguard.server.authz import Permission
from pumpguard.server.errors import AuthenticationFailed, Forbidden, ServerEventCode
from pumpguard.server.store import Store
from pumpguard.server.users import Principal, UserService

__all__ = ["DbSession", "Require", "endpoint_permissions", "peer_of", "store_of"]

_bearer = HTTPBearer(auto_error=False, description="Session token from POST /api/v1/auth/login")


def store_of(request: Request) -> Store:
    store = request.app.state.store
    assert isinstance(store, Store)
    return store


def peer_of(request: Request) -> str | None:
    return request.client.host if request.client else None


def _session(request: Request) -> Iterator[Session]:
    with store_of(request).transaction() as session:
        yield session


# "function" scope: the transaction commits before the response leaves, so a client never
# sees a success that a failed commit then undoes.
DbSession = Annotated[Session, Depends(_session, scope="function")]


class Require:
    """Dependency: an authenticated principal whose role grants ``permission``."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    def __call__(
        self,
        request: Request,
        session: DbSession,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        ctx = store_of(request).ctx
        peer = peer_of(request)
        where = f"{request.method} {request.url.path}"
        if credentials is None or credentials.scheme.lower() != "bearer":
            ctx.emit(
                ServerEventCode.UNAUTHENTICATED,
                Severity.LOW,
                f"{where} without a session token",
                peer=peer,
                attributes={"endpoint": where},
            )
            raise AuthenticationFailed("not logged in: send 'Authorization: Bearer <token>'")
        try:
            principal = UserService(session, ctx).authenticate(credentials.credentials)
        except AuthenticationFailed as exc:
            ctx.emit(
                ServerEventCode.UNAUTHENTICATED,
                Severity.MEDIUM,
                f"{where} with an invalid or expired session token",
                peer=peer,
                attributes={"endpoint": where},
            )
            raise AuthenticationFailed(str(exc)) from None
        if self.permission not in principal.permissions:
            ctx.emit(
                ServerEventCode.FORBIDDEN,
                Severity.MEDIUM,
                f"{principal.username} ({principal.role}) may not {where}",
                peer=peer,
                attributes={
                    "endpoint": where,
                    "username": principal.username,
                    "role": str(principal.role),
                    "permission": str(self.permission),
                },
            )
            raise Forbidden(
                f"role {principal.role} lacks the permission {self.permission} needed for {where}"
            )
        return principal


def _find_requirement(dependant: Dependant) -> Permission | None:
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, Require):
            return dependency.call.permission
        found = _find_requirement(dependency)
        if found is not None:
            return found
    return None


def _routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if isinstance(included, APIRouter):
            yield from _routes(included.routes)


def endpoint_permissions(app: FastAPI | APIRouter) -> dict[tuple[str, str], Permission | None]:
    """(method, path template) -> the permission the route requires, ``None`` when public."""
    table: dict[tuple[str, str], Permission | None] = {}
    for route in _routes(app.routes):
        permission = _find_requirement(route.dependant)
        for method in sorted(route.methods or ()):
            table[(method, route.path)] = permission
    return table
