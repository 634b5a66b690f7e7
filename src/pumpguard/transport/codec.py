"""An MQTT 5 packet codec: bytes <-> typed packets, strict about every field.

Section numbers refer to the MQTT Version 5.0 OASIS Standard (7 March 2019). The decoder is
the broker's first line of defence: every length is checked against the bytes actually present,
every reserved bit and flag against its required value, every string for well-formed UTF-8
without U+0000 (section 1.5.4), and every property against the packets it may appear in
(section 2.2.2.2). Anything else raises ``PacketError`` carrying the reason code the peer is to
be disconnected with (0x81 Malformed Packet, 0x82 Protocol Error, 0x84, 0x95).

QoS 2 flows (PUBREC/PUBREL/PUBCOMP) and AUTH are not implemented: pumpguard advertises
Maximum QoS 1 and uses TLS client certificates, not enhanced authentication, so those packet
types are decoded only far enough to be refused as a protocol error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from enum import Enum, IntEnum

from pumpguard.transport.codes import QoS, ReasonCode

__all__ = [
    "MAX_REMAINING_LENGTH",
    "ConnAck",
    "Connect",
    "Disconnect",
    "Packet",
    "PacketDecoder",
    "PacketError",
    "PacketType",
    "PingReq",
    "PingResp",
    "Properties",
    "PubAck",
    "Publish",
    "SubAck",
    "Subscribe",
    "Subscription",
    "UnsubAck",
    "Unsubscribe",
    "Will",
    "decode_packet",
    "encode_packet",
]

MAX_REMAINING_LENGTH = 268_435_455  # the largest four-byte Variable Byte Integer, section 1.5.5
_PROTOCOL_NAME = "MQTT"
_PROTOCOL_VERSION = 5


class PacketError(Exception):
    """A packet that cannot be accepted, with the reason code to disconnect the peer with."""

    def __init__(self, message: str, reason: ReasonCode = ReasonCode.MALFORMED_PACKET) -> None:
        super().__init__(message)
        self.reason = reason


class PacketType(IntEnum):
    """Control packet types, section 2.1.2."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class _Kind(Enum):
    BYTE = 1
    TWO = 2
    FOUR = 4
    VARINT = 5
    UTF8 = 6
    BINARY = 7


_P = PacketType
_WILL = 0  # pseudo packet type for the will properties of CONNECT

# property id -> (Properties field, data type, packets it may appear in); section 2.2.2.2
_PROPERTY_TABLE: dict[int, tuple[str, _Kind, frozenset[int]]] = {
    0x01: ("payload_format_indicator", _Kind.BYTE, frozenset({_P.PUBLISH, _WILL})),
    0x02: ("message_expiry_interval", _Kind.FOUR, frozenset({_P.PUBLISH, _WILL})),
    0x03: ("content_type", _Kind.UTF8, frozenset({_P.PUBLISH, _WILL})),
    0x08: ("response_topic", _Kind.UTF8, frozenset({_P.PUBLISH, _WILL})),
    0x09: ("correlation_data", _Kind.BINARY, frozenset({_P.PUBLISH, _WILL})),
    0x0B: ("subscription_identifiers", _Kind.VARINT, frozenset({_P.PUBLISH, _P.SUBSCRIBE})),
    0x11: (
        "session_expiry_interval",
        _Kind.FOUR,
        frozenset({_P.CONNECT, _P.CONNACK, _P.DISCONNECT}),
    ),
    0x12: ("assigned_client_identifier", _Kind.UTF8, frozenset({_P.CONNACK})),
    0x13: ("server_keep_alive", _Kind.TWO, frozenset({_P.CONNACK})),
    0x15: ("authentication_method", _Kind.UTF8, frozenset({_P.CONNECT, _P.CONNACK, _P.AUTH})),
    0x16: ("authentication_data", _Kind.BINARY, frozenset({_P.CONNECT, _P.CONNACK, _P.AUTH})),
    0x17: ("request_problem_information", _Kind.BYTE, frozenset({_P.CONNECT})),
    0x18: ("will_delay_interval", _Kind.FOUR, frozenset({_WILL})),
    0x19: ("request_response_information", _Kind.BYTE, frozenset({_P.CONNECT})),
    0x1A: ("response_information", _Kind.UTF8, frozenset({_P.CONNACK})),
    0x1C: ("server_reference", _Kind.UTF8, frozenset({_P.CONNACK, _P.DISCONNECT})),
    0x1F: (
        "reason_string",
        _Kind.UTF8,
        frozenset(
            {
                _P.CONNACK,
                _P.PUBACK,
                _P.PUBREC,
                _P.PUBREL,
                _P.PUBCOMP,
                _P.SUBACK,
                _P.UNSUBACK,
                _P.DISCONNECT,
                _P.AUTH,
            }
        ),
    ),
    0x21: ("receive_maximum", _Kind.TWO, frozenset({_P.CONNECT, _P.CONNACK})),
    0x22: ("topic_alias_maximum", _Kind.TWO, frozenset({_P.CONNECT, _P.CONNACK})),
    0x23: ("topic_alias", _Kind.TWO, frozenset({_P.PUBLISH})),
    0x24: ("maximum_qos", _Kind.BYTE, frozenset({_P.CONNACK})),
    0x25: ("retain_available", _Kind.BYTE, frozenset({_P.CONNACK})),
    0x27: ("maximum_packet_size", _Kind.FOUR, frozenset({_P.CONNECT, _P.CONNACK})),
    0x28: ("wildcard_subscription_available", _Kind.BYTE, frozenset({_P.CONNACK})),
    0x29: ("subscription_identifier_available", _Kind.BYTE, frozenset({_P.CONNACK})),
    0x2A: ("shared_subscription_available", _Kind.BYTE, frozenset({_P.CONNACK})),
}
_USER_PROPERTY = 0x26
_FIELD_TO_ID = {name: pid for pid, (name, _, _) in _PROPERTY_TABLE.items()}
_BYTE_VALUES_01 = frozenset(
    {
        "payload_format_indicator",
        "request_problem_information",
        "request_response_information",
        "maximum_qos",
        "retain_available",
        "wildcard_subscription_available",
        "subscription_identifier_available",
        "shared_subscription_available",
    }
)


