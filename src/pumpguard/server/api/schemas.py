"""Request and response bodies of the HTTP API.

Requests are strict (text fields take JSON strings only, no coercion of 123456 into
"123456") and closed (unknown fields are refused), so a client bug or a probe is told exactly
which field is wrong instead of being half-understood. Enumerations take their string values.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pumpguard.server.assets import AssetKind
from pumpguard.server.audit import AuditProblemKind
from pumpguard.server.authz import Permission, Role
from pumpguard.server.lifecycle import AssetState

__all__ = [
    "AssetCreate",
    "AssetOut",
    "AssetPatch",
    "AuditEntryOut",
    "AuditProblemOut",
    "AuditVerificationOut",
    "CredentialOut",
    "ErrorOut",
    "EventOut",
    "HistoryOut",
    "LoginIn",
    "LoginOut",
    "MeOut",
    "NewUserOut",
    "PasswordChangeIn",
    "PumpStatusOut",
    "TransitionIn",
    "TransitionOut",
    "UserCreate",
    "UserOut",
]

_CLOSED = ConfigDict(extra="forbid")


class _In(BaseModel):
    model_config = _CLOSED


class ErrorOut(BaseModel):
    error: str
    detail: str


class LoginIn(_In):
    username: str = Field(min_length=1, max_length=64, strict=True)
    password: str = Field(min_length=1, max_length=256, strict=True)
    totp: str = Field(min_length=6, max_length=6, pattern=r"^[0-9]{6}$", strict=True)


class LoginOut(BaseModel):
    token: str
    token_type: str = "bearer"
    expires_at_ms: int


class MeOut(BaseModel):
    username: str
    role: Role
    permissions: list[Permission]


class PasswordChangeIn(_In):
    current: str = Field(min_length=1, max_length=256, strict=True)
    new: str = Field(min_length=12, max_length=256, strict=True)


class UserCreate(_In):
    username: str = Field(
        min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]+$", strict=True
    )
    role: Role


class UserOut(BaseModel):
    username: str
    role: Role
    active: bool
    locked_until_ms: int
    created_at_ms: int


class NewUserOut(BaseModel):
    """Returned once: the password and TOTP URI are not stored in clear anywhere."""

    username: str
    role: Role
    password: str
    totp_uri: str


class AssetCreate(_In):
    ident: str = Field(
        min_length=2, max_length=64, pattern=r"^[A-Z0-9][A-Z0-9-]*[A-Z0-9]$", strict=True
    )
    kind: AssetKind
    manufacturer: str = Field(min_length=1, max_length=128, strict=True)
    model: str = Field(min_length=1, max_length=128, strict=True)
    serial_number: str = Field(min_length=1, max_length=128, strict=True)
    location: str = Field(default="", max_length=128, strict=True)


class AssetPatch(_In):
    location: str = Field(min_length=1, max_length=128, strict=True)


class AssetOut(BaseModel):
    ident: str
    kind: AssetKind
    manufacturer: str
    model: str
    serial_number: str
    location: str
    state: AssetState
    cert_serial: str | None
    cert_not_after_ms: int | None
    created_at_ms: int
    updated_at_ms: int


class TransitionIn(_In):
    to: AssetState
    reason: str = Field(default="", max_length=1000, strict=True)


class TransitionOut(BaseModel):
    asset: AssetOut
    certificate_issued: bool
    certificate_revoked: bool
    secrets_wiped: int


class CredentialOut(BaseModel):
    """Returned once: the server deletes its copy of the private key as it answers."""

    cert_pem: str
    key_pem: str
    ca_pem: str
    serial: str
    not_after_ms: int


class HistoryOut(BaseModel):
    from_state: AssetState
    to_state: AssetState
    at_ms: int
    actor: str
    reason: str


class PumpStatusOut(BaseModel):
    device_id: str
    online: bool
    connected: bool
    state: str
    programme: str | None
    battery_pct: int | None
    firmware_version: str | None
    library_version: str | None
    last_seen_ms: int
    asset_state: AssetState | None


class EventOut(BaseModel):
    id: int
    device_id: str
    seq: int
    sent_at_ms: int
    received_at_ms: int
    kind: str
    body: dict[str, Any]


class AuditEntryOut(BaseModel):
    seq: int
    at_ms: int
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    entry_hash: str


class AuditProblemOut(BaseModel):
    seq: int
    kind: AuditProblemKind
    message: str


class AuditVerificationOut(BaseModel):
    ok: bool
    entries: int
    last_seq: int
    checkpoints: int
    last_checkpoint_seq: int
    unanchored: int
    problems: list[AuditProblemOut]
