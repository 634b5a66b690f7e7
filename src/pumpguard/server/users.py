"""Accounts, logins and sessions: argon2id passwords, TOTP on every login, opaque tokens.

There are no default credentials: an account exists only once someone with the right to create
it did so, and its generated password and TOTP secret are shown exactly once. A failed login
never says which factor was wrong. Repeated failures lock the account with exponential backoff,
and a TOTP code is accepted at most once (the last accepted time step is stored), so a code
observed over a shoulder or in a proxy log cannot be replayed within its window.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from functools import cache

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from pumpguard.security_events import Severity
from pumpguard.server.audit import AuditAction
from pumpguard.server.authz import ROLE_PERMISSIONS, Permission, Role
from pumpguard.server.config import Argon2Parameters
from pumpguard.server.context import ServerContext
from pumpguard.server.errors import (
    AlreadyExists,
    AuthenticationFailed,
    InvalidInput,
    NotFound,
    ServerEventCode,
)
from pumpguard.server.models import UserRow, UserSessionRow
from pumpguard.server.sealing import SealError

__all__ = [
    "LOGIN_REFUSED",
    "NewUserCredentials",
    "Principal",
    "SessionToken",
    "UserInfo",
    "UserService",
    "hash_token",
    "validate_username",
]

LOGIN_REFUSED = "login refused: wrong username, password or code, or the account is locked"
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
_TOTP_STEP_S = 30
_TOTP_WINDOW = 1
_MIN_PASSWORD = 12


@dataclass(frozen=True, slots=True)
class NewUserCredentials:
    """Shown once at creation and never stored in clear."""

    username: str
    role: Role
    password: str
    totp_secret: str
    totp_uri: str


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: int
    username: str
    role: Role
    active: bool
    locked_until_ms: int
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class SessionToken:
    token: str
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller, for one request."""

    user_id: int
    username: str
    role: Role
    session_id: int

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self.role]


def _totp_context(username: str) -> str:
    return f"users.totp_secret:{username}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def validate_username(username: str) -> str:
    if not _USERNAME.fullmatch(username):
        raise InvalidInput(
            f"username {username!r} must be 2-64 characters of a-z, 0-9, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return username


@cache
def _hasher(params: Argon2Parameters) -> PasswordHasher:
    return PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_cost_kib,
        parallelism=params.parallelism,
    )


@cache
def _dummy_hash(params: Argon2Parameters) -> str:
    return _hasher(params).hash(secrets.token_hex(16))


def _info(row: UserRow) -> UserInfo:
    return UserInfo(
        id=row.id,
        username=row.username,
        role=Role(row.role),
        active=row.active,
        locked_until_ms=row.locked_until_ms,
        created_at_ms=row.created_at_ms,
    )


