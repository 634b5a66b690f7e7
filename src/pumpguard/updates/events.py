"""Security event codes of the update path, and the one builder that turns a refusal into an event.

Each check the client makes has its own code, so that a detection rule (and the attack
catalogue's ``logged`` verdict) can tell a frozen mirror from a stolen signing key. Codes are
stable: once published, a code is never renamed.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from pumpguard.security_events import Component, SecurityEvent, Severity

__all__ = ["UpdateEvent", "severity_of", "update_event"]


class UpdateEvent(StrEnum):
    """Stable event codes of ``pumpguard.updates``."""

    SIGNATURE_THRESHOLD_NOT_MET = "updates.signature_threshold_not_met"
    ROLLBACK = "updates.rollback"
    TARGET_ROLLBACK = "updates.target_rollback"
    FREEZE = "updates.freeze"
    MIX_AND_MATCH = "updates.mix_and_match"
    TARGET_HASH_MISMATCH = "updates.target_hash_mismatch"
    UNKNOWN_TARGET = "updates.unknown_target"
    INVALID_TARGET = "updates.invalid_target"
    MALFORMED_METADATA = "updates.malformed_metadata"
    ENDLESS_DATA = "updates.endless_data"
    REPOSITORY_UNAVAILABLE = "updates.repository_unavailable"
    LOCAL_FAILURE = "updates.local_failure"
    VERIFIED = "updates.verified"
    SIGNATURE_REFUSED = "updates.repository.signature_refused"
    PUBLISH_REFUSED = "updates.repository.publish_refused"
    PUBLISHED = "updates.repository.published"


_SEVERITY: Mapping[UpdateEvent, Severity] = MappingProxyType(
    {
        UpdateEvent.SIGNATURE_THRESHOLD_NOT_MET: Severity.HIGH,
        UpdateEvent.ROLLBACK: Severity.HIGH,
        UpdateEvent.TARGET_ROLLBACK: Severity.HIGH,
        UpdateEvent.FREEZE: Severity.MEDIUM,
        UpdateEvent.MIX_AND_MATCH: Severity.HIGH,
        UpdateEvent.TARGET_HASH_MISMATCH: Severity.HIGH,
        UpdateEvent.UNKNOWN_TARGET: Severity.MEDIUM,
        UpdateEvent.INVALID_TARGET: Severity.HIGH,
        UpdateEvent.MALFORMED_METADATA: Severity.MEDIUM,
        UpdateEvent.ENDLESS_DATA: Severity.MEDIUM,
        UpdateEvent.REPOSITORY_UNAVAILABLE: Severity.LOW,
        UpdateEvent.LOCAL_FAILURE: Severity.MEDIUM,
        UpdateEvent.VERIFIED: Severity.INFORMATIONAL,
        UpdateEvent.SIGNATURE_REFUSED: Severity.MEDIUM,
        UpdateEvent.PUBLISH_REFUSED: Severity.MEDIUM,
        UpdateEvent.PUBLISHED: Severity.INFORMATIONAL,
    }
)


def severity_of(code: UpdateEvent) -> Severity:
    return _SEVERITY[code]


def update_event(
    code: UpdateEvent,
    message: str,
    *,
    time_ms: int,
    device_id: str | None = None,
    peer: str | None = None,
    attributes: Mapping[str, str] | None = None,
) -> SecurityEvent:
    return SecurityEvent(
        time_ms=time_ms,
        component=Component.UPDATES,
        code=code,
        severity=severity_of(code),
        message=message,
        device_id=device_id,
        peer=peer,
        attributes=dict(attributes or {}),
    )