@dataclass(frozen=True, slots=True)
class Properties:
    """The MQTT 5 properties of one packet (section 2.2.2); ``None`` means absent."""

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifiers: tuple[int, ...] = ()
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None
    user_properties: tuple[tuple[str, str], ...] = field(default=())


_EMPTY = Properties()


@dataclass(frozen=True, slots=True)
class Will:
    """A CONNECT's will message (section 3.1.3.2); decoded so it can be refused by name."""

    topic: str
    payload: bytes
    qos: QoS = QoS.AT_MOST_ONCE
    retain: bool = False
    properties: Properties = _EMPTY


@dataclass(frozen=True, slots=True)
class Connect:
    client_id: str
    keep_alive: int = 60
    clean_start: bool = True
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: Properties = _EMPTY


@dataclass(frozen=True, slots=True)
class ConnAck:
    reason: ReasonCode = ReasonCode.SUCCESS
    session_present: bool = False
    properties: Properties = _EMPTY


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: QoS = QoS.AT_MOST_ONCE
    packet_id: int | None = None
    retain: bool = False
    dup: bool = False
    properties: Properties = _EMPTY


@dataclass(frozen=True, slots=True)
class PubAck:
    packet_id: int
    reason: ReasonCode = ReasonCode.SUCCESS
    properties: Properties = _EMPTY


@dataclass(frozen=True, slots=True)
class Subscription:
    """One topic filter of a SUBSCRIBE with its options (section 3.8.3.1)."""

    topic_filter: str
    qos: QoS = QoS.AT_LEAST_ONCE
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    subscriptions: tuple[Subscription, ...]
    properties: Properties = _EMPTY


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    reasons: tuple[ReasonCode, ...]
    properties: Properties = _EMPTY


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    topic_filters: tuple[str, ...]
    properties: Properties = _EMPTY


@dataclass(frozen=True, slots=True)
class UnsubAck:
    packet_id: int
    reasons: tuple[ReasonCode, ...]
    properties: Properties = _EMPTY


@dataclass(frozen=True, slots=True)
class PingReq:
    pass


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason: ReasonCode = ReasonCode.SUCCESS
    properties: Properties = _EMPTY


Packet = (
    Connect
    | ConnAck
    | Publish
    | PubAck
    | Subscribe
    | SubAck
    | Unsubscribe
    | UnsubAck
    | PingReq
    | PingResp
    | Disconnect
)


