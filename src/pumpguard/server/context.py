"""What every service needs besides a database session: time, a security-event sink, policy,
the audit key and (for onboarding) the certificate authority."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from pumpguard.clock import Clock
from pumpguard.security_events import Component, SecurityEvent, SecurityEventSink, Severity
from pumpguard.server.audit import AuditKeyError, AuditLog, CheckpointKey
from pumpguard.server.certificates import DeviceCertificates
from pumpguard.server.config import ServerSettings
from pumpguard.server.errors import ServerEventCode
from pumpguard.server.sealing import Sealer

if TYPE_CHECKING:
    from pumpguard.server.library_authoring import ApprovedLibrary

__all__ = ["ServerContext"]

_SEALING_PURPOSE = "pumpguard server database secrets v1"


@dataclass(frozen=True, slots=True)
class ServerContext:
    clock: Clock
    events: SecurityEventSink
    settings: ServerSettings = field(default_factory=ServerSettings)
    audit_key: CheckpointKey | None = None
    certificates: DeviceCertificates | None = None
    on_library_approved: tuple[Callable[[Session, ApprovedLibrary], None], ...] = ()
    """Called, in order and inside the approval's transaction, when a drug library version is
    approved (see ``library_authoring.LibraryApprovalHook``): where distribution signs it."""

    def sealer(self) -> Sealer:
        """Seals and opens the secrets stored in the database (needs the audit key)."""
        if self.audit_key is None:
            raise AuditKeyError("no audit key loaded: stored secrets cannot be sealed or opened")
        return Sealer(self.audit_key.derive_key(_SEALING_PURPOSE))

    def audit(self, session: Session) -> AuditLog:
        return AuditLog(session, self.clock, self.audit_key, self.settings.audit_checkpoint_every)

    def emit(
        self,
        code: ServerEventCode,
        severity: Severity,
        message: str,
        *,
        peer: str | None = None,
        device_id: str | None = None,
        attributes: dict[str, str] | None = None,
    ) -> None:
        self.events.emit(
            SecurityEvent(
                time_ms=self.clock.now_ms(),
                component=Component.SERVER,
                code=str(code),
                severity=severity,
                message=message,
                device_id=device_id,
                peer=peer,
                attributes=attributes or {},
            )
        )
