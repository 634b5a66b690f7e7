"""Named refusals of the server's services, and the security-event codes the server emits.

Services raise a ``ServerError`` subclass for every expected refusal; the HTTP layer maps each
class to one status code, and the request transaction still commits (a failed login must leave
its failure count and audit entry behind). Anything else is a bug and rolls back.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AlreadyExists",
    "AuthenticationFailed",
    "CertificateAuthorityError",
    "Forbidden",
    "IllegalTransition",
    "InvalidInput",
    "NotFound",
    "ServerError",
    "ServerEventCode",
    "StoredSecretBroken",
]


class ServerEventCode(StrEnum):
    """Security-event codes of the server; a published code is never renamed."""

    LOGIN_FAILED = "server.auth.login_failed"
    ACCOUNT_LOCKED = "server.auth.account_locked"
    LOGIN_WHILE_LOCKED = "server.auth.login_while_locked"
    TOTP_REPLAY = "server.auth.totp_replay"
    UNAUTHENTICATED = "server.auth.unauthenticated"
    SESSION_EXPIRED = "server.auth.session_expired"
    FORBIDDEN = "server.auth.forbidden"
    INVALID_REQUEST = "server.api.invalid_request"
    INGEST_UNKNOWN_DEVICE = "server.ingest.unknown_device"
    INGEST_DEVICE_NOT_ADMITTED = "server.ingest.device_not_admitted"
    INGEST_MALFORMED = "server.ingest.malformed"
    INGEST_SEQUENCE_CONFLICT = "server.ingest.sequence_conflict"
    ILLEGAL_TRANSITION = "server.asset.illegal_transition"
    SEALED_SECRET_BROKEN = "server.store.sealed_secret_broken"
    LIBRARY_SELF_APPROVAL = "server.library.self_approval"
    LIBRARY_NOT_EDITABLE = "server.library.not_editable"
    LIBRARY_STALE_APPROVAL = "server.library.stale_approval"


class ServerError(Exception):
    """An expected refusal with a human-readable message."""


class NotFound(ServerError):
    pass


class AlreadyExists(ServerError):
    pass


class InvalidInput(ServerError):
    pass


class AuthenticationFailed(ServerError):
    pass


class Forbidden(ServerError):
    pass


class CertificateAuthorityError(ServerError):
    """The certificate authority is unavailable or refused; nothing was recorded."""


class StoredSecretBroken(ServerError):
    """A secret sealed in the database no longer opens: the row was altered or moved."""


class IllegalTransition(ServerError):
    """A life-cycle move the transition table does not allow."""

    def __init__(self, ident: str, current: str, requested: str, allowed: tuple[str, ...]) -> None:
        self.ident = ident
        self.current = current
        self.requested = requested
        self.allowed = allowed
        options = ", ".join(allowed) if allowed else "none: the state is final"
        super().__init__(
            f"asset {ident} cannot go from {current} to {requested} (allowed from {current}: "
            f"{options})"
        )
