"""Link figures in virtual time: frame overhead, pairing cost, battery life, flood resilience.

``measure_link`` builds a pump, a controller and a CGM per profile on a ``RadioMedium``, runs
normal use (an AID cycle every 5 minutes: a temp basal and a status read; a CGM reading every
5 minutes to the controller; three meal boluses a day; one new session a day) and then the same
use for an hour under a wake-up flood from an adversary that knows everything the radio reveals
(legacy: the pump's and the controller's serials; secure: the public addresses and every frame
it recorded). The pump's radio charge comes from its ``EnergyMeter`` plus listening; battery
life adds the pump model's own delivering draw, so it is the whole pump's battery.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from pumpguard.clinical import BasalProfile
from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE, VirtualClock
from pumpguard.devices.insulin import (
    Bolus,
    CancelTempBasal,
    Command,
    CommandSource,
    IdsOpcode,
    IdsResponseCode,
    InsulinPump,
    PumpState,
    SetTempBasal,
)
from pumpguard.devices.sensors import CgmReading
from pumpguard.link.adversary import Adversary
from pumpguard.link.codes import LinkProfile, Role
from pumpguard.link.crypto import SessionKeys, aead_seal
from pumpguard.link.energy import NRF52_CLASS, EnergyMeter, EnergyModel
from pumpguard.link.frames import FrameKind, LegacyFrame, SecureFrame
from pumpguard.link.legacy import LegacyCgmEndpoint, LegacyPumpEndpoint, LegacyRemoteEndpoint
from pumpguard.link.medium import RadioMedium
from pumpguard.link.pdu import (
    AppKind,
    CgmMeasurement,
    CpResponse,
    e2e_wrap,
    encode_cgm,
    encode_command,
    encode_response,
    encode_status,
)
from pumpguard.link.secure import (
    LinkPolicy,
    SecureCgmEndpoint,
    SecureControllerEndpoint,
    SecurePumpEndpoint,
)
from pumpguard.security_events import SecurityEventLog

__all__ = ["LinkBench", "ProfileFigures", "frame_overheads", "measure_link"]

PUMP, CONTROLLER, CGM = 0x4A1C07, 0x2B3D11, 0x7E5F23
_CYCLE_MS = 5 * MS_PER_MINUTE
_MEALS_MIN = (7 * 60, 12 * 60 + 30, 19 * 60)


@dataclass(frozen=True, slots=True)
class ProfileFigures:
    profile: LinkProfile
    link_ma_normal: float
    """Average current of the pump's link in normal use (listening included)."""
    link_ma_flood: float
    battery_days_normal: float
    battery_days_flood: float
    flood_frames: int
    pump_wakes_per_hour_normal: float
    pump_wakes_flood_hour: int
    """Frames that passed the pump radio's address match and woke it during the flood hour
    (the flood's and the normal traffic's)."""
    commands_sent: int
    commands_answered: int
    commands_sent_flood: int
    commands_answered_flood: int
    security_events: int

    @property
    def flood_kept_percent(self) -> float:
        return 100 * self.battery_days_flood / self.battery_days_normal


@dataclass(frozen=True, slots=True)
class LinkBench:
    overhead_bytes: int
    overhead_by_message: dict[str, int]
    pairing_mj_pump: float
    pairing_mj_controller: float
    session_mj_pump: float
    legacy: ProfileFigures
    secure: ProfileFigures
    flood_rate_per_s: int
    hours_normal: int
    device_class: str
    battery_mah: float
    pump_draw_ma: float

    @property
    def battery_cost_percent(self) -> float:
        """How much shorter the secure pump's battery lasts than the legacy one's (normal use)."""
        return 100 * (1 - self.secure.battery_days_normal / self.legacy.battery_days_normal)

    @property
    def radio_cost_percent(self) -> float:
        """How much more charge the secure link itself draws than the legacy one (normal use),
        leaving the pump's own draw out."""
        return 100 * (self.secure.link_ma_normal / self.legacy.link_ma_normal - 1)


