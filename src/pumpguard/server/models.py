"""The server's tables, as typed SQLAlchemy 2 mappings.

Every time is an integer of milliseconds since the Unix epoch (the ``Clock`` convention), so
SQLite and PostgreSQL store and compare the same values and no time zone is ever guessed.
Enumerated columns are plain strings validated by the services: adding a state later is a code
change, not a migration of a database enum type. The schema itself is created only by the
Alembic migrations in ``migrations/``; a test checks they match these classes.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AssetRow",
    "AssetSecretRow",
    "AssetTransitionRow",
    "AuditCheckpointRow",
    "AuditEntryRow",
    "AuditHeadRow",
    "Base",
    "PumpEventRow",
    "PumpStatusRow",
    "UserRow",
    "UserSessionRow",
]

_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret: Mapped[str] = mapped_column(String(255))
    totp_last_step: Mapped[int] = mapped_column(BigInteger, default=0)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class UserSessionRow(Base):
    """A login; only the SHA-256 of the bearer token is kept, so a database dump opens nothing."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    last_seen_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)
    ended_at_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AssetRow(Base):
    __tablename__ = "assets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ident: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    manufacturer: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(128))
    serial_number: Mapped[str] = mapped_column(String(128))
    location: Mapped[str] = mapped_column(String(128), default="")
    state: Mapped[str] = mapped_column(String(32), index=True)
    cert_serial: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cert_not_after_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class AssetTransitionRow(Base):
    """Life-cycle history; never deleted, so a decommissioned pump keeps its past."""

    __tablename__ = "asset_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), index=True)
    from_state: Mapped[str] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    at_ms: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")