# ----------------------------------------------------------------------------- encoding


def _varint(value: int) -> bytes:
    if not 0 <= value <= MAX_REMAINING_LENGTH:
        raise ValueError(f"variable byte integer out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _u16(value: int) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"two byte integer out of range: {value}")
    return value.to_bytes(2, "big")


def _u32(value: int) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"four byte integer out of range: {value}")
    return value.to_bytes(4, "big")


def _binary(value: bytes) -> bytes:
    return _u16(len(value)) + value


def _utf8(value: str) -> bytes:
    if "\x00" in value:
        raise ValueError("MQTT strings must not contain U+0000")
    return _binary(value.encode("utf-8"))


def _encode_value(kind: _Kind, value: int | str | bytes) -> bytes:
    if kind is _Kind.UTF8:
        assert isinstance(value, str)
        return _utf8(value)
    if kind is _Kind.BINARY:
        assert isinstance(value, bytes)
        return _binary(value)
    assert isinstance(value, int)
    if kind is _Kind.BYTE:
        if not 0 <= value <= 0xFF:
            raise ValueError(f"byte out of range: {value}")
        return bytes([value])
    if kind is _Kind.TWO:
        return _u16(value)
    if kind is _Kind.FOUR:
        return _u32(value)
    return _varint(value)


def _encode_properties(props: Properties) -> bytes:
    body = bytearray()
    for f in fields(Properties):
        value = getattr(props, f.name)
        if f.name == "user_properties":
            for key, val in value:
                body += bytes([_USER_PROPERTY]) + _utf8(key) + _utf8(val)
            continue
        pid = _FIELD_TO_ID[f.name]
        kind = _PROPERTY_TABLE[pid][1]
        if f.name == "subscription_identifiers":
            for ident in value:
                body += _varint(pid) + _encode_value(kind, ident)
        elif value is not None:
            body += _varint(pid) + _encode_value(kind, value)
    return _varint(len(body)) + bytes(body)


def _fixed(packet_type: PacketType, flags: int, body: bytes) -> bytes:
    return bytes([(packet_type << 4) | flags]) + _varint(len(body)) + body


def _packet_id(packet_id: int | None) -> bytes:
    if packet_id is None or not 1 <= packet_id <= 0xFFFF:
        raise ValueError(f"packet identifier must be 1..65535, got {packet_id}")
    return _u16(packet_id)


def encode_packet(packet: Packet) -> bytes:
    """Serialise one packet; raises ``ValueError`` for a packet no peer should ever be sent."""
    match packet:
        case Connect():
            return _encode_connect(packet)
        case ConnAck():
            body = bytes([int(packet.session_present), packet.reason])
            return _fixed(_P.CONNACK, 0, body + _encode_properties(packet.properties))
        case Publish():
            return _encode_publish(packet)
        case PubAck():
            body = _packet_id(packet.packet_id) + bytes([packet.reason])
            return _fixed(_P.PUBACK, 0, body + _encode_properties(packet.properties))
        case Subscribe():
            if not packet.subscriptions:
                raise ValueError("SUBSCRIBE needs at least one topic filter")
            sub_body = bytearray(_packet_id(packet.packet_id))
            sub_body += _encode_properties(packet.properties)
            for sub in packet.subscriptions:
                options = (
                    int(sub.qos)
                    | int(sub.no_local) << 2
                    | int(sub.retain_as_published) << 3
                    | sub.retain_handling << 4
                )
                sub_body += _utf8(sub.topic_filter) + bytes([options])
            return _fixed(_P.SUBSCRIBE, 0b0010, bytes(sub_body))
        case SubAck() | UnsubAck():
            kind = _P.SUBACK if isinstance(packet, SubAck) else _P.UNSUBACK
            body = _packet_id(packet.packet_id) + _encode_properties(packet.properties)
            return _fixed(kind, 0, body + bytes(packet.reasons))
        case Unsubscribe():
            if not packet.topic_filters:
                raise ValueError("UNSUBSCRIBE needs at least one topic filter")
            unsub_body = bytearray(_packet_id(packet.packet_id))
            unsub_body += _encode_properties(packet.properties)
            for topic_filter in packet.topic_filters:
                unsub_body += _utf8(topic_filter)
            return _fixed(_P.UNSUBSCRIBE, 0b0010, bytes(unsub_body))
        case PingReq():
            return _fixed(_P.PINGREQ, 0, b"")
        case PingResp():
            return _fixed(_P.PINGRESP, 0, b"")
        case Disconnect():
            body = bytes([packet.reason]) + _encode_properties(packet.properties)
            return _fixed(_P.DISCONNECT, 0, body)


