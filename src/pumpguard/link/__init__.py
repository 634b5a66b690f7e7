"""The insulin system's radio link: a shared medium, a legacy and a secure protocol, energy.

``RadioMedium`` carries frames between endpoints in virtual time; ``Adversary`` is a node in
the attacker's hands. ``LinkProfile`` picks the protocol: the legacy endpoints reproduce the
published weaknesses of insulin-pump radios, the secure endpoints implement the design of
``docs/protocols/insulin-link.md``. Every refusal is reported as a ``SecurityEvent`` with a
``LinkEventCode``.
"""

from pumpguard.link._base import HandledCommand, LinkReply, RateLimiter
from pumpguard.link.adversary import Adversary, Capture, PairingMitm
from pumpguard.link.codes import LinkEventCode, LinkProfile, Role
from pumpguard.link.energy import NRF52_CLASS, EnergyMeter, EnergyModel, EnergyUse
from pumpguard.link.frames import (
    BROADCAST,
    MAX_FRAME_BYTES,
    FrameError,
    FrameKind,
    LegacyFrame,
    SecureFrame,
    address_text,
    decode_legacy,
    decode_secure,
)
from pumpguard.link.legacy import (
    LEGACY_RADIO_QUIRKS,
    NO_QUIRKS,
    LegacyCgmEndpoint,
    LegacyPumpEndpoint,
    LegacyQuirks,
    LegacyRemoteEndpoint,
)
from pumpguard.link.medium import (
    PASS,
    InterceptPass,
    InterceptRule,
    Jammer,
    MediumStats,
    PlacedNode,
    RadioMedium,
    RadioNode,
    Transmission,
    airtime_us,
)
from pumpguard.link.pdu import AppKind, CgmMeasurement, CpResponse, PduError, PumpStatusPdu
from pumpguard.link.secure import (
    LinkPolicy,
    PairedPeer,
    PairingStage,
    SecureCgmEndpoint,
    SecureControllerEndpoint,
    SecureEndpoint,
    SecurePumpEndpoint,
)
from pumpguard.link.system import LinkAddresses, LinkSystem, PairingError, build_link

__all__ = [
    "BROADCAST",
    "LEGACY_RADIO_QUIRKS",
    "MAX_FRAME_BYTES",
    "NO_QUIRKS",
    "NRF52_CLASS",
    "PASS",
    "Adversary",
    "AppKind",
    "Capture",
    "CgmMeasurement",
    "CpResponse",
    "EnergyMeter",
    "EnergyModel",
    "EnergyUse",
    "FrameError",
    "FrameKind",
    "HandledCommand",
    "InterceptPass",
    "InterceptRule",
    "Jammer",
    "LegacyCgmEndpoint",
    "LegacyFrame",
    "LegacyPumpEndpoint",
    "LegacyQuirks",
    "LegacyRemoteEndpoint",
    "LinkAddresses",
    "LinkEventCode",
    "LinkPolicy",
    "LinkProfile",
    "LinkReply",
    "LinkSystem",
    "MediumStats",
    "PairedPeer",
    "PairingError",
    "PairingMitm",
    "PairingStage",
    "PduError",
    "PlacedNode",
    "PumpStatusPdu",
    "RadioMedium",
    "RadioNode",
    "RateLimiter",
    "Role",
    "SecureCgmEndpoint",
    "SecureControllerEndpoint",
    "SecureEndpoint",
    "SecureFrame",
    "SecurePumpEndpoint",
    "Transmission",
    "address_text",
    "airtime_us",
    "build_link",
    "decode_legacy",
    "decode_secure",
]
