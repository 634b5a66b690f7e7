"""A small insulin system on one radio medium, in either profile."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from pumpguard.clinical import BasalProfile
from pumpguard.clock import VirtualClock
from pumpguard.devices.insulin import InsulinPump
from pumpguard.link import (
    NO_QUIRKS,
    Adversary,
    LegacyCgmEndpoint,
    LegacyPumpEndpoint,
    LegacyQuirks,
    LegacyRemoteEndpoint,
    LinkPolicy,
    RadioMedium,
    Role,
    SecureCgmEndpoint,
    SecureControllerEndpoint,
    SecurePumpEndpoint,
)
from pumpguard.security_events import SecurityEventLog

PUMP, CONTROLLER, CGM, METER = 0x4A1C07, 0x2B3D11, 0x7E5F23, 0x5C0FFE
START_MS = 1_700_000_000_000


def seeded(seed: int) -> Callable[[int], bytes]:
    rng = random.Random(seed)
    return rng.randbytes


@dataclass
class SecureSystem:
    clock: VirtualClock
    medium: RadioMedium
    log: SecurityEventLog
    pump: InsulinPump
    pump_ep: SecurePumpEndpoint
    controller: SecureControllerEndpoint
    cgm: SecureCgmEndpoint
    adversary: Adversary

    def pair_controller(self) -> None:
        self.pump_ep.open_pairing_window()
        self.controller.pair_with_pump()
        assert self.pump_ep.pairing_code == self.controller.pairing_code
        self.pump_ep.confirm_pairing(True)
        self.controller.confirm_pairing(True)

    def pair_cgm(self) -> None:
        self.controller.open_pairing_window()
        self.cgm.pair_with_receiver()
        assert self.cgm.pairing_code == self.controller.pairing_code
        self.controller.confirm_pairing(True)
        self.cgm.confirm_pairing(True)


@dataclass
class LegacySystem:
    clock: VirtualClock
    medium: RadioMedium
    log: SecurityEventLog
    pump: InsulinPump
    pump_ep: LegacyPumpEndpoint
    controller: LegacyRemoteEndpoint
    cgm: LegacyCgmEndpoint
    adversary: Adversary


def make_secure(policy: LinkPolicy | None = None, seed: int = 7) -> SecureSystem:
    clock = VirtualClock(START_MS)
    medium = RadioMedium(clock, seed=seed)
    log = SecurityEventLog()
    pump = InsulinPump(clock, BasalProfile.flat("1.0"), serial="PUMP-1")
    kw = {"policy": policy or LinkPolicy()}
    pump_ep = SecurePumpEndpoint(
        medium, pump, address=PUMP, sink=log, random_bytes=seeded(seed), **kw
    )
    controller = SecureControllerEndpoint(
        medium,
        address=CONTROLLER,
        pump_address=PUMP,
        sink=log,
        random_bytes=seeded(seed + 1),
        position_m=(1.0, 0.0),
        **kw,
    )
    cgm = SecureCgmEndpoint(
        medium,
        address=CGM,
        receiver_address=CONTROLLER,
        sink=log,
        random_bytes=seeded(seed + 2),
        position_m=(0.0, 1.0),
        **kw,
    )
    adversary = Adversary(medium, position_m=(5.0, 5.0))
    return SecureSystem(clock, medium, log, pump, pump_ep, controller, cgm, adversary)


def make_legacy(seed: int = 7, quirks: LegacyQuirks = NO_QUIRKS) -> LegacySystem:
    clock = VirtualClock(START_MS)
    medium = RadioMedium(clock, seed=seed)
    log = SecurityEventLog()
    pump = InsulinPump(clock, BasalProfile.flat("1.0"), serial="PUMP-1")
    pump_ep = LegacyPumpEndpoint(medium, pump, address=PUMP, sink=log, quirks=quirks)
    controller = LegacyRemoteEndpoint(
        medium, address=CONTROLLER, pump_address=PUMP, sink=log, position_m=(1.0, 0.0)
    )
    cgm = LegacyCgmEndpoint(
        medium, address=CGM, receiver_address=CONTROLLER, sink=log, position_m=(0.0, 1.0)
    )
    pump_ep.pair_by_serial(CONTROLLER, Role.CONTROLLER)
    controller.cgm_serials.add(CGM)
    adversary = Adversary(medium, position_m=(5.0, 5.0))
    return LegacySystem(clock, medium, log, pump, pump_ep, controller, cgm, adversary)


@pytest.fixture
def secure() -> SecureSystem:
    system = make_secure()
    system.pair_controller()
    assert system.controller.connect(PUMP)
    return system


@pytest.fixture
def legacy() -> LegacySystem:
    return make_legacy()