def _encode_connect(packet: Connect) -> bytes:
    flags = 0
    payload = bytearray(_utf8(packet.client_id))
    if packet.clean_start:
        flags |= 0x02
    if packet.will is not None:
        will = packet.will
        flags |= 0x04 | int(will.qos) << 3 | int(will.retain) << 5
        payload += _encode_properties(will.properties) + _utf8(will.topic) + _binary(will.payload)
    if packet.username is not None:
        flags |= 0x80
        payload += _utf8(packet.username)
    if packet.password is not None:
        flags |= 0x40
        payload += _binary(packet.password)
    header = _utf8(_PROTOCOL_NAME) + bytes([_PROTOCOL_VERSION, flags]) + _u16(packet.keep_alive)
    body = header + _encode_properties(packet.properties) + bytes(payload)
    return _fixed(_P.CONNECT, 0, body)


def _encode_publish(packet: Publish) -> bytes:
    if packet.qos == QoS.AT_MOST_ONCE:
        if packet.packet_id is not None or packet.dup:
            raise ValueError("a QoS 0 PUBLISH has no packet identifier and no DUP flag")
        ident = b""
    else:
        ident = _packet_id(packet.packet_id)
    flags = int(packet.dup) << 3 | int(packet.qos) << 1 | int(packet.retain)
    body = _utf8(packet.topic) + ident + _encode_properties(packet.properties) + packet.payload
    return _fixed(_P.PUBLISH, flags, body)


# ----------------------------------------------------------------------------- decoding


class _Reader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, n: int, what: str) -> bytes:
        if n > self.remaining:
            raise PacketError(f"{what}: needs {n} bytes, only {self.remaining} left")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def rest(self) -> bytes:
        return self.take(self.remaining, "payload")

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "big")

    def u32(self, what: str) -> int:
        return int.from_bytes(self.take(4, what), "big")

    def varint(self, what: str) -> int:
        value = 0
        for i in range(4):
            byte = self.u8(what)
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if i and byte == 0:
                    raise PacketError(f"{what}: variable byte integer not in its shortest form")
                return value
        raise PacketError(f"{what}: variable byte integer longer than 4 bytes")

    def binary(self, what: str) -> bytes:
        return self.take(self.u16(what), what)

    def utf8(self, what: str) -> str:
        raw = self.binary(what)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise PacketError(f"{what}: not well-formed UTF-8") from None
        if "\x00" in text:
            raise PacketError(f"{what}: contains U+0000")
        return text


def _decode_properties(reader: _Reader, packet_type: int) -> Properties:
    length = reader.varint("property length")
    sub = _Reader(reader.take(length, "properties"))
    values: dict[str, int | str | bytes] = {}
    sub_ids: list[int] = []
    user: list[tuple[str, str]] = []
    while sub.remaining:
        pid = sub.varint("property identifier")
        if pid == _USER_PROPERTY:
            user.append((sub.utf8("user property name"), sub.utf8("user property value")))
            continue
        entry = _PROPERTY_TABLE.get(pid)
        if entry is None:
            raise PacketError(f"unknown property identifier 0x{pid:02X}")
        name, kind, allowed = entry
        if packet_type not in allowed:
            what = "will" if packet_type == _WILL else PacketType(packet_type).name
            raise PacketError(
                f"property {name} (0x{pid:02X}) is not allowed in {what}",
                ReasonCode.PROTOCOL_ERROR,
            )
        value = _decode_value(sub, kind, name)
        if name == "subscription_identifiers":
            assert isinstance(value, int)
            if value == 0:
                raise PacketError("subscription identifier 0", ReasonCode.PROTOCOL_ERROR)
            if packet_type == _P.SUBSCRIBE and sub_ids:
                raise PacketError("two subscription identifiers", ReasonCode.PROTOCOL_ERROR)
            sub_ids.append(value)
            continue
        if name in values:
            raise PacketError(f"property {name} appears twice", ReasonCode.PROTOCOL_ERROR)
        if name in _BYTE_VALUES_01 and value not in (0, 1):
            raise PacketError(f"property {name} must be 0 or 1", ReasonCode.PROTOCOL_ERROR)
        if name in ("receive_maximum", "maximum_packet_size") and value == 0:
            raise PacketError(f"property {name} must not be 0", ReasonCode.PROTOCOL_ERROR)
        values[name] = value
    return Properties(
        subscription_identifiers=tuple(sub_ids),
        user_properties=tuple(user),
        **values,  # type: ignore[arg-type]
    )


