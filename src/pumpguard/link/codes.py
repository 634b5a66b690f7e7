"""Names the link publishes: profiles, roles, and every security event code it can emit.

A code, once published, is never renamed: detection rules and the attack catalogue's ``logged``
verdict match on these strings.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["LinkEventCode", "LinkProfile", "Role"]


class LinkProfile(StrEnum):
    """Which protocol a device speaks; chosen explicitly, never by accident."""

    LEGACY = "legacy"
    SECURE = "secure"


class Role(StrEnum):
    """What a device is allowed to do on the link."""

    PUMP = "pump"
    CONTROLLER = "controller"
    """Commands the pump (the phone app or a dedicated controller)."""
    CGM = "cgm"
    """Reports glucose, never commands."""
    METER_REMOTE = "meter-remote"
    """A legacy blood-glucose meter that doubles as a bolus remote."""


class LinkEventCode(StrEnum):
    """Why a device refused (or noticed) something on the link."""

    FRAME_MALFORMED = "link.frame.malformed"
    FRAME_CRC = "link.frame.crc"
    FRAME_WRONG_PROFILE = "link.frame.wrong_profile"
    REFLECTION = "link.frame.reflection"
    BAD_MAC = "link.auth.bad_mac"
    UNKNOWN_SENDER = "link.auth.unknown_sender"
    NO_SESSION = "link.auth.no_session"
    REPLAY = "link.replay"
    COUNTER_JUMP = "link.counter.jump"
    ROLE_DENIED = "link.role.denied"
    RATE_LIMITED = "link.rate_limited"
    E2E_CRC = "link.e2e.crc"
    E2E_COUNTER = "link.e2e.counter"
    PDU_INVALID = "link.pdu.invalid"
    PAIRING_OUTSIDE_WINDOW = "link.pairing.outside_window"
    PAIRING_UNSOLICITED = "link.pairing.unsolicited"
    PAIRING_FAILED = "link.pairing.failed"
    PAIRING_REJECTED = "link.pairing.rejected"
    PAIRING_COMPLETED = "link.pairing.completed"
    SESSION_BAD_MAC = "link.session.bad_mac"
    WAKEUP_BUDGET_EXHAUSTED = "link.wakeup.budget_exhausted"
    LINK_LOST = "link.link_lost"