_SAMPLE_KEYS = SessionKeys(bytes(4), bytes(16), bytes(16), bytes(16), bytes(16))


def _messages() -> Iterator[tuple[str, AppKind, bytes, bytes]]:
    """Each application message: name, kind, legacy payload, secure plaintext (after kind)."""
    commands: list[tuple[str, Command]] = [
        ("bolus", Bolus(Decimal("2.5"), CommandSource.REMOTE, "x")),
        ("temp-basal", SetTempBasal(30, Decimal("0.8"), None, CommandSource.AUTOMATED, "x")),
        ("cancel-temp-basal", CancelTempBasal(CommandSource.AUTOMATED, "x")),
    ]
    for name, command in commands:
        pdu = encode_command(command)
        yield name, AppKind.COMMAND_REMOTE, pdu, e2e_wrap(pdu, 1)
    response = encode_response(CpResponse(IdsOpcode.SET_TBR_ADJUSTMENT, IdsResponseCode.SUCCESS))
    yield "response", AppKind.COMMAND_RESPONSE, response, e2e_wrap(response, 1)
    yield "status-request", AppKind.STATUS_REQUEST, b"", e2e_wrap(b"", 1)
    status = encode_status(PumpState.RUNNING, Decimal("123.4"), False)
    yield "status", AppKind.STATUS, status, e2e_wrap(status, 1)
    reading = CgmMeasurement(120, 5)
    yield (
        "cgm",
        AppKind.CGM_MEASUREMENT,
        encode_cgm(reading, with_crc=False),
        encode_cgm(reading, with_crc=True),
    )


def frame_overheads() -> dict[str, int]:
    """Secure minus legacy frame size, in bytes, for the same application message."""
    found: dict[str, int] = {}
    for name, kind, legacy_pdu, secure_body in _messages():
        legacy = LegacyFrame(kind, PUMP, CONTROLLER, legacy_pdu).encode()
        header = bytes([FrameKind.DATA]) + PUMP.to_bytes(3, "big") + CONTROLLER.to_bytes(3, "big")
        header += bytes(2)
        sealed = aead_seal(_SAMPLE_KEYS, 1, 0, header, bytes([kind]) + secure_body)
        secure = SecureFrame(FrameKind.DATA, PUMP, CONTROLLER, bytes(2) + sealed).encode()
        found[name] = len(secure) - len(legacy)
    return found


@dataclass(slots=True)
class _Rig:
    clock: VirtualClock
    medium: RadioMedium
    log: SecurityEventLog
    pump: InsulinPump
    pump_meter: EnergyMeter
    controller: LegacyRemoteEndpoint | SecureControllerEndpoint
    cgm: LegacyCgmEndpoint | SecureCgmEndpoint
    adversary: Adversary
    reconnect: Callable[[], None]
    flood_frame: Callable[[int], bytes]
    sent: int = 0
    answered: int = 0
    ids: int = 0

    def command(self, command: Command) -> None:
        self.sent += 1
        reply = self.controller.send(command)
        if reply is None:
            reply = self.controller.send(command)  # the same id again, as after a lost answer
        self.answered += reply is not None

    def next_id(self) -> str:
        self.ids += 1
        return f"bench-{self.ids}"


def _clock_and_pump(start_ms: int) -> tuple[VirtualClock, InsulinPump]:
    clock = VirtualClock(start_ms)
    return clock, InsulinPump(clock, BasalProfile.flat("0.8"), serial="PUMP-4A1C07")


