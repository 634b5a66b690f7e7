"""Versioned message schemas for the device <-> server transport, with strict decoding.

Every message is a JSON object with ``schema_version`` and ``kind``. Every message a device
sends carries its ``device_id``, a per-device ``seq`` that only ever increases (the outbox
assigns it and it survives reconnects) and ``sent_at_ms``; the server de-duplicates on
(device_id, seq), because at-least-once delivery means a message can arrive twice.

Decoding refuses, with a specific ``MessageError``, anything that is not exactly one of these
shapes: payloads over ``MAX_PAYLOAD_BYTES``, invalid UTF-8 or JSON, duplicate keys, an unknown
schema version or kind, unknown or missing fields, wrong types, and numbers given as JSON
floats where an exact decimal string is expected (a rate of 0.1 must stay 0.1).
"""

from __future__ import annotations

import json
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from pumpguard.devices.infusion import EventKind, PumpState
from pumpguard.security_events import Component, Severity
from pumpguard.transport.topics import Channel

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MAX_SEQ",
    "SCHEMA_VERSION",
    "AckOutcome",
    "CommandAck",
    "CommandAction",
    "CommandMessage",
    "DeviceEvent",
    "DeviceMessage",
    "Message",
    "MessageError",
    "MessageErrorCode",
    "MessageKind",
    "ProgrammeSummary",
    "SecurityReport",
    "StatusMessage",
    "channel_for",
    "decode_message",
    "encode_message",
]

SCHEMA_VERSION = 1
MAX_PAYLOAD_BYTES = 16_384
MAX_SEQ = 2**63 - 1  # fits a signed 64-bit database column

_IDENT_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$"
Ident = Annotated[str, StringConstraints(pattern=_IDENT_PATTERN)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Version = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Millis = Annotated[int, Field(ge=0, le=2**63 - 1)]


def _exact_decimal(value: object) -> object:
    if isinstance(value, float):
        raise ValueError('decimal quantities are sent as strings, e.g. "12.5", not floats')
    if isinstance(value, str):
        try:
            return Decimal(value)
        except ArithmeticError:
            raise ValueError(f"{value[:20]!r} is not a decimal number") from None
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


ExactDecimal = Annotated[
    Decimal,
    BeforeValidator(_exact_decimal),
    Field(ge=0, max_digits=12, decimal_places=4, allow_inf_nan=False),
]


class MessageKind(StrEnum):
    STATUS = "status"
    EVENT = "event"
    COMMAND = "command"
    COMMAND_ACK = "command-ack"
    SECURITY_EVENT = "security-event"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class _DeviceMessage(_Model):
    schema_version: Literal[1] = 1
    device_id: Ident
    seq: Annotated[int, Field(ge=1, le=MAX_SEQ)]
    sent_at_ms: Millis


class ProgrammeSummary(_Model):
    """What is running now, as the pump's screen shows it."""

    channel: ShortText | None = None
    drug: ShortText | None = None
    rate_ml_h: ExactDecimal
    volume_infused_ml: ExactDecimal
    vtbi_remaining_ml: ExactDecimal
    library_version: Version | None = None
    """The drug library version this programme was checked against (it keeps it until it ends)."""


class StatusMessage(_DeviceMessage):
    """Periodic telemetry (every 10 s by default) on the ``telemetry`` channel."""

    kind: Literal[MessageKind.STATUS] = MessageKind.STATUS
    state: PumpState
    care_area: ShortText | None = None
    programme: ProgrammeSummary | None = None
    battery_percent: Annotated[int, Field(ge=0, le=100)]
    on_mains: bool
    active_alarms: Annotated[tuple[ShortText, ...], Field(max_length=32)] = ()
    firmware_version: Version
    library_version: Version | None = None


class DeviceEvent(_DeviceMessage):
    """One entry of the pump's event log (``log_seq`` is the log's own gapless number)."""

    kind: Literal[MessageKind.EVENT] = MessageKind.EVENT
    event: EventKind
    log_seq: Annotated[int, Field(ge=1)]
    occurred_at_ms: Millis
    summary: ShortText
    attributes: Annotated[dict[Ident, ShortText], Field(max_length=32)] = Field(
        default_factory=dict
    )


EventCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_-]+){1,5}$")]


class SecurityReport(_DeviceMessage):
    """A security event the device observed itself (an update it refused, a TLS failure),
    on the ``events`` channel: the server re-emits it with the publisher's certificate id."""

    kind: Literal[MessageKind.SECURITY_EVENT] = MessageKind.SECURITY_EVENT
    occurred_at_ms: Millis
    component: Component
    code: Annotated[EventCode, StringConstraints(max_length=64)]
    severity: Severity
    message: ShortText
    attributes: Annotated[dict[Ident, ShortText], Field(max_length=32)] = Field(
        default_factory=dict
    )

    @model_validator(mode="after")
    def _observed_on_a_device(self) -> SecurityReport:
        """A pump reports what it observed; the server's and the EHR gateway's events are the
        server's to emit. Without this, a pump could raise login-failure or order alerts in the
        server's name (a false-alarm flood, or cover for a real attack)."""
        if self.component in _SERVER_SIDE or self.code.split(".", 1)[0] in _SERVER_SIDE:
            raise ValueError(
                f"a device cannot report a {self.component.value} event ({self.code}): only "
                f"{', '.join(sorted(c.value for c in Component if c not in _SERVER_SIDE))} ones"
            )
        return self


