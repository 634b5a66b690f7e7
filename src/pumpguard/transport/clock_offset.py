"""How far each device's clock is from the server's, learnt from the messages it sends.

A command carries its expiry as an instant, and the device compares it with its own clock: a
pump whose clock runs an hour ahead would find every command expired, and one an hour behind
would accept commands an hour stale. The server therefore writes a command's instants in the
device's time. Each device message stamps ``sent_at_ms`` with the device clock; the server's
clock at receipt minus that stamp is the offset plus the time the message spent on its way. The
smallest of the recent samples is the best estimate (the least delayed message), and a
message that waited in an outbox while the pump was offline only adds a large sample that the
minimum ignores. Samples older than ``window_ms`` are dropped, so a device whose clock was
corrected is followed within that window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["ClockOffsets", "in_device_time"]

_WINDOW_MS = 15 * 60 * 1000
_SAMPLES = 64
_DEVICES = 100_000


def in_device_time(server_ms: int, offset_ms: int) -> int:
    """A server instant on the clock of a device ``offset_ms`` behind the server."""
    return max(0, server_ms - offset_ms)


@dataclass(frozen=True, slots=True)
class _Sample:
    at_ms: int
    offset_ms: int


class ClockOffsets:
    """Per device: server time minus device time, estimated from recent messages."""

    def __init__(self, window_ms: int = _WINDOW_MS, samples: int = _SAMPLES) -> None:
        if window_ms <= 0 or samples < 1:
            raise ValueError("window_ms and samples must be positive")
        self._window_ms = window_ms
        self._samples = samples
        self._by_device: dict[str, deque[_Sample]] = {}

    def observe(self, device_id: str, sent_at_ms: int, received_at_ms: int) -> None:
        """A message stamped ``sent_at_ms`` by ``device_id`` arrived at ``received_at_ms``."""
        found = self._by_device.get(device_id)
        if found is None:
            if len(self._by_device) >= _DEVICES:
                self._by_device.pop(next(iter(self._by_device)))
            found = self._by_device[device_id] = deque(maxlen=self._samples)
        found.append(_Sample(received_at_ms, received_at_ms - sent_at_ms))

    def offset_ms(self, device_id: str, now_ms: int) -> int | None:
        """Server time minus ``device_id``'s time, or None without a recent message."""
        found = self._by_device.get(device_id)
        if not found:
            return None
        while found and now_ms - found[0].at_ms > self._window_ms:
            found.popleft()
        if not found:
            return None
        return min(sample.offset_ms for sample in found)

    def to_device(self, device_id: str, server_ms: int, now_ms: int) -> int:
        """``server_ms`` on ``device_id``'s clock (unchanged when its offset is unknown)."""
        offset = self.offset_ms(device_id, now_ms)
        return server_ms if offset is None else in_device_time(server_ms, offset)
