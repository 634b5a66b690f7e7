"""Asset inventory and life cycle (SP 1800-8 ID.AM): every pump the hospital owns, from
procurement to decommissioning, with its certificate and its history.

Side effects on the certificate authority happen before the database records the move, so the
failure that can occur between them is the safe one: a certificate revoked for a pump the
database still lists as decontaminated, never a decommissioned pump with a live certificate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pumpguard.security_events import Severity
from pumpguard.server.audit import AuditAction
from pumpguard.server.certificates import DeviceCertificates, DeviceCredential
from pumpguard.server.context import ServerContext
from pumpguard.server.errors import (
    AlreadyExists,
    IllegalTransition,
    InvalidInput,
    NotFound,
    ServerEventCode,
    StoredSecretBroken,
)
from pumpguard.server.lifecycle import ADMITTED_STATES, AssetState, allowed_from, is_allowed
from pumpguard.server.models import AssetRow, AssetSecretRow, AssetTransitionRow
from pumpguard.server.sealing import SealError

__all__ = [
    "DEVICE_KEY_SECRET",
    "AssetHistoryEntry",
    "AssetInfo",
    "AssetKind",
    "AssetService",
    "TransitionOutcome",
    "validate_ident",
]

DEVICE_KEY_SECRET = "device_key_pem"
_CERT_ROW = "device_cert_pem"
_CA_ROW = "ca_pem"
_IDENT = re.compile(r"[A-Z0-9][A-Z0-9-]{0,62}[A-Z0-9]")
_REVOCATION_REASON = "cessation-of-operation"


class AssetKind(StrEnum):
    LVP = "lvp"
    SYRINGE = "syringe"
    PCA = "pca"
    INSULIN = "insulin"


@dataclass(frozen=True, slots=True)
class AssetInfo:
    id: int
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


@dataclass(frozen=True, slots=True)
class AssetHistoryEntry:
    from_state: AssetState
    to_state: AssetState
    at_ms: int
    actor: str
    reason: str


@dataclass(frozen=True, slots=True)
class TransitionOutcome:
    asset: AssetInfo
    secrets_wiped: int = 0
    certificate_revoked: bool = False
    certificate_issued: bool = False


def _secret_context(ident: str) -> str:
    return f"asset_secrets.{DEVICE_KEY_SECRET}:{ident}"


def validate_ident(ident: str) -> str:
    if not _IDENT.fullmatch(ident):
        raise InvalidInput(
            f"asset identifier {ident!r} must be 2-64 characters of A-Z, 0-9 and '-', "
            "starting and ending with a letter or digit"
        )
    return ident


def _info(row: AssetRow) -> AssetInfo:
    return AssetInfo(
        id=row.id,
        ident=row.ident,
        kind=AssetKind(row.kind),
        manufacturer=row.manufacturer,
        model=row.model,
        serial_number=row.serial_number,
        location=row.location,
        state=AssetState(row.state),
        cert_serial=row.cert_serial,
        cert_not_after_ms=row.cert_not_after_ms,
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
    )


def _text(name: str, value: str, limit: int = 128) -> str:
    value = value.strip()
    if not value or len(value) > limit or not value.isprintable():
        raise InvalidInput(f"{name} must be 1-{limit} printable characters")
    return value


class AssetService:
    def __init__(self, session: Session, ctx: ServerContext) -> None:
        self._session = session
        self._ctx = ctx

    def _row(self, ident: str) -> AssetRow:
        if not _IDENT.fullmatch(ident):  # cannot exist; PostgreSQL refuses NUL in a query
            raise NotFound(f"no asset {ident!r}")
        row = self._session.scalars(select(AssetRow).where(AssetRow.ident == ident)).first()
        if row is None:
            raise NotFound(f"no asset {ident!r}")
        return row

    def register(
        self,
        ident: str,
        kind: AssetKind,
        manufacturer: str,
        model: str,
        serial_number: str,
        actor: str,
        location: str = "",
    ) -> AssetInfo:
        """Record a procured device; it holds no credential until onboarded."""
        validate_ident(ident)
        if self._session.scalars(select(AssetRow.id).where(AssetRow.ident == ident)).first():
            raise AlreadyExists(f"asset {ident} already exists")
        now = self._ctx.clock.now_ms()
        row = AssetRow(
            ident=ident,
            kind=str(kind),
            manufacturer=_text("manufacturer", manufacturer),
            model=_text("model", model),
            serial_number=_text("serial number", serial_number),
            location=_text("location", location) if location.strip() else "",
            state=str(AssetState.PROCURED),
            cert_serial=None,
            cert_not_after_ms=None,
            created_at_ms=now,
            updated_at_ms=now,
        )
        self._session.add(row)
        self._session.flush()
        self._ctx.audit(self._session).append(
            AuditAction.ASSET_REGISTERED,
            actor,
            f"asset:{ident}",
            {"kind": str(kind), "model": row.model, "serial_number": row.serial_number},
        )
        return _info(row)

    def get(self, ident: str) -> AssetInfo:
        return _info(self._row(ident))

    def list_assets(self, state: AssetState | None = None) -> list[AssetInfo]:
        query = select(AssetRow).order_by(AssetRow.ident)
        if state is not None:
            query = query.where(AssetRow.state == str(state))
        return [_info(r) for r in self._session.scalars(query)]

    def relocate(self, ident: str, location: str, actor: str) -> AssetInfo:
        row = self._row(ident)
        if AssetState(row.state) is AssetState.DECOMMISSIONED:
            raise InvalidInput(f"asset {ident} is decommissioned; its record is history")
        old = row.location
        row.location = _text("location", location)
        row.updated_at_ms = self._ctx.clock.now_ms()
        self._ctx.audit(self._session).append(
            AuditAction.ASSET_UPDATED,
            actor,
            f"asset:{ident}",
            {"location": row.location, "was": old},
        )
        return _info(row)

    def history(self, ident: str) -> list[AssetHistoryEntry]:
        row = self._row(ident)
        rows = self._session.scalars(
            select(AssetTransitionRow)
            .where(AssetTransitionRow.asset_id == row.id)
            .order_by(AssetTransitionRow.id)
        )
        return [
            AssetHistoryEntry(
                AssetState(r.from_state), AssetState(r.to_state), r.at_ms, r.actor, r.reason
            )
            for r in rows
        ]

    def secret_names(self, ident: str) -> list[str]:
        row = self._row(ident)
        return list(
            self._session.scalars(
                select(AssetSecretRow.name)
                .where(AssetSecretRow.asset_id == row.id)
                .order_by(AssetSecretRow.name)
            )
        )

    def _certificates(self, ident: str, what: str) -> DeviceCertificates:
        if self._ctx.certificates is None:
            raise InvalidInput(f"cannot {what} {ident}: no certificate authority is configured")
        return self._ctx.certificates

    def transition(
        self, ident: str, target: AssetState, actor: str, reason: str = ""
    ) -> TransitionOutcome:
        row = self._row(ident)
        current = AssetState(row.state)
        if not is_allowed(current, target):
            self._ctx.emit(
                ServerEventCode.ILLEGAL_TRANSITION,
                Severity.LOW if current is not AssetState.DECOMMISSIONED else Severity.MEDIUM,
                f"{actor} asked to move asset {ident} from {current} to {target}",
                device_id=ident,
                attributes={"actor": actor, "from": str(current), "to": str(target)},
            )
            raise IllegalTransition(
                ident, str(current), str(target), tuple(map(str, allowed_from(current)))
            )
        if len(reason) > 1000 or not reason.isprintable():
            raise InvalidInput("reason must be at most 1000 printable characters")
        now = self._ctx.clock.now_ms()
        audit = self._ctx.audit(self._session)
        issued = revoked = False
        wiped = 0
        if target is AssetState.ONBOARDED:
            sealer = self._ctx.sealer()
            credential = self._certificates(ident, "onboard").issue_pump(ident, now)
            self._store_credential(
                row, credential, sealer.seal(credential.key_pem, _secret_context(ident)), now
            )
            issued = True
            audit.append(
                AuditAction.CERTIFICATE_ISSUED,
                actor,
                f"asset:{ident}",
                {"serial": str(credential.serial), "not_after_ms": credential.not_after_ms},
            )
        elif target is AssetState.DECOMMISSIONED:
            if row.cert_serial is not None:
                self._certificates(ident, "decommission").revoke(
                    int(row.cert_serial), _REVOCATION_REASON, now
                )
                revoked = True
                audit.append(
                    AuditAction.CERTIFICATE_REVOKED,
                    actor,
                    f"asset:{ident}",
                    {"serial": row.cert_serial, "reason": _REVOCATION_REASON},
                )
            wiped = self._wipe_secrets(row)
            audit.append(AuditAction.SECRETS_WIPED, actor, f"asset:{ident}", {"count": wiped})
        row.state = str(target)
        row.updated_at_ms = now
        self._session.add(
            AssetTransitionRow(
                asset_id=row.id,
                from_state=str(current),
                to_state=str(target),
                at_ms=now,
                actor=actor,
                reason=reason,
            )
        )
        audit.append(
            AuditAction.ASSET_TRANSITIONED,
            actor,
            f"asset:{ident}",
            {"from": str(current), "to": str(target), "reason": reason},
        )
        self._session.flush()
        return TransitionOutcome(_info(row), wiped, revoked, issued)

    def _store_credential(
        self, row: AssetRow, credential: DeviceCredential, sealed_key: str, now: int
    ) -> None:
        row.cert_serial = str(credential.serial)
        row.cert_not_after_ms = credential.not_after_ms
        self._wipe_secrets(row)
        for name, value in (
            (DEVICE_KEY_SECRET, sealed_key),
            (_CERT_ROW, credential.cert_pem),
            (_CA_ROW, credential.ca_pem),
        ):
            self._session.add(
                AssetSecretRow(asset_id=row.id, name=name, value=value, created_at_ms=now)
            )

    def collect_credential(self, ident: str, actor: str) -> DeviceCredential:
        """Hand the onboarding credential over once; the server keeps no copy of the key.

        Whoever installs it on the pump (biomed at the bench, the device runner) collects it;
        a second collection is refused, so a key that leaked from the server shows up as a
        pump that could not collect its own.
        """
        row = self._row(ident)
        state = AssetState(row.state)
        if state not in ADMITTED_STATES:
            raise InvalidInput(f"asset {ident} is {state}: it has no credential to collect")
        stored = {
            secret.name: secret
            for secret in self._session.scalars(
                select(AssetSecretRow).where(AssetSecretRow.asset_id == row.id)
            )
        }
        if DEVICE_KEY_SECRET not in stored or row.cert_serial is None:
            raise NotFound(
                f"the credential of {ident} was already collected; a lost key means a new "
                "certificate"
            )
        try:
            key_pem = self._ctx.sealer().open(
                stored[DEVICE_KEY_SECRET].value, _secret_context(ident)
            )
        except SealError as exc:
            self._ctx.emit(
                ServerEventCode.SEALED_SECRET_BROKEN,
                Severity.HIGH,
                str(exc),
                device_id=ident,
                attributes={"actor": actor},
            )
            raise StoredSecretBroken(
                f"the stored private key of {ident} does not open; issue a new certificate"
            ) from None
        credential = DeviceCredential(
            cert_pem=stored[_CERT_ROW].value if _CERT_ROW in stored else "",
            key_pem=key_pem,
            ca_pem=stored[_CA_ROW].value if _CA_ROW in stored else "",
            serial=int(row.cert_serial),
            not_after_ms=row.cert_not_after_ms or 0,
        )
        wiped = self._wipe_secrets(row)
        self._ctx.audit(self._session).append(
            AuditAction.CREDENTIAL_COLLECTED,
            actor,
            f"asset:{ident}",
            {"serial": row.cert_serial, "secrets_wiped": wiped},
        )
        return credential

    def _wipe_secrets(self, row: AssetRow) -> int:
        result = self._session.execute(
            delete(AssetSecretRow).where(AssetSecretRow.asset_id == row.id)
        )
        return int(getattr(result, "rowcount", 0) or 0)