_SERVER_SIDE = frozenset({Component.SERVER, Component.INTEROP})


class AckOutcome(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPIRED = "expired"
    DUPLICATE = "duplicate"


class CommandAck(_DeviceMessage):
    """The device's answer to one command; ``err_code`` is the IHE PCD ERR-5 code if any."""

    kind: Literal[MessageKind.COMMAND_ACK] = MessageKind.COMMAND_ACK
    command_id: Ident
    outcome: AckOutcome
    reason: ShortText | None = None
    err_code: Annotated[int, Field(ge=0, le=99_999)] | None = None


class CommandAction(StrEnum):
    REQUEST_STATUS = "request-status"
    PREFILL_ORDER = "prefill-order"
    PAUSE = "pause"
    RESUME = "resume"
    INSTALL_LIBRARY = "install-library"
    INSTALL_FIRMWARE = "install-firmware"


class CommandMessage(_Model):
    """Server -> device. A device executes a ``command_id`` at most once and acks every copy."""

    schema_version: Literal[1] = 1
    kind: Literal[MessageKind.COMMAND] = MessageKind.COMMAND
    device_id: Ident
    command_id: Ident
    action: CommandAction
    parameters: Annotated[dict[Ident, ShortText], Field(max_length=64)] = Field(
        default_factory=dict
    )
    sent_at_ms: Millis
    expires_at_ms: Millis | None = None


DeviceMessage = StatusMessage | DeviceEvent | CommandAck | SecurityReport
Message = StatusMessage | DeviceEvent | CommandAck | SecurityReport | CommandMessage

_BY_KIND: dict[str, type[BaseModel]] = {
    MessageKind.STATUS: StatusMessage,
    MessageKind.EVENT: DeviceEvent,
    MessageKind.COMMAND_ACK: CommandAck,
    MessageKind.COMMAND: CommandMessage,
    MessageKind.SECURITY_EVENT: SecurityReport,
}
_CHANNELS: dict[MessageKind, Channel] = {
    MessageKind.STATUS: Channel.TELEMETRY,
    MessageKind.EVENT: Channel.EVENTS,
    MessageKind.COMMAND_ACK: Channel.ACKS,
    MessageKind.COMMAND: Channel.COMMANDS,
    MessageKind.SECURITY_EVENT: Channel.EVENTS,
}
_ADAPTERS: dict[str, TypeAdapter[Any]] = {k: TypeAdapter(m) for k, m in _BY_KIND.items()}


def channel_for(kind: MessageKind) -> Channel:
    """The one channel each kind of message travels on."""
    return _CHANNELS[kind]


class MessageErrorCode(StrEnum):
    TOO_LARGE = "too-large"
    NOT_JSON = "not-json"
    NOT_AN_OBJECT = "not-an-object"
    DUPLICATE_KEY = "duplicate-key"
    UNSUPPORTED_VERSION = "unsupported-version"
    UNKNOWN_KIND = "unknown-kind"
    INVALID_FIELDS = "invalid-fields"


class MessageError(ValueError):
    """A payload that is not a valid pumpguard message; ``str()`` says exactly why."""

    def __init__(self, code: MessageErrorCode, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise MessageError(MessageErrorCode.DUPLICATE_KEY, f"key {key!r} appears twice")
        seen[key] = value
    return seen


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "message"
        parts.append(f"{where}: {error['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def decode_message(payload: bytes) -> Message:
    """Parse one message, or raise ``MessageError`` naming what is wrong with it."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise MessageError(
            MessageErrorCode.TOO_LARGE,
            f"{len(payload)} bytes, at most {MAX_PAYLOAD_BYTES} are accepted",
        )
    try:
        raw = json.loads(payload.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise MessageError(MessageErrorCode.NOT_JSON, "payload is not UTF-8") from None
    except RecursionError:
        raise MessageError(MessageErrorCode.NOT_JSON, "payload nests too deeply") from None
    except json.JSONDecodeError as exc:
        raise MessageError(MessageErrorCode.NOT_JSON, f"invalid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MessageError(MessageErrorCode.NOT_AN_OBJECT, "a message is a JSON object")
    version = raw.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise MessageError(
            MessageErrorCode.UNSUPPORTED_VERSION,
            f"schema_version {version!r} is not supported (this build speaks {SCHEMA_VERSION})",
        )
    kind = raw.get("kind")
    adapter = _ADAPTERS.get(kind) if isinstance(kind, str) else None
    if adapter is None:
        known = ", ".join(sorted(_BY_KIND))
        raise MessageError(MessageErrorCode.UNKNOWN_KIND, f"kind {kind!r} is not one of {known}")
    try:
        message: Message = adapter.validate_json(payload, strict=True)
    except ValidationError as exc:
        raise MessageError(MessageErrorCode.INVALID_FIELDS, _describe(exc)) from None
    return message


def encode_message(message: Message) -> bytes:
    return message.model_dump_json(exclude_none=True).encode("utf-8")
