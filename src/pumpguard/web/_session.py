"""The dashboard's session cookie and the CSRF token derived from it.

The cookie holds the same opaque session token the REST API hands out, so a dashboard session
is a server session: the same expiry, idle timeout, logout and audit. The CSRF token of a form
is an HMAC of that token: it needs no storage, differs per session, and cannot be computed by
a page that cannot read the HttpOnly cookie. Before login, a random pre-session cookie plays
the same role for the login form (login CSRF would otherwise log a victim into the attacker's
account).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request, Response

__all__ = [
    "CSRF_FIELD",
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "csrf_matches",
    "csrf_token",
    "new_login_nonce",
    "set_cookie",
]

SESSION_COOKIE = "pg_session"
LOGIN_COOKIE = "pg_login"
CSRF_FIELD = "csrf"
_CSRF_LABEL = b"pumpguard dashboard csrf v1"


def csrf_token(secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_matches(secret: str | None, presented: str | None) -> bool:
    if not secret or not presented:
        return False
    return hmac.compare_digest(csrf_token(secret), presented)


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def set_cookie(response: Response, name: str, value: str, max_age_s: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max(0, max_age_s),
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


def cookie(request: Request, name: str) -> str | None:
    value = request.cookies.get(name)
    return value if value else None
