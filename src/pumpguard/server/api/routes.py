"""The HTTP routes: thin adapters from JSON to the services and back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from pumpguard.server.api.deps import DbSession, Require, peer_of, store_of
from pumpguard.server.api.schemas import (
    AssetCreate,
    AssetOut,
    AssetPatch,
    AuditEntryOut,
    AuditProblemOut,
    AuditVerificationOut,
    CredentialOut,
    EventOut,
    HistoryOut,
    LoginIn,
    LoginOut,
    MeOut,
    NewUserOut,
    PasswordChangeIn,
    PumpStatusOut,
    TransitionIn,
    TransitionOut,
    UserCreate,
    UserOut,
)
from pumpguard.server.assets import AssetInfo, AssetService
from pumpguard.server.audit import verify_audit_log
from pumpguard.server.authz import Permission
from pumpguard.server.errors import InvalidInput, ServerError
from pumpguard.server.ingest import IngestService
from pumpguard.server.lifecycle import AssetState
from pumpguard.server.users import Principal, UserService

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")


OwnSession = Annotated[Principal, Depends(Require(Permission.OWN_SESSION))]
PumpsReader = Annotated[Principal, Depends(Require(Permission.PUMPS_READ))]
EventsReader = Annotated[Principal, Depends(Require(Permission.EVENTS_READ))]
AssetsReader = Annotated[Principal, Depends(Require(Permission.ASSETS_READ))]
AssetsManager = Annotated[Principal, Depends(Require(Permission.ASSETS_MANAGE))]
UsersReader = Annotated[Principal, Depends(Require(Permission.USERS_READ))]
UsersManager = Annotated[Principal, Depends(Require(Permission.USERS_MANAGE))]
AuditReader = Annotated[Principal, Depends(Require(Permission.AUDIT_READ))]
AuditVerifier = Annotated[Principal, Depends(Require(Permission.AUDIT_VERIFY))]


@router.post("/auth/login", tags=["auth"])
def login(body: LoginIn, request: Request, session: DbSession) -> LoginOut:
    """Exchange username, password and a current TOTP code for a session token."""
    users = UserService(session, store_of(request).ctx)
    token = users.login(body.username, body.password, body.totp, peer=peer_of(request))
    return LoginOut(token=token.token, expires_at_ms=token.expires_at_ms)


@router.post("/auth/logout", tags=["auth"], status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request, session: DbSession, me: OwnSession) -> Response:
    UserService(session, store_of(request).ctx).logout(me)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/auth/me", tags=["auth"])
def whoami(me: OwnSession) -> MeOut:
    return MeOut(username=me.username, role=me.role, permissions=sorted(me.permissions))


@router.post("/auth/password", tags=["auth"], status_code=status.HTTP_204_NO_CONTENT)
def change_password(
    body: PasswordChangeIn, request: Request, session: DbSession, me: OwnSession
) -> Response:
    UserService(session, store_of(request).ctx).change_password(me, body.current, body.new)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/users", tags=["users"])
def list_users(request: Request, session: DbSession, _me: UsersReader) -> list[UserOut]:
    users = UserService(session, store_of(request).ctx).list_users()
    return [
        UserOut(
            username=u.username,
            role=u.role,
            active=u.active,
            locked_until_ms=u.locked_until_ms,
            created_at_ms=u.created_at_ms,
        )
        for u in users
    ]


@router.post("/users", tags=["users"], status_code=status.HTTP_201_CREATED)
def create_user(
    body: UserCreate, request: Request, session: DbSession, me: UsersManager
) -> NewUserOut:
    created = UserService(session, store_of(request).ctx).create_user(
        body.username, body.role, me.username
    )
    return NewUserOut(
        username=created.username,
        role=created.role,
        password=created.password,
        totp_uri=created.totp_uri,
    )


@router.post("/users/{username}/disable", tags=["users"])
def disable_user(username: str, request: Request, session: DbSession, me: UsersManager) -> UserOut:
    if username == me.username:
        raise InvalidInput("you cannot disable your own account")
    u = UserService(session, store_of(request).ctx).disable_user(username, me.username)
    return UserOut(
        username=u.username,
        role=u.role,
        active=u.active,
        locked_until_ms=u.locked_until_ms,
        created_at_ms=u.created_at_ms,
    )


def _asset(a: AssetInfo) -> AssetOut:
    return AssetOut(
        ident=a.ident,
        kind=a.kind,
        manufacturer=a.manufacturer,
        model=a.model,
        serial_number=a.serial_number,
        location=a.location,
        state=a.state,
        cert_serial=a.cert_serial,
        cert_not_after_ms=a.cert_not_after_ms,
        created_at_ms=a.created_at_ms,
        updated_at_ms=a.updated_at_ms,
    )


@router.get("/assets", tags=["assets"])
def list_assets(
    request: Request,
    session: DbSession,
    _me: AssetsReader,
    state: Annotated[AssetState | None, Query()] = None,
) -> list[AssetOut]:
    return [_asset(a) for a in AssetService(session, store_of(request).ctx).list_assets(state)]


@router.post("/assets", tags=["assets"], status_code=status.HTTP_201_CREATED)
def create_asset(
    body: AssetCreate, request: Request, session: DbSession, me: AssetsManager
) -> AssetOut:
    created = AssetService(session, store_of(request).ctx).register(
        body.ident,
        body.kind,
        body.manufacturer,
        body.model,
        body.serial_number,
        me.username,
        location=body.location,
    )
    return _asset(created)


@router.get("/assets/{ident}", tags=["assets"])
def get_asset(ident: str, request: Request, session: DbSession, _me: AssetsReader) -> AssetOut:
    return _asset(AssetService(session, store_of(request).ctx).get(ident))


@router.patch("/assets/{ident}", tags=["assets"])
def patch_asset(
    ident: str, body: AssetPatch, request: Request, session: DbSession, me: AssetsManager
) -> AssetOut:
    return _asset(
        AssetService(session, store_of(request).ctx).relocate(ident, body.location, me.username)
    )


@router.get("/assets/{ident}/history", tags=["assets"])
def asset_history(
    ident: str, request: Request, session: DbSession, _me: AssetsReader
) -> list[HistoryOut]:
    return [
        HistoryOut(
            from_state=h.from_state,
            to_state=h.to_state,
            at_ms=h.at_ms,
            actor=h.actor,
            reason=h.reason,
        )
        for h in AssetService(session, store_of(request).ctx).history(ident)
    ]


@router.post("/assets/{ident}/transitions", tags=["assets"])
def transition_asset(
    ident: str, body: TransitionIn, request: Request, session: DbSession, me: AssetsManager
) -> TransitionOut:
    outcome = AssetService(session, store_of(request).ctx).transition(
        ident, body.to, me.username, body.reason
    )
    return TransitionOut(
        asset=_asset(outcome.asset),
        certificate_issued=outcome.certificate_issued,
        certificate_revoked=outcome.certificate_revoked,
        secrets_wiped=outcome.secrets_wiped,
    )


@router.post("/assets/{ident}/credential", tags=["assets"])
def collect_credential(
    ident: str, request: Request, session: DbSession, me: AssetsManager
) -> CredentialOut:
    """The onboarded pump's certificate and private key, once; install them on the pump."""
    issued = AssetService(session, store_of(request).ctx).collect_credential(ident, me.username)
    return CredentialOut(
        cert_pem=issued.cert_pem,
        key_pem=issued.key_pem,
        ca_pem=issued.ca_pem,
        serial=format(issued.serial, "X"),
        not_after_ms=issued.not_after_ms,
    )