def _legacy_rig(seed: int, energy: EnergyModel, start_ms: int) -> _Rig:
    clock, pump = _clock_and_pump(start_ms)
    medium = RadioMedium(clock, seed=seed)
    log = SecurityEventLog()
    pump_ep = LegacyPumpEndpoint(medium, pump, address=PUMP, sink=log, energy=energy)
    controller = LegacyRemoteEndpoint(
        medium, address=CONTROLLER, pump_address=PUMP, sink=log, position_m=(1, 0), energy=energy
    )
    cgm = LegacyCgmEndpoint(
        medium, address=CGM, receiver_address=CONTROLLER, sink=log, position_m=(0, 1), energy=energy
    )
    pump_ep.pair_by_serial(CONTROLLER, Role.CONTROLLER)
    controller.cgm_serials.add(CGM)
    adversary = Adversary(medium, position_m=(5, 5), range_m=30, record=False)

    def flood_frame(i: int) -> bytes:
        return LegacyFrame(AppKind.STATUS_REQUEST, PUMP, CONTROLLER).encode()

    return _Rig(
        clock,
        medium,
        log,
        pump,
        pump_ep.meter,
        controller,
        cgm,
        adversary,
        lambda: None,
        flood_frame,
    )


def _secure_rig(
    seed: int, energy: EnergyModel, start_ms: int, policy: LinkPolicy
) -> tuple[_Rig, float, float, float]:
    """The rig, and the pump's and controller's pairing energy and the pump's session energy."""
    clock, pump = _clock_and_pump(start_ms)
    medium = RadioMedium(clock, seed=seed)
    log = SecurityEventLog()
    rng = random.Random(seed)

    def random_bytes(n: int) -> bytes:
        return rng.randbytes(n)

    pump_ep = SecurePumpEndpoint(
        medium,
        pump,
        address=PUMP,
        sink=log,
        random_bytes=random_bytes,
        energy=energy,
        policy=policy,
    )
    controller = SecureControllerEndpoint(
        medium,
        address=CONTROLLER,
        pump_address=PUMP,
        sink=log,
        random_bytes=random_bytes,
        position_m=(1, 0),
        energy=energy,
        policy=policy,
    )
    cgm = SecureCgmEndpoint(
        medium,
        address=CGM,
        receiver_address=CONTROLLER,
        sink=log,
        random_bytes=random_bytes,
        position_m=(0, 1),
        energy=energy,
        policy=policy,
    )
    pump_ep.open_pairing_window()
    controller.pair_with_pump()
    if pump_ep.pairing_code is None or pump_ep.pairing_code != controller.pairing_code:
        raise RuntimeError("bench pairing did not reach matching numbers")
    pump_ep.confirm_pairing(True)
    controller.confirm_pairing(True)
    pairing_pump, pairing_controller = pump_ep.meter.total_mj, controller.meter.total_mj
    before = pump_ep.meter.total_mj
    if not controller.connect(PUMP):
        raise RuntimeError("bench session set-up failed")
    session_pump = pump_ep.meter.total_mj - before
    controller.open_pairing_window()
    cgm.pair_with_receiver()
    controller.confirm_pairing(True)
    cgm.confirm_pairing(True)
    adversary = Adversary(medium, position_m=(5, 5), range_m=30)

    def reconnect() -> None:
        controller.connect(PUMP)
        cgm.connect(CONTROLLER)

    junk = random.Random(seed + 1)

    def flood_frame(i: int) -> bytes:
        recorded = adversary.captures
        if i % 2 and recorded:
            return recorded[i // 2 % len(recorded)].data
        body = junk.randbytes(16)
        return SecureFrame(FrameKind.SESSION_INIT, PUMP, CONTROLLER, body).encode()

    rig = _Rig(
        clock,
        medium,
        log,
        pump,
        pump_ep.meter,
        controller,
        cgm,
        adversary,
        reconnect,
        flood_frame,
    )
    return rig, pairing_pump, pairing_controller, session_pump


def _use(rig: _Rig, start_ms: int, end_ms: int) -> None:
    """Normal use from ``start_ms`` to ``end_ms``, one AID cycle every 5 minutes."""
    t = start_ms
    rate = 0
    while t < end_ms:
        rig.medium.settle(until_us=t * 1000)
        rig.clock.advance_to(t)
        minute_of_day = (t // MS_PER_MINUTE) % 1440
        if minute_of_day == 0:
            rig.reconnect()
        rig.cgm.report(CgmReading(t, 110.0 + (t // _CYCLE_MS) % 40, t // _CYCLE_MS))
        rate = (rate + 1) % 4
        rig.command(
            SetTempBasal(
                30,
                Decimal("0.6") + Decimal(rate) / 10,
                None,
                CommandSource.AUTOMATED,
                rig.next_id(),
            )
        )
        rig.controller.read_status()
        if any(m <= minute_of_day < m + 5 for m in _MEALS_MIN):
            rig.command(Bolus(Decimal("1.5"), CommandSource.REMOTE, rig.next_id()))
        t += _CYCLE_MS
    rig.medium.settle(until_us=end_ms * 1000)
    rig.clock.advance_to(end_ms)


def _figures(
    profile: LinkProfile,
    rig: _Rig,
    hours: int,
    flood_rate: int,
    battery_mah: float,
    pump_ma: float,
) -> ProfileFigures:
    day = 24 * MS_PER_HOUR
    start = rig.clock.now_ms() // day * day + day
    rig.clock.advance_to(start)
    listen = rig.pump_meter.listen_ma()
    charge0, wakes0 = rig.pump_meter.total_uc, rig.pump_meter.wakes
    _use(rig, start, start + hours * MS_PER_HOUR)
    normal_ma = (rig.pump_meter.total_uc - charge0) / (hours * MS_PER_HOUR) + listen
    sent, answered = rig.sent, rig.answered
    flood_start = rig.clock.now_ms()
    charge1, wakes1 = rig.pump_meter.total_uc, rig.pump_meter.wakes
    frames = flood_rate * 3600
    rig.adversary.record = False
    rig.adversary.flood(
        (rig.flood_frame(i) for i in range(frames)),
        interval_us=1_000_000 // flood_rate,
        start_us=flood_start * 1000 + 1,
    )
    _use(rig, flood_start, flood_start + MS_PER_HOUR)
    flood_ma = (rig.pump_meter.total_uc - charge1) / MS_PER_HOUR + listen

    def days(link_ma: float) -> float:
        return battery_mah / (pump_ma + link_ma) / 24

    return ProfileFigures(
        profile,
        normal_ma,
        flood_ma,
        days(normal_ma),
        days(flood_ma),
        frames,
        (wakes1 - wakes0) / hours,
        rig.pump_meter.wakes - wakes1,
        sent,
        answered,
        rig.sent - sent,
        rig.answered - answered,
        len(rig.log),
    )


def measure_link(
    *,
    hours: int = 24,
    flood_rate_per_s: int = 20,
    seed: int = 1,
    energy: EnergyModel = NRF52_CLASS,
    policy: LinkPolicy | None = None,
) -> LinkBench:
    """Every figure ``pumpguard bench link`` prints, from runs in virtual time."""
    if hours < 1 or flood_rate_per_s < 1:
        raise ValueError("hours and flood rate must be at least 1")
    model = InsulinPump(VirtualClock(0), BasalProfile.flat("0.8")).model
    battery = float(model.battery_capacity_mah)
    pump_ma = float(model.delivering_draw_ma)
    start = 0
    legacy = _figures(
        LinkProfile.LEGACY,
        _legacy_rig(seed, energy, start),
        hours,
        flood_rate_per_s,
        battery,
        pump_ma,
    )
    rig, pairing_pump, pairing_controller, session_pump = _secure_rig(
        seed, energy, start, policy or LinkPolicy()
    )
    secure = _figures(LinkProfile.SECURE, rig, hours, flood_rate_per_s, battery, pump_ma)
    overheads = frame_overheads()
    return LinkBench(
        max(overheads.values()),
        overheads,
        pairing_pump,
        pairing_controller,
        session_pump,
        legacy,
        secure,
        flood_rate_per_s,
        hours,
        energy.name,
        battery,
        pump_ma,
    )