def _decode_value(reader: _Reader, kind: _Kind, name: str) -> int | str | bytes:
    if kind is _Kind.BYTE:
        return reader.u8(name)
    if kind is _Kind.TWO:
        return reader.u16(name)
    if kind is _Kind.FOUR:
        return reader.u32(name)
    if kind is _Kind.VARINT:
        return reader.varint(name)
    if kind is _Kind.UTF8:
        return reader.utf8(name)
    return reader.binary(name)


def _reason(value: int, allowed: frozenset[ReasonCode], what: str) -> ReasonCode:
    try:
        code = ReasonCode(value)
    except ValueError:
        raise PacketError(f"{what}: unknown reason code 0x{value:02X}") from None
    if code not in allowed:
        raise PacketError(f"{what}: reason code 0x{value:02X} not valid here")
    return code


_RC = ReasonCode
_CONNACK_REASONS = frozenset({_RC.SUCCESS} | {c for c in _RC if c >= 0x80})
_PUBACK_REASONS = frozenset(
    {
        _RC.SUCCESS,
        _RC.NO_MATCHING_SUBSCRIBERS,
        _RC.UNSPECIFIED_ERROR,
        _RC.IMPLEMENTATION_SPECIFIC_ERROR,
        _RC.NOT_AUTHORIZED,
        _RC.TOPIC_NAME_INVALID,
        _RC.PACKET_IDENTIFIER_IN_USE,
        _RC.QUOTA_EXCEEDED,
        _RC.PAYLOAD_FORMAT_INVALID,
    }
)
_SUBACK_REASONS = frozenset(
    {
        _RC.SUCCESS,
        _RC.GRANTED_QOS_1,
        _RC.GRANTED_QOS_2,
        _RC.UNSPECIFIED_ERROR,
        _RC.IMPLEMENTATION_SPECIFIC_ERROR,
        _RC.NOT_AUTHORIZED,
        _RC.TOPIC_FILTER_INVALID,
        _RC.PACKET_IDENTIFIER_IN_USE,
        _RC.QUOTA_EXCEEDED,
        _RC.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
        _RC.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
        _RC.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
    }
)
_UNSUBACK_REASONS = frozenset(
    {
        _RC.SUCCESS,
        _RC.NO_SUBSCRIPTION_EXISTED,
        _RC.UNSPECIFIED_ERROR,
        _RC.IMPLEMENTATION_SPECIFIC_ERROR,
        _RC.NOT_AUTHORIZED,
        _RC.TOPIC_FILTER_INVALID,
        _RC.PACKET_IDENTIFIER_IN_USE,
    }
)
_DISCONNECT_REASONS = frozenset(
    {_RC.SUCCESS, _RC.DISCONNECT_WITH_WILL} | {c for c in _RC if c >= 0x80}
)


def _decode_packet_id(reader: _Reader, what: str) -> int:
    packet_id = reader.u16(f"{what} packet identifier")
    if packet_id == 0:
        raise PacketError(f"{what} packet identifier 0", ReasonCode.PROTOCOL_ERROR)
    return packet_id


