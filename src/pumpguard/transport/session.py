"""The interface both transports offer: an MQTT 5 client over mutual TLS and the in-memory bus.

Code above the transport (the server's ingest, a simulated pump, the bench) talks to a
``Session`` and cannot tell which one it has, so the same device and server code runs over
real sockets in real time and over the bus in virtual time.

A message handler returns the reason code its PUBACK carries. Both brokers forward that code
to the publisher: a QoS 1 publish is acknowledged as delivered only once every subscriber has
taken it (``NO_MATCHING_SUBSCRIBERS`` if none did), so a device's outbox keeps a message until
the server really has it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pumpguard.pki import PeerIdentity
from pumpguard.transport.codes import QoS, ReasonCode

__all__ = ["ConnectRefusedError", "Delivery", "MessageHandler", "NotConnectedError", "Session"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message handed to a subscriber."""

    topic: str
    payload: bytes
    qos: QoS


MessageHandler = Callable[[Delivery], Awaitable[ReasonCode]]


class NotConnectedError(ConnectionError):
    """The session is closed (or was never opened): nothing was sent."""


class ConnectRefusedError(ConnectionError):
    """The broker answered CONNECT with a failure reason code."""

    def __init__(self, reason: ReasonCode, explanation: str | None) -> None:
        text = f"connection refused with 0x{reason:02X} ({reason.name})"
        super().__init__(text + (f": {explanation}" if explanation else ""))
        self.reason = reason


@runtime_checkable
class Session(Protocol):
    @property
    def identity(self) -> PeerIdentity: ...

    @property
    def connected(self) -> bool: ...

    async def publish(
        self, topic: str, payload: bytes, qos: QoS = QoS.AT_LEAST_ONCE
    ) -> ReasonCode: ...

    async def subscribe(self, topic_filter: str, qos: QoS = QoS.AT_LEAST_ONCE) -> ReasonCode: ...

    async def unsubscribe(self, topic_filter: str) -> ReasonCode: ...

    async def close(self) -> None: ...

    async def wait_closed(self) -> ReasonCode | None:
        """Return once the session has ended: the broker's DISCONNECT reason, if any."""
        ...
