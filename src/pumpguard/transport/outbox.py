"""Device-side outbox and server-side de-duplication: at-least-once without loss or doubles.

The outbox stamps every device message with the next sequence number and keeps it until the
broker acknowledges it with SUCCESS, which (both pumpguard brokers deliver end to end) means
the server took it. Offline, messages accumulate; on reconnect ``flush`` resends them in order.
A PUBACK lost with the connection makes the device send the same message again, so the server
can see a message twice: ``Deduplicator`` drops the second copy. Because ``flush`` sends one
message at a time and in sequence order, the server never sees sequence n+1 before n has been
accepted, so "at or below the highest sequence accepted" identifies every duplicate with one
integer per device.

The counter must survive a device restart (``next_seq`` is what the firmware persists); a
device that restarted from 1 would have its new messages dropped as duplicates.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, TypeVar

from pumpguard.clock import Clock
from pumpguard.transport.codes import QoS, ReasonCode
from pumpguard.transport.messages import (
    CommandAck,
    DeviceEvent,
    DeviceMessage,
    SecurityReport,
    StatusMessage,
    channel_for,
    encode_message,
)
from pumpguard.transport.session import NotConnectedError, Session
from pumpguard.transport.topics import device_topic

__all__ = ["Deduplicator", "FlushResult", "Outbox", "OutboxFullError", "Refused"]

M = TypeVar("M", StatusMessage, DeviceEvent, CommandAck, SecurityReport)

# Reason codes that will not change by sending the same bytes again: the message is set
# aside (kept, visible) instead of blocking everything queued behind it.
_PERMANENT = frozenset(
    {
        ReasonCode.NOT_AUTHORIZED,
        ReasonCode.PAYLOAD_FORMAT_INVALID,
        ReasonCode.TOPIC_NAME_INVALID,
    }
)


class OutboxFullError(RuntimeError):
    """The outbox holds ``capacity`` messages and none of them is a superseded status."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A message the broker refused for good, with the reason; kept for the device log."""

    message: DeviceMessage
    reason: ReasonCode


@dataclass(frozen=True, slots=True)
class FlushResult:
    delivered: int
    pending: int
    stopped_by: ReasonCode | None


class Outbox:
    """Buffers one device's messages until the server has them; see the module docstring."""

    def __init__(
        self, device_id: str, clock: Clock, *, next_seq: int = 1, capacity: int = 10_000
    ) -> None:
        if next_seq < 1:
            raise ValueError("sequence numbers start at 1")
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._device_id = device_id
        self._clock = clock
        self._next_seq = next_seq
        self._capacity = capacity
        self._pending: deque[DeviceMessage] = deque()
        self._refused: list[Refused] = []
        self._in_flight: DeviceMessage | None = None
        self.dropped_statuses = 0

    @property
    def device_id(self) -> str:
        return self._device_id

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def pending(self) -> tuple[DeviceMessage, ...]:
        return tuple(self._pending)

    @property
    def refused(self) -> tuple[Refused, ...]:
        return tuple(self._refused)

    def put(self, kind: type[M], **fields: Any) -> M:
        """Build a ``kind`` message stamped with this device's id, next seq and the time."""
        if len(self._pending) >= self._capacity:
            self._make_room()
        message = kind(
            device_id=self._device_id,
            seq=self._next_seq,
            sent_at_ms=self._clock.now_ms(),
            **fields,
        )
        self._next_seq += 1
        self._pending.append(message)
        return message

    def _make_room(self) -> None:
        """A newer status supersedes an older one; events and acks are never dropped."""
        for message in self._pending:
            if isinstance(message, StatusMessage) and message is not self._in_flight:
                self._pending.remove(message)
                self.dropped_statuses += 1
                return
        raise OutboxFullError(
            f"outbox of {self._device_id} holds {self._capacity} undelivered events"
        )

    async def flush(self, session: Session) -> FlushResult:
        """Send pending messages in order until one is not acknowledged or all are."""
        delivered = 0
        stopped_by: ReasonCode | None = None
        while self._pending and session.connected:
            message = self._pending[0]
            topic = device_topic(self._device_id, channel_for(message.kind))
            self._in_flight = message  # not dropped to make room while it is on the wire
            try:
                reason = await session.publish(topic, encode_message(message), QoS.AT_LEAST_ONCE)
            except NotConnectedError:
                break
            finally:
                self._in_flight = None
            if reason is ReasonCode.SUCCESS:
                self._pending.popleft()
                delivered += 1
            elif reason in _PERMANENT:
                self._refused.append(Refused(self._pending.popleft(), reason))
            else:
                stopped_by = reason
                break
        return FlushResult(delivered, len(self._pending), stopped_by)


class Deduplicator:
    """Server side: accepts each (device, seq) once, given in-order sending per device."""

    def __init__(self) -> None:
        self._highest: dict[str, int] = {}
        self.duplicates = 0

    def accept(self, device_id: str, seq: int) -> bool:
        """True the first time a message is seen, False for a resent copy."""
        if seq <= self._highest.get(device_id, 0):
            self.duplicates += 1
            return False
        self._highest[device_id] = seq
        return True

    def highest(self, device_id: str) -> int:
        return self._highest.get(device_id, 0)
