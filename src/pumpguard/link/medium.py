"""A shared radio medium in virtual time: broadcast, range, loss, collisions, jamming.

Every node in range of a sender hears every frame (address filtering is the receiver's job, as
in a real radio), so an adversary node sniffs by simply being there. Time on the medium is in
microseconds: a frame occupies the air for its airtime (BLE 1M PHY: 8 us per byte, plus
preamble, access address, PDU header and CRC), starting no earlier than the ``Clock`` and, for
honest senders, after any frame the sender can hear is over (carrier sense). A frame is lost at
a receiver when another frame it can hear overlaps it (a collision), when a jammer it can hear
is on during it, or by the seeded random loss. Answers go out after the BLE inter-frame space.

An *interceptor* (an adversary between two parties, as link-layer MITM tools do by jamming the
original selectively and sending their own) takes a matching frame away from everyone else and
may put a replacement on the air.

Nothing here sleeps or spawns threads; ``settle`` delivers what is due, in time order.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pumpguard.clock import Clock

__all__ = [
    "IFS_US",
    "PASS",
    "PHY_OVERHEAD_BYTES",
    "US_PER_BYTE",
    "InterceptPass",
    "InterceptRule",
    "Jammer",
    "MediumStats",
    "PlacedNode",
    "RadioMedium",
    "RadioNode",
    "Transmission",
    "airtime_us",
]

US_PER_BYTE = 8
"""1 Mbit/s (BLE 1M PHY)."""
PHY_OVERHEAD_BYTES = 10
"""Preamble (1), access address (4), PDU header (2), CRC (3): BLE Core spec, Vol 6, Part B."""
IFS_US = 150
"""BLE inter-frame space T_IFS."""
_MAX_AIRTIME_US = 1_000
_DEFAULT_HORIZON_US = 10_000


def airtime_us(frame_bytes: int) -> int:
    return (frame_bytes + PHY_OVERHEAD_BYTES) * US_PER_BYTE


class RadioNode(Protocol):
    """Anything with an antenna: endpoints and adversaries."""

    @property
    def name(self) -> str: ...

    @property
    def position_m(self) -> tuple[float, float]: ...

    @property
    def range_m(self) -> float: ...

    def on_frame(self, data: bytes, at_us: int) -> None: ...


class PlacedNode:
    """Where a radio is and how far it reaches: what every node shares, endpoint or attacker."""

    def __init__(self, name: str, position_m: tuple[float, float], range_m: float) -> None:
        self._name = name
        self._position = position_m
        self._range = range_m

    @property
    def name(self) -> str:
        return self._name

    @property
    def position_m(self) -> tuple[float, float]:
        return self._position

    @property
    def range_m(self) -> float:
        return self._range

    def move_to(self, position_m: tuple[float, float]) -> None:
        self._position = position_m


@dataclass(frozen=True, slots=True)
class Transmission:
    tx_id: int
    sender: str
    data: bytes
    start_us: int
    end_us: int


@dataclass(frozen=True, slots=True)
class Jammer:
    """A node that keeps the channel busy ``on_ms`` of every ``period_ms`` in [start, end)."""

    node: RadioNode
    period_ms: int
    on_ms: int
    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.period_ms <= 0 or not 0 < self.on_ms <= self.period_ms:
            raise ValueError("a jammer needs 0 < on_ms <= period_ms")
        if self.end_ms < self.start_ms:
            raise ValueError("a jammer ends after it starts")

    def overlaps(self, start_us: int, end_us: int) -> bool:
        lo, hi = max(start_us, self.start_ms * 1000), min(end_us, self.end_ms * 1000)
        if lo >= hi:
            return False
        period, on, origin = self.period_ms * 1000, self.on_ms * 1000, self.start_ms * 1000
        k = (lo - origin) // period
        while origin + k * period < hi:
            if origin + k * period < hi and origin + k * period + on > lo:
                return True
            k += 1
        return False


class InterceptPass:
    """An interceptor's answer for frames it lets through untouched (use ``PASS``)."""


PASS = InterceptPass()

InterceptRule = Callable[[Transmission], "bytes | InterceptPass | None"]
"""What an interceptor does with a frame: ``PASS``, ``None`` (swallow it) or replacement bytes."""


@dataclass(slots=True)
class _Interception:
    node: RadioNode
    rule: InterceptRule


@dataclass(slots=True)
class MediumStats:
    transmitted: int = 0
    delivered: int = 0
    lost_random: int = 0
    lost_collision: int = 0
    lost_jammed: int = 0
    intercepted: int = 0


@dataclass(order=True, slots=True)
class _Queued:
    end_us: int
    tx_id: int
    tx: Transmission = field(compare=False)
    sender: RadioNode = field(compare=False)


