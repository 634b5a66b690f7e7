"""From the transport's device messages to the server's ``EventRecord``s.

The transport's schemas are richer than the ``status`` record the server keeps as a pump's
current status (care area, alarms, mains power), so a status message is stored twice over: its
fields the status view needs, and nothing it would refuse. Device events keep their pump log
kind (``delivery-start``, ``alarm-on``...) as the record kind, so the API filters on it directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pumpguard.server.ingest import STATUS_KIND, EventRecord
from pumpguard.transport import (
    CommandAck,
    DeviceEvent,
    DeviceMessage,
    SecurityReport,
    StatusMessage,
)

__all__ = ["COMMAND_ACK_KIND", "SECURITY_EVENT_KIND", "records_from_messages", "to_record"]

COMMAND_ACK_KIND = "command-ack"
SECURITY_EVENT_KIND = "security-event"


def _programme(message: StatusMessage) -> str | None:
    programme = message.programme
    if programme is None:
        return None
    what = programme.drug or programme.channel or "infusion"
    text = (
        f"{what}: {programme.rate_ml_h} mL/h, {programme.volume_infused_ml} mL infused, "
        f"{programme.vtbi_remaining_ml} mL to go"
    )
    if programme.library_version is not None:
        text += f", checked against library v{programme.library_version}"
    return text[:255]


def to_record(message: DeviceMessage) -> EventRecord:
    body: dict[str, Any]
    if isinstance(message, StatusMessage):
        body = {"state": message.state.value, "battery_pct": message.battery_percent}
        body["firmware_version"] = message.firmware_version
        programme = _programme(message)
        if programme is not None:
            body["programme"] = programme
        if message.library_version is not None:
            body["library_version"] = message.library_version
        kind = STATUS_KIND
    elif isinstance(message, DeviceEvent):
        body = {
            "log_seq": message.log_seq,
            "occurred_at_ms": message.occurred_at_ms,
            "summary": message.summary,
            "attributes": dict(message.attributes),
        }
        kind = message.event.value
    elif isinstance(message, CommandAck):
        body = {"command_id": message.command_id, "outcome": message.outcome.value}
        if message.reason is not None:
            body["reason"] = message.reason
        if message.err_code is not None:
            body["err_code"] = message.err_code
        kind = COMMAND_ACK_KIND
    elif isinstance(message, SecurityReport):
        body = {
            "occurred_at_ms": message.occurred_at_ms,
            "component": message.component.value,
            "code": message.code,
            "severity": int(message.severity),
            "message": message.message,
            "attributes": dict(message.attributes),
        }
        kind = SECURITY_EVENT_KIND
    else:  # pragma: no cover - DeviceMessage is a closed union
        raise TypeError(f"not a device message: {type(message).__name__}")
    return EventRecord(message.device_id, message.seq, message.sent_at_ms, kind, body)


def records_from_messages(messages: Sequence[DeviceMessage]) -> list[EventRecord]:
    return [to_record(message) for message in messages]
