"""One insulin system's radio, built for a profile: what the attack catalogue runs against.

``build_link(LinkProfile.LEGACY | SECURE, ...)`` puts a pump, a controller and a CGM on a
medium and pairs them the way each profile pairs: entering serials at the pump (legacy), or the
numeric comparison with a user who compares both screens and a first session (secure). The
same scenario code then drives either profile through ``LinkSystem``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from pumpguard.devices.insulin import InsulinPump
from pumpguard.link.codes import LinkProfile, Role
from pumpguard.link.legacy import (
    NO_QUIRKS,
    LegacyCgmEndpoint,
    LegacyPumpEndpoint,
    LegacyQuirks,
    LegacyRemoteEndpoint,
)
from pumpguard.link.medium import RadioMedium
from pumpguard.link.secure import (
    LinkPolicy,
    SecureCgmEndpoint,
    SecureControllerEndpoint,
    SecurePumpEndpoint,
)
from pumpguard.security_events import SecurityEventSink

__all__ = ["LinkAddresses", "LinkSystem", "PairingError", "build_link"]


@dataclass(frozen=True, slots=True)
class LinkAddresses:
    pump: int = 0x4A1C07
    controller: int = 0x2B3D11
    cgm: int = 0x7E5F23


@dataclass(frozen=True, slots=True)
class LinkSystem:
    profile: LinkProfile
    medium: RadioMedium
    pump: LegacyPumpEndpoint | SecurePumpEndpoint
    controller: LegacyRemoteEndpoint | SecureControllerEndpoint
    cgm: LegacyCgmEndpoint | SecureCgmEndpoint
    addresses: LinkAddresses


class PairingError(RuntimeError):
    """The devices did not pair (in the secure profile: the numbers did not match)."""


def build_link(
    profile: LinkProfile,
    medium: RadioMedium,
    pump: InsulinPump,
    *,
    sink: SecurityEventSink,
    addresses: LinkAddresses | None = None,
    policy: LinkPolicy | None = None,
    random_bytes: Callable[[int], bytes] = os.urandom,
    legacy_quirks: LegacyQuirks = NO_QUIRKS,
) -> LinkSystem:
    """Pump at (0, 0), controller at (1, 0), CGM at (0, 1) metres, paired and ready.

    ``legacy_quirks`` configures the legacy pump's firmware bugs (ignored by the secure
    profile): legacy weaknesses are configuration, never an accident of shared code."""
    a = addresses or LinkAddresses()
    if profile is LinkProfile.LEGACY:
        legacy_pump = LegacyPumpEndpoint(
            medium, pump, address=a.pump, sink=sink, quirks=legacy_quirks
        )
        remote = LegacyRemoteEndpoint(
            medium, address=a.controller, pump_address=a.pump, sink=sink, position_m=(1.0, 0.0)
        )
        legacy_cgm = LegacyCgmEndpoint(
            medium, address=a.cgm, receiver_address=a.controller, sink=sink, position_m=(0.0, 1.0)
        )
        legacy_pump.pair_by_serial(a.controller, Role.CONTROLLER)
        remote.cgm_serials.add(a.cgm)
        return LinkSystem(profile, medium, legacy_pump, remote, legacy_cgm, a)
    rules = policy or LinkPolicy()
    secure_pump = SecurePumpEndpoint(
        medium, pump, address=a.pump, sink=sink, policy=rules, random_bytes=random_bytes
    )
    controller = SecureControllerEndpoint(
        medium,
        address=a.controller,
        pump_address=a.pump,
        sink=sink,
        policy=rules,
        random_bytes=random_bytes,
        position_m=(1.0, 0.0),
    )
    cgm = SecureCgmEndpoint(
        medium,
        address=a.cgm,
        receiver_address=a.controller,
        sink=sink,
        policy=rules,
        random_bytes=random_bytes,
        position_m=(0.0, 1.0),
    )
    secure_pump.open_pairing_window()
    controller.pair_with_pump()
    _compare_and_confirm(secure_pump, controller)
    controller.open_pairing_window()
    cgm.pair_with_receiver()
    _compare_and_confirm(controller, cgm)
    if not controller.connect(a.pump) or not cgm.connect(a.controller):
        raise PairingError("paired, but no session could be set up")
    return LinkSystem(profile, medium, secure_pump, controller, cgm, a)


def _compare_and_confirm(
    responder: SecurePumpEndpoint | SecureControllerEndpoint,
    initiator: SecureControllerEndpoint | SecureCgmEndpoint,
) -> None:
    """The user looks at both screens and confirms on both only if the numbers match."""
    shown = responder.pairing_code
    same = shown is not None and shown == initiator.pairing_code
    responder.confirm_pairing(same)
    initiator.confirm_pairing(same)
    if not same or initiator.address not in responder.peers:
        raise PairingError(
            f"pairing {initiator.name} with {responder.name} failed: the numbers did not match"
        )