class RadioMedium:
    """One radio channel shared by every attached node."""

    def __init__(self, clock: Clock, *, seed: int = 0, loss_rate: float = 0.0) -> None:
        if not 0.0 <= loss_rate < 1.0:
            raise ValueError("loss_rate is a probability below 1")
        self.clock = clock
        self.loss_rate = loss_rate
        self.stats = MediumStats()
        self._rng = random.Random(seed)
        self._nodes: list[RadioNode] = []
        self._queue: list[_Queued] = []
        self._timeline: list[tuple[int, int, Transmission, RadioNode]] = []
        self._jammers: list[Jammer] = []
        self._interceptions: list[_Interception] = []
        self._cursor_us = 0
        self._next_id = 1

    @property
    def nodes(self) -> tuple[RadioNode, ...]:
        return tuple(self._nodes)

    @property
    def now_us(self) -> int:
        return max(self.clock.now_ms() * 1000, self._cursor_us)

    def attach(self, node: RadioNode) -> None:
        if any(n.name == node.name for n in self._nodes):
            raise ValueError(f"a node named {node.name!r} is already on the medium")
        self._nodes.append(node)

    def detach(self, node: RadioNode) -> None:
        self._nodes = [n for n in self._nodes if n is not node]
        self._interceptions = [i for i in self._interceptions if i.node is not node]

    def add_jammer(self, jammer: Jammer) -> None:
        self._jammers.append(jammer)

    def intercept(self, node: RadioNode, rule: InterceptRule) -> None:
        """Let ``node`` take frames ``rule`` claims: ``PASS`` leaves a frame alone, ``None``
        swallows it, bytes replace it (sent by ``node``)."""
        self._interceptions.append(_Interception(node, rule))

    def stop_intercepting(self, node: RadioNode) -> None:
        self._interceptions = [i for i in self._interceptions if i.node is not node]

    @staticmethod
    def hears(sender: RadioNode, receiver: RadioNode) -> bool:
        (x1, y1), (x2, y2) = sender.position_m, receiver.position_m
        return math.hypot(x1 - x2, y1 - y2) <= sender.range_m

    def transmit(
        self,
        sender: RadioNode,
        data: bytes,
        *,
        at_us: int | None = None,
        carrier_sense: bool = True,
    ) -> Transmission:
        """Put ``data`` on the air from ``sender`` at ``at_us`` (default: now), deferring to
        frames the sender hears unless ``carrier_sense`` is off (jammers, some attackers)."""
        start = self.now_us if at_us is None else at_us
        duration = airtime_us(len(data))
        if carrier_sense:
            start = self._clear_channel(sender, start, duration)
        tx = Transmission(self._next_id, sender.name, bytes(data), start, start + duration)
        self._next_id += 1
        heapq.heappush(self._queue, _Queued(tx.end_us, tx.tx_id, tx, sender))
        bisect.insort(self._timeline, (tx.start_us, tx.tx_id, tx, sender))
        self.stats.transmitted += 1
        return tx

    def _clear_channel(self, sender: RadioNode, start: int, duration: int) -> int:
        moved = True
        while moved:
            moved = False
            for other_start, _, tx, node in self._overlapping(start, start + duration):
                if (node is sender or self.hears(node, sender)) and tx.end_us > start:
                    start = max(start, tx.end_us + IFS_US)
                    moved = other_start < start
        return start

    def _overlapping(self, start: int, end: int) -> list[tuple[int, int, Transmission, RadioNode]]:
        hi = bisect.bisect_left(self._timeline, (end, -1))
        found = []
        i = hi - 1
        while i >= 0 and self._timeline[i][0] > start - _MAX_AIRTIME_US:
            if self._timeline[i][2].end_us > start:
                found.append(self._timeline[i])
            i -= 1
        return found

    def pending(self) -> int:
        return len(self._queue)

    def settle(self, until_us: int | None = None, max_deliveries: int = 1_000_000) -> int:
        """Deliver every frame that ends by ``until_us`` (default: 10 ms after now), including
        the answers those frames provoke; returns how many frames went on the air and ended."""
        horizon = self.now_us + _DEFAULT_HORIZON_US if until_us is None else until_us
        done = 0
        while self._queue and self._queue[0].end_us <= horizon and done < max_deliveries:
            item = heapq.heappop(self._queue)
            self._cursor_us = max(self._cursor_us, item.end_us)
            self._deliver(item.tx, item.sender)
            done += 1
        self._forget_before(self._cursor_us - 2 * _MAX_AIRTIME_US)
        return done

    def _forget_before(self, time_us: int) -> None:
        keep = 0
        while keep < len(self._timeline) and self._timeline[keep][2].end_us < time_us:
            keep += 1
        if keep:
            del self._timeline[:keep]

    def _deliver(self, tx: Transmission, sender: RadioNode) -> None:
        for interception in list(self._interceptions):
            if interception.node is sender or not self.hears(sender, interception.node):
                continue
            verdict = interception.rule(tx)
            if isinstance(verdict, InterceptPass):
                continue
            self.stats.intercepted += 1
            interception.node.on_frame(tx.data, tx.end_us)
            if verdict is not None:
                self.transmit(interception.node, verdict, at_us=tx.end_us + IFS_US)
            return
        for node in list(self._nodes):
            if node is sender or not self.hears(sender, node):
                continue
            if any(
                self.hears(j.node, node) and j.overlaps(tx.start_us, tx.end_us)
                for j in self._jammers
            ):
                self.stats.lost_jammed += 1
                continue
            if self._collides(tx, sender, node):
                self.stats.lost_collision += 1
                continue
            if self.loss_rate and self._rng.random() < self.loss_rate:
                self.stats.lost_random += 1
                continue
            self.stats.delivered += 1
            node.on_frame(tx.data, tx.end_us)

    def _collides(self, tx: Transmission, sender: RadioNode, receiver: RadioNode) -> bool:
        for _, tx_id, _, other in self._overlapping(tx.start_us, tx.end_us):
            if tx_id == tx.tx_id or other is sender:
                continue
            if other is receiver or self.hears(other, receiver):
                return True
        return False
