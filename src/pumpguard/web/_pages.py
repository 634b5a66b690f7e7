"""Request plumbing shared by every page: who is calling, what they may do, CSRF, errors.

A page reads the same services as the REST API inside one ``Store.transaction`` and is guarded
by the same ``Permission`` table; refusals emit the same security events (so the monitor's
rules see a probing dashboard session as they see a probing API client) and come back as an
HTML page with the API's status code, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from pumpguard.security_events import Severity
from pumpguard.server.api.deps import peer_of, store_of
from pumpguard.server.authz import Permission
from pumpguard.server.context import ServerContext
from pumpguard.server.errors import (
    AlreadyExists,
    AuthenticationFailed,
    Forbidden,
    IllegalTransition,
    InvalidInput,
    NotFound,
    ServerError,
    ServerEventCode,
)
from pumpguard.server.users import Principal, UserService
from pumpguard.web._render import SECURITY_HEADERS, render
from pumpguard.web._session import (
    CSRF_FIELD,
    SESSION_COOKIE,
    cookie,
    csrf_matches,
    csrf_token,
)

__all__ = ["NAV", "Call", "NavItem", "read_form", "serve", "to_login"]

_MAX_FORM = 1_000_000
_STATUS: tuple[tuple[type[ServerError], int, str], ...] = (
    (AuthenticationFailed, 401, "Not logged in"),
    (Forbidden, 403, "Not allowed"),
    (NotFound, 404, "Not found"),
    (AlreadyExists, 409, "Already exists"),
    (IllegalTransition, 409, "Not possible now"),
    (InvalidInput, 422, "Refused"),
)


@dataclass(frozen=True, slots=True)
class NavItem:
    label: str
    href: str
    permission: Permission


NAV = (
    NavItem("Fleet", "/fleet", Permission.PUMPS_READ),
    NavItem("Alerts", "/alerts", Permission.ALERTS_READ),
    NavItem("Drug library", "/library", Permission.LIBRARY_READ),
    NavItem("Orders", "/orders", Permission.ORDERS_READ),
    NavItem("Audit log", "/audit", Permission.AUDIT_READ),
    NavItem("Risk", "/risk", Permission.RISK_READ),
    NavItem("Attacks", "/attacks", Permission.ATTACKS_LAUNCH),
)


@dataclass
class Call:
    """One authenticated page request: its transaction, caller and submitted form."""

    request: Request
    session: Session
    server: ServerContext
    me: Principal
    token: str
    form: Mapping[str, str] = field(default_factory=dict)

    def may(self, permission: Permission) -> bool:
        return permission in self.me.permissions

    def render(self, template: str, status: int = 200, **values: Any) -> Response:
        return render(template, status, **self.chrome(), **values)

    def chrome(self) -> dict[str, Any]:
        return {
            "me": self.me,
            "csrf": csrf_token(self.token),
            "csrf_field": CSRF_FIELD,
            "nav": [item for item in NAV if self.may(item.permission)],
            "path": self.request.url.path,
            "Permission": Permission,
            "may": self.may,
        }

    def text(self, name: str, *, required: bool = False, limit: int = 2000) -> str:
        value = self.form.get(name, "")
        if required and not value.strip():
            raise InvalidInput(f"the field {name!r} is required")
        if len(value) > limit:
            raise InvalidInput(f"the field {name!r} is longer than {limit} characters")
        return value

    def number(self, name: str, *, maximum: int = 2**31 - 1) -> int:
        value = self.form.get(name, "").strip()
        if not value.isdigit() or not 1 <= int(value) <= maximum:
            raise InvalidInput(f"the field {name!r} must be a whole number from 1 to {maximum}")
        return int(value)


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body; anything else is an empty form."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = await request.body()
    if len(body) > _MAX_FORM:
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=200))


def to_login(*, clear: bool = False) -> Response:
    response = RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
    if clear:
        response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True)
    return response


View = Callable[[Call], Response]


async def serve(
    request: Request, permission: Permission, view: View, *, after_commit: bool = False
) -> Response:
    """Run ``view`` for a caller holding ``permission``; POSTs also need the CSRF token.

    With ``after_commit`` the view runs once the checks' transaction has ended and must not
    touch ``call.session``: long work (a lab attack run) then holds no database lock."""
    form = await read_form(request) if request.method == "POST" else {}
    return await run_in_threadpool(_serve, request, permission, view, form, after_commit)


def _serve(
    request: Request,
    permission: Permission,
    view: View,
    form: dict[str, str],
    after_commit: bool,
) -> Response:
    store = store_of(request)
    ctx = store.ctx
    token = cookie(request, SESSION_COOKIE)
    if token is None:
        return to_login()
    peer = peer_of(request)
    where = f"{request.method} {request.url.path}"
    call: Call | None = None
    try:
        with store.transaction() as session:
            try:
                me = UserService(session, ctx).authenticate(token)
            except AuthenticationFailed:
                ctx.emit(
                    ServerEventCode.UNAUTHENTICATED,
                    Severity.MEDIUM,
                    f"dashboard {where} with an invalid or expired session cookie",
                    peer=peer,
                    attributes={"endpoint": where},
                )
                return to_login(clear=True)
            call = Call(request, session, ctx, me, token, form)
            if permission not in me.permissions:
                ctx.emit(
                    ServerEventCode.FORBIDDEN,
                    Severity.MEDIUM,
                    f"{me.username} ({me.role}) may not {where} on the dashboard",
                    peer=peer,
                    attributes={
                        "endpoint": where,
                        "username": me.username,
                        "role": str(me.role),
                        "permission": str(permission),
                    },
                )
                return call.render(
                    "error.html",
                    403,
                    title="Not allowed",
                    detail=f"Your role ({me.role}) lacks the permission {permission} "
                    "this page needs.",
                )
            if request.method == "POST" and not csrf_matches(token, form.get(CSRF_FIELD)):
                ctx.emit(
                    ServerEventCode.FORBIDDEN,
                    Severity.MEDIUM,
                    f"dashboard {where} by {me.username} without a valid CSRF token",
                    peer=peer,
                    attributes={"endpoint": where, "username": me.username, "reason": "csrf"},
                )
                return call.render(
                    "error.html",
                    403,
                    title="Form refused",
                    detail="The form had no valid anti-forgery token: reload the page and "
                    "submit it again.",
                )
            if not after_commit:
                return view(call)
        assert call is not None
        return view(call)
    except ServerError as exc:
        # The transaction committed: a refusal stays recorded (audit, security events).
        status, title = next(
            ((s, t) for kind, s, t in _STATUS if isinstance(exc, kind)), (503, "Unavailable")
        )
        if call is None:
            return render("login.html", status, error=str(exc), csrf="", csrf_field=CSRF_FIELD)
        return call.render("error.html", status, title=title, detail=str(exc))
