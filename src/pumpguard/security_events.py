"""One shape for every security-relevant thing any component notices.

Links, transports, the server, updates, interop and device firmware all report through a
``SecurityEventSink``; monitoring (and the attack catalogue's ``logged`` verdict) reads them back.
The module sits at the bottom of the layer stack so that firmware and protocols can emit events
without importing anything above them. Each package names its own event codes as a ``StrEnum``
(``link.replay``, ``transport.tls.no_client_cert``, ...): a code is a stable, dotted string that
detection rules match on, so a code once published is never renamed.

Severities follow OCSF ``severity_id`` (1 informational .. 5 critical) so that the exporters of
the monitoring layer map them without a table.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Protocol, runtime_checkable

__all__ = [
    "Component",
    "SecurityEvent",
    "SecurityEventLog",
    "SecurityEventSink",
    "Severity",
]


class Severity(IntEnum):
    """OCSF ``severity_id`` values."""

    INFORMATIONAL = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5


class Component(StrEnum):
    """Where in the ecosystem the event was observed."""

    LINK = "link"
    TRANSPORT = "transport"
    PKI = "pki"
    SERVER = "server"
    UPDATES = "updates"
    INTEROP = "interop"
    DEVICE = "device"


def _frozen(attributes: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(attributes))


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """A single observation, immutable once emitted.

    ``code`` is the dotted event code (a member of the emitting package's ``StrEnum``);
    ``device_id`` is the device that observed or suffered it, ``peer`` the other party as far as
    it is known (a radio address, a certificate subject, an IP address); ``message`` is one
    human-readable sentence; ``attributes`` holds the few extra facts a rule may match on.
    """

    time_ms: int
    component: Component
    code: str
    severity: Severity
    message: str
    device_id: str | None = None
    peer: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.time_ms < 0:
            raise ValueError("time_ms must not be negative")
        if not self.code or self.code != self.code.strip() or " " in self.code:
            raise ValueError(f"event code must be a dotted identifier, got {self.code!r}")
        object.__setattr__(self, "attributes", _frozen(self.attributes))


@runtime_checkable
class SecurityEventSink(Protocol):
    """Anything that accepts security events: an in-memory log, a monitor, an exporter."""

    def emit(self, event: SecurityEvent) -> None: ...


class SecurityEventLog:
    """An append-only, in-memory sink: what the lab, the tests and a single device keep."""

    def __init__(self) -> None:
        self._events: list[SecurityEvent] = []

    def emit(self, event: SecurityEvent) -> None:
        self._events.append(event)

    def __iter__(self) -> Iterator[SecurityEvent]:
        return iter(tuple(self._events))

    def __len__(self) -> int:
        return len(self._events)

    def with_code(self, code: str) -> tuple[SecurityEvent, ...]:
        """Every event carrying ``code`` (a ``StrEnum`` member compares equal to its value)."""
        return tuple(e for e in self._events if e.code == code)

    def codes(self) -> frozenset[str]:
        return frozenset(e.code for e in self._events)