def _decode_body(packet_type: int, flags: int, body: bytes) -> Packet:
    try:
        kind = PacketType(packet_type)
    except ValueError:
        raise PacketError(f"reserved control packet type {packet_type}") from None
    if kind is _P.PUBLISH:
        return _decode_publish(flags, _Reader(body))
    required = 0b0010 if kind in (_P.SUBSCRIBE, _P.UNSUBSCRIBE, _P.PUBREL) else 0
    if flags != required:
        raise PacketError(f"{kind.name}: fixed header flags 0x{flags:X} must be 0x{required:X}")
    reader = _Reader(body)
    packet: Packet
    if kind is _P.CONNECT:
        packet = _decode_connect(reader)
    elif kind is _P.CONNACK:
        ack_flags = reader.u8("CONNACK flags")
        if ack_flags & 0xFE:
            raise PacketError("CONNACK: reserved acknowledge flags set")
        reason = _reason(reader.u8("CONNACK reason"), _CONNACK_REASONS, "CONNACK")
        packet = ConnAck(reason, bool(ack_flags), _decode_properties(reader, _P.CONNACK))
    elif kind is _P.PUBACK:
        packet_id = _decode_packet_id(reader, "PUBACK")
        reason, props = ReasonCode.SUCCESS, _EMPTY
        if reader.remaining:
            reason = _reason(reader.u8("PUBACK reason"), _PUBACK_REASONS, "PUBACK")
            if reader.remaining:
                props = _decode_properties(reader, _P.PUBACK)
        packet = PubAck(packet_id, reason, props)
    elif kind is _P.SUBSCRIBE:
        packet = _decode_subscribe(reader)
    elif kind in (_P.SUBACK, _P.UNSUBACK):
        packet_id = _decode_packet_id(reader, kind.name)
        props = _decode_properties(reader, kind)
        allowed = _SUBACK_REASONS if kind is _P.SUBACK else _UNSUBACK_REASONS
        reasons = tuple(_reason(b, allowed, kind.name) for b in reader.rest())
        if not reasons:
            raise PacketError(f"{kind.name}: no reason codes", ReasonCode.PROTOCOL_ERROR)
        packet = (
            SubAck(packet_id, reasons, props)
            if kind is _P.SUBACK
            else UnsubAck(packet_id, reasons, props)
        )
    elif kind is _P.UNSUBSCRIBE:
        packet_id = _decode_packet_id(reader, "UNSUBSCRIBE")
        props = _decode_properties(reader, _P.UNSUBSCRIBE)
        topic_filters: list[str] = []
        while reader.remaining:
            topic_filters.append(reader.utf8("UNSUBSCRIBE topic filter"))
        if not topic_filters:
            raise PacketError("UNSUBSCRIBE: no topic filters", ReasonCode.PROTOCOL_ERROR)
        packet = Unsubscribe(packet_id, tuple(topic_filters), props)
    elif kind is _P.PINGREQ:
        packet = PingReq()
    elif kind is _P.PINGRESP:
        packet = PingResp()
    elif kind is _P.DISCONNECT:
        reason, props = ReasonCode.SUCCESS, _EMPTY
        if reader.remaining:
            reason = _reason(reader.u8("DISCONNECT reason"), _DISCONNECT_REASONS, "DISCONNECT")
            if reader.remaining:
                props = _decode_properties(reader, _P.DISCONNECT)
        packet = Disconnect(reason, props)
    else:
        raise PacketError(
            f"{kind.name} is not supported (QoS 2 and AUTH are not offered)",
            ReasonCode.PROTOCOL_ERROR,
        )
    if reader.remaining:
        raise PacketError(f"{kind.name}: {reader.remaining} unexpected trailing bytes")
    return packet


def _decode_connect(reader: _Reader) -> Connect:
    name = reader.utf8("protocol name")
    version = reader.u8("protocol version")
    if name != _PROTOCOL_NAME or version != _PROTOCOL_VERSION:
        raise PacketError(
            f"protocol {name!r} version {version} is not MQTT 5",
            ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
        )
    flags = reader.u8("connect flags")
    if flags & 0x01:
        raise PacketError("CONNECT: reserved flag set")
    will_flag = bool(flags & 0x04)
    will_qos = (flags >> 3) & 0x03
    will_retain = bool(flags & 0x20)
    if not will_flag and (will_qos or will_retain):
        raise PacketError("CONNECT: will QoS or retain set without a will")
    if will_qos == 3:
        raise PacketError("CONNECT: will QoS 3")
    keep_alive = reader.u16("keep alive")
    props = _decode_properties(reader, _P.CONNECT)
    client_id = reader.utf8("client identifier")
    will = None
    if will_flag:
        will_props = _decode_properties(reader, _WILL)
        will = Will(
            topic=reader.utf8("will topic"),
            payload=reader.binary("will payload"),
            qos=QoS(will_qos),
            retain=will_retain,
            properties=will_props,
        )
    username = reader.utf8("user name") if flags & 0x80 else None
    password = reader.binary("password") if flags & 0x40 else None
    return Connect(
        client_id=client_id,
        keep_alive=keep_alive,
        clean_start=bool(flags & 0x02),
        username=username,
        password=password,
        will=will,
        properties=props,
    )


