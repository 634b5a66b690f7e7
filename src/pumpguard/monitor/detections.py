"""What a rule or an anomaly detector concludes: a ``Detection``, before it becomes an alert.

Rules (over security events) and detectors (over glucose, dosing and traffic) both end here, so
the alert book has one input however the suspicion arose. A detection names the analytic that
produced it and keeps the events that support it, so an analyst can always see why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pumpguard.security_events import SecurityEvent, Severity

__all__ = ["MAX_EVIDENCE", "Detection"]

MAX_EVIDENCE = 20
"""Events kept per detection and per alert: enough to explain, bounded under a flood."""


@dataclass(frozen=True, slots=True)
class Detection:
    """One conclusion of one analytic at one time.

    ``analytic_id`` is a rule id (``PG-LINK-001``) or a detector id (``PG-CGM-RATE``);
    ``technique`` an ATT&CK for ICS technique id (``T0856``) where one fits.
    """

    analytic_id: str
    title: str
    time_ms: int
    severity: Severity
    message: str
    device_id: str | None = None
    peer: str | None = None
    technique: str | None = None
    evidence: tuple[SecurityEvent, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.analytic_id:
            raise ValueError("a detection must name its analytic")
        if self.time_ms < 0:
            raise ValueError("time_ms must not be negative")
        if len(self.evidence) > MAX_EVIDENCE:
            object.__setattr__(self, "evidence", tuple(self.evidence[-MAX_EVIDENCE:]))
