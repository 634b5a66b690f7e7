"""The FastAPI application: routes, error mapping, OpenAPI."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from pumpguard import __version__
from pumpguard.security_events import Severity
from pumpguard.server.api import alerts, deployment, fhir, library, orders, routes
from pumpguard.server.api.deps import peer_of, store_of
from pumpguard.server.errors import (
    AlreadyExists,
    AuthenticationFailed,
    CertificateAuthorityError,
    Forbidden,
    IllegalTransition,
    InvalidInput,
    NotFound,
    ServerError,
    ServerEventCode,
    StoredSecretBroken,
)
from pumpguard.server.store import Store

__all__ = ["ROUTERS", "create_app"]

ROUTERS = (
    routes.router,
    library.router,
    deployment.router,
    alerts.router,
    orders.router,
    fhir.router,
)
"""Every router of the API; the endpoint permission table is generated over all of them."""

_STATUS: tuple[tuple[type[ServerError], int, str], ...] = (
    (AuthenticationFailed, 401, "unauthenticated"),
    (Forbidden, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (AlreadyExists, 409, "already_exists"),
    (IllegalTransition, 409, "illegal_transition"),
    (InvalidInput, 422, "invalid_input"),
    (CertificateAuthorityError, 503, "certificate_authority_unavailable"),
    (StoredSecretBroken, 409, "stored_secret_broken"),
)


def _server_error(_request: Request, exc: Exception) -> JSONResponse:
    for kind, status, code in _STATUS:
        if isinstance(exc, kind):
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return JSONResponse({"error": code, "detail": str(exc)}, status, headers=headers)
    return JSONResponse({"error": "unavailable", "detail": str(exc)}, 503)


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"field": ".".join(str(p) for p in error.get("loc", ())), "message": str(error.get("msg"))}
        for error in exc.errors()
    ]
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    where = f"{request.method} {request.url.path}"
    store_of(request).ctx.emit(
        ServerEventCode.INVALID_REQUEST,
        Severity.INFORMATIONAL,
        f"{where} refused: {summary}"[:500],
        peer=peer_of(request),
        attributes={"endpoint": where},
    )
    return JSONResponse(
        {"error": "invalid_request", "detail": summary, "problems": problems}, status_code=422
    )


def create_app(store: Store) -> FastAPI:
    app = FastAPI(
        title="pumpguard server",
        version=__version__,
        description="Pump fleet, users and tamper-evident audit log of a pumpguard hospital.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.store = store
    app.add_exception_handler(ServerError, _server_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for router in ROUTERS:
        app.include_router(router)
    return app
