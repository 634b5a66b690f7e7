"""What every endpoint shares: a place on the medium, an energy meter, and security events."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from pumpguard.devices.insulin import Command, CommandResult, IdsOpcode, IdsResponseCode
from pumpguard.link.codes import LinkEventCode, Role
from pumpguard.link.energy import NRF52_CLASS, EnergyMeter, EnergyModel
from pumpguard.link.frames import ADDRESS_BYTES, address_text
from pumpguard.link.medium import PlacedNode, RadioMedium
from pumpguard.security_events import Component, SecurityEvent, SecurityEventSink, Severity

__all__ = ["HandledCommand", "LinkReply", "RateLimiter"]

_SEVERITY: dict[LinkEventCode, Severity] = {
    LinkEventCode.FRAME_MALFORMED: Severity.MEDIUM,
    LinkEventCode.FRAME_CRC: Severity.LOW,
    LinkEventCode.FRAME_WRONG_PROFILE: Severity.HIGH,
    LinkEventCode.REFLECTION: Severity.HIGH,
    LinkEventCode.BAD_MAC: Severity.HIGH,
    LinkEventCode.UNKNOWN_SENDER: Severity.MEDIUM,
    LinkEventCode.NO_SESSION: Severity.MEDIUM,
    LinkEventCode.REPLAY: Severity.HIGH,
    LinkEventCode.COUNTER_JUMP: Severity.HIGH,
    LinkEventCode.ROLE_DENIED: Severity.HIGH,
    LinkEventCode.RATE_LIMITED: Severity.MEDIUM,
    LinkEventCode.E2E_CRC: Severity.HIGH,
    LinkEventCode.E2E_COUNTER: Severity.HIGH,
    LinkEventCode.PDU_INVALID: Severity.MEDIUM,
    LinkEventCode.PAIRING_OUTSIDE_WINDOW: Severity.MEDIUM,
    LinkEventCode.PAIRING_UNSOLICITED: Severity.MEDIUM,
    LinkEventCode.PAIRING_FAILED: Severity.HIGH,
    LinkEventCode.PAIRING_REJECTED: Severity.HIGH,
    LinkEventCode.PAIRING_COMPLETED: Severity.INFORMATIONAL,
    LinkEventCode.SESSION_BAD_MAC: Severity.HIGH,
    LinkEventCode.WAKEUP_BUDGET_EXHAUSTED: Severity.HIGH,
    LinkEventCode.LINK_LOST: Severity.MEDIUM,
}


@dataclass(frozen=True, slots=True)
class LinkReply:
    """The pump's answer to a command, as it came back over the radio."""

    request_opcode: IdsOpcode
    code: IdsResponseCode
    bolus_id: int | None = None
    command_id: str | None = None

    @property
    def accepted(self) -> bool:
        return self.code is IdsResponseCode.SUCCESS


@dataclass(frozen=True, slots=True)
class HandledCommand:
    """A command a pump endpoint handed to the firmware, and what the firmware answered.

    The radio cannot tell who really sent a frame (that is the point of the legacy attacks), so
    whoever evaluates an attack compares this record with what the real controller sent.
    """

    at_us: int
    peer: int
    command: Command
    result: CommandResult


class RateLimiter:
    """A token bucket: ``capacity`` events at once, one more every ``refill_ms``."""

    def __init__(self, capacity: int, refill_ms: int) -> None:
        if capacity < 1 or refill_ms < 1:
            raise ValueError("a rate limit needs a capacity and a refill period of at least 1")
        self.capacity = capacity
        self.refill_ms = refill_ms
        self._tokens = float(capacity)
        self._at_ms: int | None = None

    def allow(self, now_ms: int) -> bool:
        if self._at_ms is not None and now_ms > self._at_ms:
            gained = (now_ms - self._at_ms) / self.refill_ms
            self._tokens = min(float(self.capacity), self._tokens + gained)
        self._at_ms = now_ms if self._at_ms is None else max(self._at_ms, now_ms)
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


class Endpoint(PlacedNode, ABC):
    """A device's radio: its place on the medium, its address, its meter, its event sink."""

    def __init__(
        self,
        medium: RadioMedium,
        *,
        name: str,
        address: int,
        role: Role,
        sink: SecurityEventSink,
        position_m: tuple[float, float] = (0.0, 0.0),
        range_m: float = 10.0,
        energy: EnergyModel = NRF52_CLASS,
        device_id: str | None = None,
    ) -> None:
        if not 0 <= address < (1 << (8 * ADDRESS_BYTES)) - 1:
            raise ValueError(f"an address is 3 bytes and not the broadcast address, got {address}")
        super().__init__(name, position_m, range_m)
        self.medium = medium
        self.address = address
        self.role = role
        self.sink = sink
        self.meter = EnergyMeter(energy)
        self.device_id = device_id or name
        medium.attach(self)

    @abstractmethod
    def on_frame(self, data: bytes, at_us: int) -> None:
        """Handle one frame the medium delivered to this node at ``at_us``."""

    def _now_us(self) -> int:
        return self.medium.now_us

    def _emit(
        self,
        code: LinkEventCode,
        message: str,
        at_us: int,
        peer: int | None = None,
        **attributes: str,
    ) -> None:
        self.sink.emit(
            SecurityEvent(
                time_ms=at_us // 1000,
                component=Component.LINK,
                code=code,
                severity=_SEVERITY[code],
                message=message,
                device_id=self.device_id,
                peer=None if peer is None else address_text(peer),
                attributes=attributes,
            )
        )

    def _send(self, frame: bytes, at_us: int | None = None) -> None:
        self.meter.transmit(len(frame))
        self.medium.transmit(self, frame, at_us=at_us)

    def _dst(self, data: bytes) -> int | None:
        """The destination address as the radio's address match sees it, if there is one."""
        if len(data) < 1 + ADDRESS_BYTES:
            return None
        return int.from_bytes(data[1 : 1 + ADDRESS_BYTES], "big")
