"""The dashboard's pages. Each handler names its permission and calls the same service the
REST API route calls; see ``docs/dashboard.md`` for the page x role table."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, RedirectResponse

from pumpguard.lab.live_attacks import LiveAttackResult
from pumpguard.monitor.alerts import AlertState
from pumpguard.server.alert_store import AlertQuery, AlertStore
from pumpguard.server.api.deps import peer_of, store_of
from pumpguard.server.audit import AuditAction, verify_audit_log
from pumpguard.server.authz import Permission
from pumpguard.server.errors import AuthenticationFailed, InvalidInput, ServerError
from pumpguard.server.ingest import IngestService
from pumpguard.server.library_authoring import LibraryAuthoring, VersionState
from pumpguard.server.orders import OrderService, OrderStatus
from pumpguard.server.users import LOGIN_REFUSED, UserService
from pumpguard.web._attacks import (
    LIVE_OFF,
    Launch,
    attack_rows,
    launch,
    launch_live_attack,
    live_rows,
)
from pumpguard.web._charts import bar_chart
from pumpguard.web._pages import Call, read_form, serve, to_login
from pumpguard.web._render import SECURITY_HEADERS, render, stylesheet
from pumpguard.web._risk import risk_view
from pumpguard.web._session import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    cookie,
    csrf_matches,
    csrf_token,
    new_login_nonce,
    set_cookie,
)

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_LOGIN_NONCE_S = 900
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
_PAGE = 100


# ---------------------------------------------------------------- login, logout, assets


@router.get("/static/dashboard.css")
def css() -> Response:
    return PlainTextResponse(
        stylesheet(), media_type="text/css", headers={"Cache-Control": "max-age=300"}
    )


@router.get("/")
def index(request: Request) -> Response:
    target = "/fleet" if cookie(request, SESSION_COOKIE) else "/login"
    return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)


def _login_page(nonce: str, status: int = 200, error: str | None = None) -> Response:
    response = render(
        "login.html", status, error=error, csrf=csrf_token(nonce), csrf_field=CSRF_FIELD
    )
    set_cookie(response, LOGIN_COOKIE, nonce, _LOGIN_NONCE_S)
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_page(cookie(request, LOGIN_COOKIE) or new_login_nonce())


@dataclass(frozen=True, slots=True)
class _Login:
    token: str | None
    expires_at_ms: int
    now_ms: int


def _log_in(request: Request, username: str, password: str, code: str) -> _Login:
    store = store_of(request)
    try:
        with store.transaction() as session:
            token = UserService(session, store.ctx).login(
                username, password, code, peer=peer_of(request)
            )
    except AuthenticationFailed:
        return _Login(None, 0, 0)
    return _Login(token.token, token.expires_at_ms, store.ctx.clock.now_ms())


@router.post("/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    nonce = cookie(request, LOGIN_COOKIE)
    if not csrf_matches(nonce, form.get(CSRF_FIELD)):
        return _login_page(
            new_login_nonce(), 403, "The login form expired: enter your details again."
        )
    assert nonce is not None
    username = form.get("username", "").strip()[:64]
    password = form.get("password", "")[:1024]
    code = form.get("totp", "").strip()[:16]
    if not username or not password or not code:
        return _login_page(nonce, 422, "Enter your username, password and the 6-digit code.")
    result = await run_in_threadpool(_log_in, request, username, password, code)
    if result.token is None:
        return _login_page(nonce, 401, LOGIN_REFUSED)
    response = RedirectResponse("/fleet", status_code=303, headers=SECURITY_HEADERS)
    set_cookie(
        response, SESSION_COOKIE, result.token, (result.expires_at_ms - result.now_ms) // 1000
    )
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    return await serve(request, Permission.OWN_SESSION, _logout)


def _logout(call: Call) -> Response:
    UserService(call.session, call.server).logout(call.me)
    return to_login(clear=True)


# ---------------------------------------------------------------- fleet


@router.get("/fleet")
async def fleet(request: Request) -> Response:
    return await serve(request, Permission.PUMPS_READ, _fleet)


def _fleet(call: Call) -> Response:
    pumps = IngestService(call.session, call.server).statuses()
    states = Counter(p.state if p.online else "offline" for p in pumps)
    libraries = Counter(
        f"v{p.library_version}" if p.library_version else "none reported" for p in pumps
    )
    return call.render(
        "fleet.html",
        pumps=pumps,
        online=sum(1 for p in pumps if p.online),
        state_chart=bar_chart("Pumps by state", sorted(states.items())),
        library_chart=bar_chart("Pumps by drug library version", sorted(libraries.items())),
    )


# ---------------------------------------------------------------- alerts and incidents


@router.get("/alerts")
async def alerts(request: Request) -> Response:
    return await serve(request, Permission.ALERTS_READ, _alerts)


def _alerts(call: Call) -> Response:
    wanted = call.request.query_params.get("state", "")
    state = None
    if wanted:
        try:
            state = AlertState(wanted)
        except ValueError:
            raise InvalidInput(
                f"state must be one of {', '.join(s.value for s in AlertState)}"
            ) from None
    store = AlertStore(call.session, call.server)
    found = store.search(AlertQuery(state=state, limit=_PAGE))
    incidents = [(i, store.incident_alerts(i.incident_id)) for i in store.incidents(limit=50)]
    return call.render(
        "alerts.html",
        alerts=found,
        incidents=incidents,
        state=wanted,
        states=[s.value for s in AlertState],
    )


@router.get("/alerts/{alert_id}")
async def alert(request: Request, alert_id: str) -> Response:
    return await serve(request, Permission.ALERTS_READ, lambda call: _alert(call, alert_id))


def _alert(call: Call, alert_id: str, status: int = 200, notice: str = "") -> Response:
    found = AlertStore(call.session, call.server).get(alert_id[:64])
    return call.render("alert.html", status, alert=found, notice=notice)


@router.post("/alerts/{alert_id}/acknowledge")
async def acknowledge(request: Request, alert_id: str) -> Response:
    def view(call: Call) -> Response:
        store = AlertStore(call.session, call.server)
        store.acknowledge(alert_id[:64], call.me.username, call.text("note"))
        return _alert(call, alert_id, notice="Acknowledged.")

    return await serve(request, Permission.ALERTS_MANAGE, view)


@router.post("/alerts/{alert_id}/resolve")
async def resolve(request: Request, alert_id: str) -> Response:
    def view(call: Call) -> Response:
        store = AlertStore(call.session, call.server)
        store.resolve(alert_id[:64], call.me.username, call.text("note", required=True))
        return _alert(call, alert_id, notice="Resolved.")

    return await serve(request, Permission.ALERTS_MANAGE, view)


# ---------------------------------------------------------------- drug library


@router.get("/library")
async def library(request: Request) -> Response:
    return await serve(request, Permission.LIBRARY_READ, _library)


def _library(call: Call, status: int = 200, notice: str = "") -> Response:
    versions = LibraryAuthoring(call.session, call.server).versions()
    return call.render("library.html", status, versions=list(reversed(versions)), notice=notice)


@router.post("/library/drafts")
async def new_draft(request: Request) -> Response:
    def view(call: Call) -> Response:
        created = LibraryAuthoring(call.session, call.server).create_draft(
            call.me, from_latest_approved=True
        )
        return _version(call, created.version, notice=f"Draft v{created.version} created.")

    return await serve(request, Permission.LIBRARY_DRAFT, view)


@router.post("/library/import")
async def import_library(request: Request) -> Response:
    def view(call: Call) -> Response:
        data = _json_object(call.text("library", required=True, limit=900_000), "library file")
        created = LibraryAuthoring(call.session, call.server).import_json(call.me, data)
        return _version(call, created.version, notice=f"Draft v{created.version} imported.")

    return await serve(request, Permission.LIBRARY_DRAFT, view)


def _json_object(text: str, what: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"the {what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"the {what} must be a JSON object")
    return value


@router.get("/library/diff")
async def library_diff(request: Request) -> Response:
    def view(call: Call) -> Response:
        query = call.request.query_params
        try:
            old, new = int(query.get("from", "")), int(query.get("to", ""))
        except ValueError:
            raise InvalidInput("choose two version numbers to compare") from None
        diff = LibraryAuthoring(call.session, call.server).diff(old, new)
        return call.render("library_diff.html", diff=diff)

    return await serve(request, Permission.LIBRARY_READ, view)


@router.get("/library/{version}")
async def library_version(request: Request, version: Id) -> Response:
    return await serve(request, Permission.LIBRARY_READ, lambda call: _version(call, version))


def _version(call: Call, version: int, status: int = 200, notice: str = "") -> Response:
    service = LibraryAuthoring(call.session, call.server)
    return call.render(
        "library_version.html",
        status,
        info=service.get(version),
        areas=service.care_areas(version),
        notice=notice,
        VersionState=VersionState,
    )


@router.post("/library/{version}/entries/{entry_id}")
async def edit_entry(request: Request, version: Id, entry_id: Id) -> Response:
    def view(call: Call) -> Response:
        body = _json_object(call.text("entry", required=True, limit=100_000), "entry")
        LibraryAuthoring(call.session, call.server).update_entry(version, call.me, entry_id, body)
        return _version(call, version, notice="Entry saved.")

    return await serve(request, Permission.LIBRARY_DRAFT, view)


@router.post("/library/{version}/submit")
async def submit(request: Request, version: Id) -> Response:
    def view(call: Call) -> Response:
        LibraryAuthoring(call.session, call.server).submit(version, call.me)
        return _version(call, version, notice=f"v{version} submitted for approval.")

    return await serve(request, Permission.LIBRARY_DRAFT, view)


@router.post("/library/{version}/approve")
async def approve(request: Request, version: Id) -> Response:
    def view(call: Call) -> Response:
        approved = LibraryAuthoring(call.session, call.server).approve(
            version, call.me, call.text("note")
        )
        return _version(call, version, notice=f"v{version} approved (sha256 {approved.sha256}).")

    return await serve(request, Permission.LIBRARY_APPROVE, view)


@router.post("/library/{version}/reject")
async def reject(request: Request, version: Id) -> Response:
    def view(call: Call) -> Response:
        LibraryAuthoring(call.session, call.server).reject(
            version, call.me, call.text("note", required=True)
        )
        return _version(call, version, notice=f"v{version} rejected.")

    return await serve(request, Permission.LIBRARY_APPROVE, view)


# ---------------------------------------------------------------- orders


@router.get("/orders")
async def orders(request: Request) -> Response:
    def view(call: Call) -> Response:
        wanted = call.request.query_params.get("status", "")
        status = None
        if wanted:
            try:
                status = OrderStatus(wanted)
            except ValueError:
                raise InvalidInput(
                    f"status must be one of {', '.join(s.value for s in OrderStatus)}"
                ) from None
        service = OrderService(call.session, call.server)
        found = service.list_orders(status=status, limit=1000)
        return call.render(
            "orders.html",
            orders=list(reversed(found))[:_PAGE],
            chosen=wanted,
            statuses=[s.value for s in OrderStatus],
        )

    return await serve(request, Permission.ORDERS_READ, view)


@router.get("/orders/{order_id}")
async def order(request: Request, order_id: Id) -> Response:
    def view(call: Call) -> Response:
        return call.render(
            "order.html", order=OrderService(call.session, call.server).get(order_id)
        )

    return await serve(request, Permission.ORDERS_READ, view)


# ---------------------------------------------------------------- audit


@router.get("/audit")
async def audit(request: Request) -> Response:
    def view(call: Call) -> Response:
        after = call.request.query_params.get("after", "0")
        if not after.isdigit():
            raise InvalidInput("after must be a sequence number")
        entries = call.server.audit(call.session).entries(int(after), _PAGE)
        return call.render("audit.html", entries=entries, verification=None)

    return await serve(request, Permission.AUDIT_READ, view)


@router.post("/audit/verify")
async def audit_verify(request: Request) -> Response:
    def view(call: Call) -> Response:
        key = call.server.audit_key
        if key is None:
            raise ServerError(
                "the server has no audit key loaded, so checkpoints cannot be checked"
            )
        verification = verify_audit_log(call.session, key.public_key)
        entries = call.server.audit(call.session).entries(0, _PAGE)
        return call.render("audit.html", entries=entries, verification=verification)

    return await serve(request, Permission.AUDIT_VERIFY, view)


# ---------------------------------------------------------------- risk


@router.get("/risk")
async def risk(request: Request) -> Response:
    def view(call: Call) -> Response:
        return call.render("risk.html", risk=risk_view(call.request.app))

    return await serve(request, Permission.RISK_READ, view, after_commit=True)


@router.get("/risk/report")
async def risk_report(request: Request) -> Response:
    def view(call: Call) -> Response:
        found = risk_view(call.request.app)
        if found.report_html is None:
            raise InvalidInput(found.problem or "no risk report")
        return Response(found.report_html, media_type="text/html", headers=SECURITY_HEADERS)

    return await serve(request, Permission.RISK_READ, view, after_commit=True)


# ---------------------------------------------------------------- attack launcher


@router.get("/attacks")
async def attacks(request: Request) -> Response:
    def view(call: Call) -> Response:
        return _attacks_page(call)

    return await serve(request, Permission.ATTACKS_LAUNCH, view)


def _attacks_page(
    call: Call, launched: Launch | None = None, live: LiveAttackResult | None = None
) -> Response:
    return call.render(
        "attacks.html",
        catalogue=attack_rows(),
        launched=launched,
        live_attacks=live_rows(call.request.app),
        live_off=LIVE_OFF,
        live=live,
    )


@router.post("/attacks/run")
async def run_attack(request: Request) -> Response:
    def view(call: Call) -> Response:
        launched = launch(call.text("attack", required=True, limit=80).strip())
        return _attacks_page(call, launched=launched)

    return await serve(request, Permission.ATTACKS_LAUNCH, view, after_commit=True)


@router.post("/attacks/live")
async def run_live_attack(request: Request) -> Response:
    def view(call: Call) -> Response:
        name = call.text("attack", required=True, limit=80).strip()
        result = launch_live_attack(call.request.app, name)
        store = store_of(call.request)
        with store.transaction() as session:  # the checks' transaction has ended (after_commit)
            store.ctx.audit(session).append(
                AuditAction.ATTACK_LAUNCHED,
                call.me.username,
                f"attack:{result.name}",
                {
                    "target": result.target,
                    "blocked": str(result.blocked).lower(),
                    "alerts": ",".join(a.analytic_id for a in result.alerts),
                },
            )
        return _attacks_page(call, live=result)

    return await serve(request, Permission.ATTACKS_LAUNCH, view, after_commit=True)
