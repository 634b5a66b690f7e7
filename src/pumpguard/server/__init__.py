"""The pump server: persistence, fleet life cycle, users, and a tamper-evident audit log.

A services package: plain classes over a SQLAlchemy ``Session`` (``UserService``,
``AssetService``, ``IngestService``, ``AuditLog``) that the HTTP API (``server.api``), the CLI
and the transport's ingest loop all call. The schema is created only by the Alembic migrations
shipped in ``migrations/``; SQLite by default, PostgreSQL through ``PUMPGUARD_DATABASE_URL``.
"""

from __future__ import annotations

from pumpguard.server.assets import (
    DEVICE_KEY_SECRET,
    AssetHistoryEntry,
    AssetInfo,
    AssetKind,
    AssetService,
    TransitionOutcome,
)
from pumpguard.server.audit import (
    AuditAction,
    AuditCheckpoint,
    AuditEntry,
    AuditKeyError,
    AuditLog,
    AuditProblem,
    AuditProblemKind,
    AuditVerification,
    CheckpointKey,
    load_checkpoint_public_key,
    public_key_path,
    verify_audit_log,
)
from pumpguard.server.authz import ROLE_PERMISSIONS, Permission, Role, role_allows
from pumpguard.server.certificates import DeviceCertificates, DeviceCredential
from pumpguard.server.config import (
    AUDIT_PASSPHRASE_ENV,
    DATABASE_URL_ENV,
    Argon2Parameters,
    ServerSettings,
    database_url,
    normalise_database_url,
)
from pumpguard.server.context import ServerContext
from pumpguard.server.datadir import (
    SECURITY_EVENTS_FILE,
    audit_key_dir,
    audit_public_key_path,
    open_audit_key,
    open_certificates,
    pki_dir,
    resolve_audit_passphrase,
)
from pumpguard.server.db import make_engine, upgrade_database
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
from pumpguard.server.ingest import (
    CONNECTION_KIND,
    STATUS_KIND,
    EventRecord,
    IngestResult,
    IngestService,
    PumpStatusView,
    RejectedRecord,
    StatusReport,
    StoredEvent,
)
from pumpguard.server.lifecycle import ADMITTED_STATES, TRANSITIONS, AssetState, allowed_from
from pumpguard.server.pki_adapter import PkiDeviceCertificates
from pumpguard.server.sealing import Sealer, SealError
from pumpguard.server.store import Store
from pumpguard.server.users import (
    NewUserCredentials,
    Principal,
    SessionToken,
    UserInfo,
    UserService,
)

__all__ = [
    "ADMITTED_STATES",
    "AUDIT_PASSPHRASE_ENV",
    "CONNECTION_KIND",
    "DATABASE_URL_ENV",
    "DEVICE_KEY_SECRET",
    "ROLE_PERMISSIONS",
    "SECURITY_EVENTS_FILE",
    "STATUS_KIND",
    "TRANSITIONS",
    "AlreadyExists",
    "Argon2Parameters",
    "AssetHistoryEntry",
    "AssetInfo",
    "AssetKind",
    "AssetService",
    "AssetState",
    "AuditAction",
    "AuditCheckpoint",
    "AuditEntry",
    "AuditKeyError",
    "AuditLog",
    "AuditProblem",
    "AuditProblemKind",
    "AuditVerification",
    "AuthenticationFailed",
    "CertificateAuthorityError",
    "CheckpointKey",
    "DeviceCertificates",
    "DeviceCredential",
    "EventRecord",
    "Forbidden",
    "IllegalTransition",
    "IngestResult",
    "IngestService",
    "InvalidInput",
    "NewUserCredentials",
    "NotFound",
    "Permission",
    "PkiDeviceCertificates",
    "Principal",
    "PumpStatusView",
    "RejectedRecord",
    "Role",
    "SealError",
    "Sealer",
    "ServerContext",
    "ServerError",
    "ServerEventCode",
    "ServerSettings",
    "SessionToken",
    "StatusReport",
    "Store",
    "StoredEvent",
    "StoredSecretBroken",
    "TransitionOutcome",
    "UserInfo",
    "UserService",
    "allowed_from",
    "audit_key_dir",
    "audit_public_key_path",
    "database_url",
    "load_checkpoint_public_key",
    "make_engine",
    "normalise_database_url",
    "open_audit_key",
    "open_certificates",
    "pki_dir",
    "public_key_path",
    "resolve_audit_passphrase",
    "role_allows",
    "upgrade_database",
    "verify_audit_log",
]