@router.get("/pumps", tags=["pumps"])
def list_pumps(request: Request, session: DbSession, _me: PumpsReader) -> list[PumpStatusOut]:
    views = IngestService(session, store_of(request).ctx).statuses()
    return [PumpStatusOut.model_validate(v, from_attributes=True) for v in views]


@router.get("/pumps/{device_id}", tags=["pumps"])
def get_pump(
    device_id: str, request: Request, session: DbSession, _me: PumpsReader
) -> PumpStatusOut:
    view = IngestService(session, store_of(request).ctx).status(device_id)
    return PumpStatusOut.model_validate(view, from_attributes=True)


@router.get("/events", tags=["events"])
def list_events(
    request: Request,
    session: DbSession,
    _me: EventsReader,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    after_id: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EventOut]:
    events = IngestService(session, store_of(request).ctx).events(device_id, kind, after_id, limit)
    return [EventOut.model_validate(e, from_attributes=True) for e in events]


@router.get("/audit", tags=["audit"])
def list_audit(
    request: Request,
    session: DbSession,
    _me: AuditReader,
    after_seq: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntryOut]:
    entries = store_of(request).ctx.audit(session).entries(after_seq, limit)
    return [
        AuditEntryOut(
            seq=e.seq,
            at_ms=e.at_ms,
            actor=e.actor,
            action=e.action,
            subject=e.subject,
            details=e.details_dict(),
            entry_hash=e.entry_hash,
        )
        for e in entries
    ]


@router.get("/audit/verify", tags=["audit"])
def verify_audit(request: Request, session: DbSession, _me: AuditVerifier) -> AuditVerificationOut:
    """Recompute the hash chain and check every signed checkpoint."""
    key = store_of(request).ctx.audit_key
    if key is None:
        raise ServerError("the server has no audit key loaded, so checkpoints cannot be checked")
    result = verify_audit_log(session, key.public_key)
    return AuditVerificationOut(
        ok=result.ok,
        entries=result.entries,
        last_seq=result.last_seq,
        checkpoints=result.checkpoints,
        last_checkpoint_seq=result.last_checkpoint_seq,
        unanchored=result.unanchored,
        problems=[
            AuditProblemOut(seq=p.seq, kind=p.kind, message=p.message) for p in result.problems
        ],
    )
