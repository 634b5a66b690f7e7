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

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Component",
    "JsonLinesEventFile",
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


class JsonLinesEventFile:
    """Appends events to a JSON-lines journal and reads them back.

    Short-lived processes (the CLI) and the server write the same journal
    (``DATA_DIR/security-events.jsonl``), so a refusal outlives the process that saw it until the
    monitor collects it. One record layout, defined here, for every writer and reader.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def emit(self, event: SecurityEvent) -> None:
        record = {
            "time_ms": event.time_ms,
            "component": str(event.component),
            "code": str(event.code),
            "severity": int(event.severity),
            "message": event.message,
            "device_id": event.device_id,
            "peer": event.peer,
            "attributes": dict(event.attributes),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")

    def read(self) -> list[SecurityEvent]:
        """Every event in the journal, oldest first; a damaged line raises ``ValueError``."""
        if not self.path.exists():
            return []
        events = []
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    events.append(_from_record(json.loads(line), self.path, number))
        return events


def _from_record(record: Any, path: Path, line: int) -> SecurityEvent:
    try:
        return SecurityEvent(
            time_ms=int(record["time_ms"]),
            component=Component(record["component"]),
            code=str(record["code"]),
            severity=Severity(int(record["severity"])),
            message=str(record["message"]),
            device_id=record.get("device_id"),
            peer=record.get("peer"),
            attributes={str(k): str(v) for k, v in dict(record.get("attributes") or {}).items()},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}:{line}: not a security event record ({exc})") from None