def _decode_publish(flags: int, reader: _Reader) -> Publish:
    qos_bits = (flags >> 1) & 0x03
    if qos_bits == 3:
        raise PacketError("PUBLISH: QoS 3")
    dup = bool(flags & 0x08)
    if qos_bits == 0 and dup:
        raise PacketError("PUBLISH: DUP set on a QoS 0 message")
    topic = reader.utf8("PUBLISH topic name")
    packet_id = _decode_packet_id(reader, "PUBLISH") if qos_bits else None
    props = _decode_properties(reader, _P.PUBLISH)
    return Publish(
        topic=topic,
        payload=reader.rest(),
        qos=QoS(qos_bits),
        packet_id=packet_id,
        retain=bool(flags & 0x01),
        dup=dup,
        properties=props,
    )


def _decode_subscribe(reader: _Reader) -> Subscribe:
    packet_id = _decode_packet_id(reader, "SUBSCRIBE")
    props = _decode_properties(reader, _P.SUBSCRIBE)
    subs: list[Subscription] = []
    while reader.remaining:
        topic_filter = reader.utf8("SUBSCRIBE topic filter")
        options = reader.u8("subscription options")
        if options & 0xC0:
            raise PacketError("SUBSCRIBE: reserved subscription option bits set")
        qos = options & 0x03
        retain_handling = (options >> 4) & 0x03
        if qos == 3 or retain_handling == 3:
            raise PacketError("SUBSCRIBE: QoS or retain handling 3")
        subs.append(
            Subscription(
                topic_filter=topic_filter,
                qos=QoS(qos),
                no_local=bool(options & 0x04),
                retain_as_published=bool(options & 0x08),
                retain_handling=retain_handling,
            )
        )
    if not subs:
        raise PacketError("SUBSCRIBE: no topic filters", ReasonCode.PROTOCOL_ERROR)
    return Subscribe(packet_id, tuple(subs), props)


def _split_header(data: bytes | bytearray, max_size: int) -> tuple[int, int, int] | None:
    """(first byte, header length, remaining length), or None if more bytes are needed."""
    if not data:
        return None
    value = 0
    for i in range(4):
        if 1 + i >= len(data):
            return None
        byte = data[1 + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if i and byte == 0:
                raise PacketError("remaining length not in its shortest form")
            if 2 + i + value > max_size:
                raise PacketError(
                    f"packet of {2 + i + value} bytes exceeds the maximum of {max_size}",
                    ReasonCode.PACKET_TOO_LARGE,
                )
            return data[0], 2 + i, value
    raise PacketError("remaining length longer than 4 bytes")


def decode_packet(data: bytes) -> Packet:
    """Decode exactly one complete packet."""
    header = _split_header(data, MAX_REMAINING_LENGTH + 5)
    if header is None:
        raise PacketError("incomplete packet")
    first, header_len, length = header
    if header_len + length != len(data):
        raise PacketError(
            f"remaining length {length} does not match {len(data) - header_len} bytes"
        )
    return _decode_body(first >> 4, first & 0x0F, bytes(data[header_len:]))


class PacketDecoder:
    """Turns a byte stream into packets; keeps a partial packet until the rest arrives.

    ``feed`` returns an iterator, and the iterator raises ``PacketError`` only when it reaches
    the bad packet: the valid packets before it (a CONNECT, say) are handed out first, so the
    caller answers them before disconnecting. Consume each iterator fully before the next
    ``feed``. After a ``PacketError`` the stream is unusable (MQTT has no resynchronisation).
    """

    def __init__(self, max_packet_size: int = MAX_REMAINING_LENGTH + 5) -> None:
        self._buffer = bytearray()
        self._max = max_packet_size

    def feed(self, data: bytes) -> Iterator[Packet]:
        self._buffer += data
        return self._packets()

    def _packets(self) -> Iterator[Packet]:
        while True:
            header = _split_header(self._buffer, self._max)
            if header is None:
                return
            first, header_len, length = header
            end = header_len + length
            if len(self._buffer) < end:
                return
            body = bytes(self._buffer[header_len:end])
            del self._buffer[:end]
            yield _decode_body(first >> 4, first & 0x0F, body)

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)
