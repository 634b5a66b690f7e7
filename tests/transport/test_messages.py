"""Versioned message schemas: round trips and specific errors for every kind of bad payload."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pumpguard.devices.infusion import EventKind, PumpState
from pumpguard.transport import (
    MAX_PAYLOAD_BYTES,
    AckOutcome,
    Channel,
    CommandAck,
    CommandAction,
    CommandMessage,
    DeviceEvent,
    Message,
    MessageError,
    MessageErrorCode,
    MessageKind,
    ProgrammeSummary,
    SecurityReport,
    StatusMessage,
    channel_for,
    decode_message,
    encode_message,
)

STATUS = StatusMessage(
    device_id="PUMP-0001",
    seq=41,
    sent_at_ms=1_700_000_000_000,
    state=PumpState.INFUSING,
    care_area="ICU",
    programme=ProgrammeSummary(
        channel="primary",
        drug="Heparin",
        rate_ml_h=Decimal("12.5"),
        volume_infused_ml=Decimal("3.1"),
        vtbi_remaining_ml=Decimal("96.9"),
    ),
    battery_percent=77,
    on_mains=False,
    active_alarms=("occlusion",),
    firmware_version="1.4.2",
    library_version="7",
)
EVENT = DeviceEvent(
    device_id="PUMP-0001",
    seq=42,
    sent_at_ms=1_700_000_000_500,
    event=EventKind.ALARM_ON,
    log_seq=17,
    occurred_at_ms=1_700_000_000_400,
    summary="downstream occlusion",
    attributes={"alarm": "occlusion"},
)
COMMAND = CommandMessage(
    device_id="PUMP-0001",
    command_id="cmd-7",
    action=CommandAction.PAUSE,
    sent_at_ms=5,
    expires_at_ms=60_005,
)
ACK = CommandAck(
    device_id="PUMP-0001",
    seq=43,
    sent_at_ms=9,
    command_id="cmd-7",
    outcome=AckOutcome.REJECTED,
    reason="remote pause not allowed while programming",
    err_code=9017,
)


@pytest.mark.parametrize("message", [STATUS, EVENT, COMMAND, ACK])
def test_messages_round_trip(message: Message) -> None:
    payload = encode_message(message)
    assert json.loads(payload)["schema_version"] == 1
    assert decode_message(payload) == message


def test_each_kind_has_its_channel() -> None:
    assert channel_for(MessageKind.STATUS) is Channel.TELEMETRY
    assert channel_for(MessageKind.EVENT) is Channel.EVENTS
    assert channel_for(MessageKind.COMMAND_ACK) is Channel.ACKS
    assert channel_for(MessageKind.COMMAND) is Channel.COMMANDS


def _with(message: Message, **changes: object) -> bytes:
    raw = json.loads(encode_message(message))
    raw.update(changes)
    return json.dumps(raw).encode()


@pytest.mark.parametrize(
    ("payload", "code", "words"),
    [
        (b"\xff\xfe", MessageErrorCode.NOT_JSON, "UTF-8"),
        (b"{", MessageErrorCode.NOT_JSON, "invalid JSON"),
        (b"[1]", MessageErrorCode.NOT_AN_OBJECT, "object"),
        (b'{"kind": "status", "kind": "event"}', MessageErrorCode.DUPLICATE_KEY, "'kind'"),
        (_with(STATUS, schema_version=2), MessageErrorCode.UNSUPPORTED_VERSION, "2"),
        (_with(STATUS, schema_version="1"), MessageErrorCode.UNSUPPORTED_VERSION, "'1'"),
        (_with(STATUS, kind="reboot"), MessageErrorCode.UNKNOWN_KIND, "reboot"),
        (_with(STATUS, seq=0), MessageErrorCode.INVALID_FIELDS, "seq"),
        (_with(STATUS, seq="41"), MessageErrorCode.INVALID_FIELDS, "seq"),
        (_with(STATUS, device_id="PUMP/0002"), MessageErrorCode.INVALID_FIELDS, "device_id"),
        (_with(STATUS, extra=True), MessageErrorCode.INVALID_FIELDS, "extra"),
        (_with(STATUS, battery_percent=101), MessageErrorCode.INVALID_FIELDS, "battery"),
        (_with(STATUS, state="exploding"), MessageErrorCode.INVALID_FIELDS, "state"),
        (
            _with(
                STATUS,
                programme={**json.loads(encode_message(STATUS))["programme"], "rate_ml_h": 12.5},
            ),
            MessageErrorCode.INVALID_FIELDS,
            "not floats",
        ),
        (_with(EVENT, event="self-destruct"), MessageErrorCode.INVALID_FIELDS, "event"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), MessageErrorCode.TOO_LARGE, "bytes"),
        (b"[" * 5000 + b"]" * 5000, MessageErrorCode.NOT_JSON, "nests too deeply"),
    ],
)
def test_bad_payloads_get_specific_errors(
    payload: bytes, code: MessageErrorCode, words: str
) -> None:
    with pytest.raises(MessageError) as refused:
        decode_message(payload)
    assert refused.value.code is code
    assert words in str(refused.value)


@settings(max_examples=200)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_payloads_raise_only_message_errors(payload: bytes) -> None:
    error: MessageError | None = None
    try:
        decode_message(payload)
    except MessageError as exc:
        error = exc
    if error is not None:
        assert error.code in MessageErrorCode


def _report(component: str, code: str) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "kind": "security-event",
            "device_id": "PUMP-0001",
            "seq": 3,
            "sent_at_ms": 10,
            "occurred_at_ms": 9,
            "component": component,
            "code": code,
            "severity": 4,
            "message": "seen on the pump",
        }
    ).encode()


@pytest.mark.parametrize(
    ("component", "code"),
    [
        ("updates", "updates.rollback"),
        ("pki", "pki.tls.unknown_ca"),
        ("device", "transport.payload_invalid"),
        ("link", "link.replay"),
    ],
)
def test_a_device_reports_what_it_observed(component: str, code: str) -> None:
    assert isinstance(decode_message(_report(component, code)), SecurityReport)


@pytest.mark.parametrize(
    ("component", "code"),
    [
        ("server", "server.auth.login_failed"),
        ("interop", "interop.hl7.malformed"),
        ("device", "server.auth.account_locked"),
        ("updates", "interop.order.replayed"),
    ],
)
def test_a_device_cannot_report_the_servers_events(component: str, code: str) -> None:
    with pytest.raises(MessageError, match="a device cannot report") as raised:
        decode_message(_report(component, code))
    assert raised.value.code is MessageErrorCode.INVALID_FIELDS