class AssetSecretRow(Base):
    """Provisioning material held for a device (its private key until collected, network keys)."""

    __tablename__ = "asset_secrets"
    __table_args__ = (UniqueConstraint("asset_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class PumpStatusRow(Base):
    __tablename__ = "pump_status"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    connected: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(32), default="unknown")
    programme: Mapped[str | None] = mapped_column(String(255), nullable=True)
    battery_pct: Mapped[int | None] = mapped_column(Integer, nullable=True)
    firmware_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    library_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status_sent_at_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    last_seen_ms: Mapped[int] = mapped_column(BigInteger, default=0)


class PumpEventRow(Base):
    """An event as the pump sent it; (device_id, seq) is what makes resending harmless."""

    __tablename__ = "pump_events"
    __table_args__ = (
        UniqueConstraint("device_id", "seq"),
        Index("ix_pump_events_received_at_ms", "received_at_ms"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    sent_at_ms: Mapped[int] = mapped_column(BigInteger)
    received_at_ms: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)


class AuditEntryRow(Base):
    """One link of the audit hash chain; ``details`` is canonical JSON, stored verbatim."""

    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(128))
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpointRow(Base):
    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    entry_hash: Mapped[str] = mapped_column(String(64))
    signed_at_ms: Mapped[int] = mapped_column(BigInteger)
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(Text)


class AuditHeadRow(Base):
    """The single row every append locks first, so concurrent writers cannot fork the chain."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))


# Drug library authoring (migration 0002).


class LibraryVersionRow(Base):
    """One version of the drug library, from draft to approved (then immutable) or rejected.

    ``canonical`` and ``content_sha256`` are set once, at approval: the exact bytes the
    approver saw are the bytes that get signed and shipped."""

    __tablename__ = "library_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    library_id: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(80))
    institution: Mapped[str | None] = mapped_column(Text, nullable=True)
    sources: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), index=True)
    base_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)
    submitted_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    submitted_at_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    decision_note: Mapped[str] = mapped_column(Text, default="")
    content_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    canonical: Mapped[str | None] = mapped_column(Text, nullable=True)


class LibraryCareAreaRow(Base):
    __tablename__ = "library_care_areas"
    __table_args__ = (UniqueConstraint("version_id", "name_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("library_versions.id"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(80))
    name_key: Mapped[str] = mapped_column(Text)
    max_rate_ml_h: Mapped[str | None] = mapped_column(Text, nullable=True)


class LibraryEntryRow(Base):
    """A drug entry; ``body`` is its canonical JSON in the published schema."""

    __tablename__ = "library_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    care_area_id: Mapped[int] = mapped_column(ForeignKey("library_care_areas.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(80))
    body: Mapped[str] = mapped_column(Text)


class LibraryContributionRow(Base):
    """Who drafted, edited or submitted a version: the people the two-person rule excludes
    from approving it, by account id (a role change does not make them a second person)."""

    __tablename__ = "library_contributions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("library_versions.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    username: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    at_ms: Mapped[int] = mapped_column(BigInteger)


# Alerts and incidents (migration 0003).


class AlertHeadRow(Base):
    """The single row every alert write locks first: it serialises writers (the server, the
    CLI) and numbers alerts, incidents and changes (``last_change`` drives the exporters)."""

    __tablename__ = "alert_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_alert: Mapped[int] = mapped_column(BigInteger)
    last_incident: Mapped[int] = mapped_column(BigInteger)
    last_change: Mapped[int] = mapped_column(BigInteger)


class AlertRow(Base):
    """An alert's current state; ``evidence`` is the JSON list of its supporting events."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(16), unique=True)
    analytic_id: Mapped[str] = mapped_column(String(32), index=True)
    title: Mapped[str] = mapped_column(String(200))
    severity: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    first_ms: Mapped[int] = mapped_column(BigInteger)
    last_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    count: Mapped[int] = mapped_column(BigInteger)
    incident_id: Mapped[str] = mapped_column(String(16), index=True)
    device_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    peer: Mapped[str | None] = mapped_column(String(255), nullable=True)
    technique: Mapped[str | None] = mapped_column(String(16), nullable=True)
    message: Mapped[str] = mapped_column(Text)
    evidence: Mapped[str] = mapped_column(Text)
    change_seq: Mapped[int] = mapped_column(BigInteger, index=True)


class AlertChangeRow(Base):
    """One step of an alert's life (new, acknowledged, resolved), with who and why."""

    __tablename__ = "alert_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_row_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    time_ms: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)


class IncidentRow(Base):
    """Correlated alerts; which ones is ``alerts.incident_id``, their devices and peers too."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(16), unique=True)
    severity: Mapped[int] = mapped_column(Integer)
    first_ms: Mapped[int] = mapped_column(BigInteger)
    last_ms: Mapped[int] = mapped_column(BigInteger, index=True)


# EHR orders (migration 0004).


class EhrOrderRow(Base):
    """One PIV order that parsed (replays included, refused) and what became of it.

    Values from the wire are ``Text``: their length is the sender's, and a row must never fail
    to store because an EHR wrote a long name. Quantities are exact decimal strings."""

    __tablename__ = "ehr_orders"
    __table_args__ = (Index("ix_ehr_orders_pump_status", "pump_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    peer: Mapped[str] = mapped_column(Text)
    control_id: Mapped[str] = mapped_column(Text)
    sending_application: Mapped[str] = mapped_column(Text)
    sending_facility: Mapped[str] = mapped_column(Text)
    order_control: Mapped[str] = mapped_column(String(8))
    placer_order_number: Mapped[str] = mapped_column(Text)
    placer_namespace: Mapped[str] = mapped_column(Text)
    patient_id: Mapped[str] = mapped_column(Text)
    patient_name: Mapped[str] = mapped_column(Text)
    pump_id: Mapped[str] = mapped_column(Text)
    drug_code: Mapped[str] = mapped_column(Text)
    drug_name: Mapped[str] = mapped_column(Text)
    dose: Mapped[str | None] = mapped_column(Text, nullable=True)
    dose_unit: Mapped[str | None] = mapped_column(Text, nullable=True)
    rate_ml_h: Mapped[str | None] = mapped_column(Text, nullable=True)
    vtbi_ml: Mapped[str | None] = mapped_column(Text, nullable=True)
    weight_kg: Mapped[str | None] = mapped_column(Text, nullable=True)
    concentration: Mapped[str | None] = mapped_column(Text, nullable=True)
    care_area: Mapped[str | None] = mapped_column(Text, nullable=True)
    order_time_ms: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(32))
    app_error: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    ack_code: Mapped[str | None] = mapped_column(String(2), nullable=True)
    command_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prefilled_at_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    decided_at_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    acknowledged_at_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    message: Mapped[str] = mapped_column(Text)


class EhrOrderKeyRow(Base):
    """What makes an order a replay: its message id (per sender) and, for a new container, its
    placer order number. The primary key is the SHA-256 of the key text, so the database, not
    a memory that a restart empties, decides what was seen before."""

    __tablename__ = "ehr_order_keys"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    order_id: Mapped[int] = mapped_column(ForeignKey("ehr_orders.id"), index=True)


class EhrOrderStepRow(Base):
    """The order's trail, from receipt to the acknowledgement and the pump's events."""

    __tablename__ = "ehr_order_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("ehr_orders.id"), index=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")