class UserService:
    def __init__(self, session: Session, ctx: ServerContext) -> None:
        self._session = session
        self._ctx = ctx
        self._hasher = _hasher(ctx.settings.argon2)

    def _by_name(self, username: str, *, lock: bool = False) -> UserRow | None:
        if not _USERNAME.fullmatch(username):
            return None  # cannot exist; and PostgreSQL refuses some strings (NUL) outright
        query = select(UserRow).where(UserRow.username == username)
        if lock:
            query = query.with_for_update()
        return self._session.scalars(query).first()

    def create_user(self, username: str, role: Role, actor: str) -> NewUserCredentials:
        validate_username(username)
        if self._by_name(username) is not None:
            raise AlreadyExists(f"a user named {username!r} already exists")
        password = secrets.token_urlsafe(18)
        totp_secret = pyotp.random_base32()
        now = self._ctx.clock.now_ms()
        row = UserRow(
            username=username,
            role=str(role),
            password_hash=self._hasher.hash(password),
            totp_secret=self._ctx.sealer().seal(totp_secret, _totp_context(username)),
            totp_last_step=0,
            failed_logins=0,
            locked_until_ms=0,
            active=True,
            created_at_ms=now,
        )
        self._session.add(row)
        self._session.flush()
        self._ctx.audit(self._session).append(
            AuditAction.USER_CREATED, actor, f"user:{username}", {"role": str(role)}
        )
        uri = pyotp.TOTP(totp_secret).provisioning_uri(
            name=username, issuer_name=self._ctx.settings.totp_issuer
        )
        return NewUserCredentials(username, role, password, totp_secret, uri)

    def list_users(self) -> list[UserInfo]:
        return [_info(r) for r in self._session.scalars(select(UserRow).order_by(UserRow.id))]

    def get_user(self, username: str) -> UserInfo:
        row = self._by_name(username)
        if row is None:
            raise NotFound(f"no user named {username!r}")
        return _info(row)

    def disable_user(self, username: str, actor: str) -> UserInfo:
        """Disable an account and end its sessions (staff who leave lose access at once)."""
        row = self._by_name(username)
        if row is None:
            raise NotFound(f"no user named {username!r}")
        if row.active:
            row.active = False
            now = self._ctx.clock.now_ms()
            for session_row in self._session.scalars(
                select(UserSessionRow).where(
                    UserSessionRow.user_id == row.id, UserSessionRow.ended_at_ms.is_(None)
                )
            ):
                session_row.ended_at_ms = now
            self._ctx.audit(self._session).append(
                AuditAction.USER_DISABLED, actor, f"user:{username}"
            )
        return _info(row)

    def _matching_step(self, secret: str, code: str, now_ms: int) -> int | None:
        if not (len(code) == 6 and code.isdigit()):
            return None
        totp = pyotp.TOTP(secret)
        current = now_ms // 1000 // _TOTP_STEP_S
        for step in range(current - _TOTP_WINDOW, current + _TOTP_WINDOW + 1):
            if hmac.compare_digest(totp.at(step * _TOTP_STEP_S), code):
                return step
        return None

    def _refuse(self, row: UserRow | None, username: str, reason: str, peer: str | None) -> None:
        settings = self._ctx.settings
        now = self._ctx.clock.now_ms()
        audit = self._ctx.audit(self._session)
        attributes = {"username": username, "reason": reason}
        self._ctx.emit(
            ServerEventCode.LOGIN_FAILED,
            Severity.LOW,
            f"login as {username!r} refused ({reason})",
            peer=peer,
            attributes=attributes,
        )
        audit.append(
            AuditAction.LOGIN_FAILED, username, f"user:{username}", {"reason": reason, "peer": peer}
        )
        if row is None or reason == "locked":
            return
        row.failed_logins += 1
        over = row.failed_logins - settings.lockout_threshold
        if over >= 0:
            backoff = min(settings.lockout_max_ms, settings.lockout_base_ms * 2 ** min(over, 32))
            row.locked_until_ms = now + backoff
            self._ctx.emit(
                ServerEventCode.ACCOUNT_LOCKED,
                Severity.MEDIUM,
                f"account {username!r} locked for {backoff // 1000} s after "
                f"{row.failed_logins} failed logins",
                peer=peer,
                attributes={"username": username, "failures": str(row.failed_logins)},
            )
            audit.append(
                AuditAction.ACCOUNT_LOCKED,
                "server",
                f"user:{username}",
                {"failures": row.failed_logins, "until_ms": row.locked_until_ms},
            )

    def login(
        self, username: str, password: str, totp_code: str, peer: str | None = None
    ) -> SessionToken:
        """Check both factors; on any failure record it and raise ``AuthenticationFailed``."""
        now = self._ctx.clock.now_ms()
        if not _USERNAME.fullmatch(username):
            self._refuse(None, ascii(username)[:48], "malformed username", peer)
            raise AuthenticationFailed(LOGIN_REFUSED)
        # Locked until commit: two logins racing with one code cannot both see it unused.
        row = self._by_name(username, lock=True)
        if row is None:
            with contextlib.suppress(VerificationError, InvalidHashError):
                self._hasher.verify(_dummy_hash(self._ctx.settings.argon2), password)
            self._refuse(None, username, "unknown user", peer)
            raise AuthenticationFailed(LOGIN_REFUSED)
        if row.locked_until_ms > now:
            self._ctx.emit(
                ServerEventCode.LOGIN_WHILE_LOCKED,
                Severity.MEDIUM,
                f"login attempt on locked account {username!r}",
                peer=peer,
                attributes={"username": username},
            )
            self._refuse(row, username, "locked", peer)
            raise AuthenticationFailed(LOGIN_REFUSED)
        password_ok = False
        with contextlib.suppress(VerificationError, InvalidHashError):
            password_ok = self._hasher.verify(row.password_hash, password)
        try:
            seed = self._ctx.sealer().open(row.totp_secret, _totp_context(username))
        except SealError as exc:
            self._ctx.emit(
                ServerEventCode.SEALED_SECRET_BROKEN,
                Severity.HIGH,
                str(exc),
                peer=peer,
                attributes={"username": username},
            )
            self._refuse(row, username, "stored TOTP seed does not open", peer)
            raise AuthenticationFailed(LOGIN_REFUSED) from None
        step = self._matching_step(seed, totp_code, now)
        if not password_ok or not row.active:
            self._refuse(row, username, "bad password" if row.active else "disabled", peer)
            raise AuthenticationFailed(LOGIN_REFUSED)
        if step is None:
            self._refuse(row, username, "bad code", peer)
            raise AuthenticationFailed(LOGIN_REFUSED)
        if step <= row.totp_last_step:
            self._ctx.emit(
                ServerEventCode.TOTP_REPLAY,
                Severity.HIGH,
                f"a one-time code already used by {username!r} was presented again",
                peer=peer,
                attributes={"username": username},
            )
            self._refuse(row, username, "code reused", peer)
            raise AuthenticationFailed(LOGIN_REFUSED)
        row.failed_logins = 0
        row.locked_until_ms = 0
        row.totp_last_step = step
        if self._hasher.check_needs_rehash(row.password_hash):
            row.password_hash = self._hasher.hash(password)
        token = secrets.token_urlsafe(32)
        expires = now + self._ctx.settings.session_lifetime_ms
        self._session.add(
            UserSessionRow(
                token_hash=hash_token(token),
                user_id=row.id,
                created_at_ms=now,
                last_seen_ms=now,
                expires_at_ms=expires,
                ended_at_ms=None,
            )
        )
        self._ctx.audit(self._session).append(
            AuditAction.LOGIN_SUCCEEDED, username, f"user:{username}", {"peer": peer}
        )
        return SessionToken(token, expires)

    def authenticate(self, token: str) -> Principal:
        """The principal behind a bearer token; refreshes its idle timer."""
        now = self._ctx.clock.now_ms()
        found = self._session.execute(
            select(UserSessionRow, UserRow)
            .join(UserRow, UserRow.id == UserSessionRow.user_id)
            .where(UserSessionRow.token_hash == hash_token(token))
        ).first()
        if found is None:
            raise AuthenticationFailed("not logged in: unknown or malformed session token")
        session_row, user = found
        if session_row.ended_at_ms is not None or not user.active:
            raise AuthenticationFailed("not logged in: the session has ended")
        idle = now - session_row.last_seen_ms > self._ctx.settings.session_idle_ms
        if now >= session_row.expires_at_ms or idle:
            session_row.ended_at_ms = now
            self._ctx.emit(
                ServerEventCode.SESSION_EXPIRED,
                Severity.INFORMATIONAL,
                f"session of {user.username!r} expired ({'idle' if idle else 'lifetime'})",
                attributes={"username": user.username},
            )
            raise AuthenticationFailed("not logged in: the session has expired")
        session_row.last_seen_ms = now
        return Principal(user.id, user.username, Role(user.role), session_row.id)

    def logout(self, principal: Principal) -> None:
        row = self._session.get(UserSessionRow, principal.session_id)
        if row is not None and row.ended_at_ms is None:
            row.ended_at_ms = self._ctx.clock.now_ms()
            self._ctx.audit(self._session).append(
                AuditAction.LOGOUT, principal.username, f"user:{principal.username}"
            )

    def change_password(self, principal: Principal, current: str, new: str) -> None:
        row = self._session.get(UserRow, principal.user_id)
        if row is None:
            raise NotFound("the account no longer exists")
        try:
            self._hasher.verify(row.password_hash, current)
        except (VerificationError, InvalidHashError):
            raise InvalidInput("the current password is wrong") from None
        if len(new) < _MIN_PASSWORD or new == current:
            raise InvalidInput(
                f"the new password must have at least {_MIN_PASSWORD} characters and differ "
                "from the current one"
            )
        row.password_hash = self._hasher.hash(new)
        self._ctx.audit(self._session).append(
            AuditAction.PASSWORD_CHANGED, principal.username, f"user:{principal.username}"
        )
