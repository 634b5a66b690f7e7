"""MQTT 5 reason codes and the transport's security event codes.

Reason codes are those of the MQTT Version 5.0 OASIS Standard, section 2.4 (table 2-6); only
the ones pumpguard sends or understands are named. Security event codes are stable, dotted
strings that detection rules match on: once published, never renamed.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = ["QoS", "ReasonCode", "TransportEvent"]


class QoS(IntEnum):
    """Quality of service levels; pumpguard uses 0 and 1 (QoS 2 is refused as unsupported)."""

    AT_MOST_ONCE = 0
    AT_LEAST_ONCE = 1
    EXACTLY_ONCE = 2


class ReasonCode(IntEnum):
    """MQTT 5 reason codes (OASIS MQTT 5.0, section 2.4). 0x00 also means "granted QoS 0"
    in SUBACK and "normal disconnection" in DISCONNECT."""

    SUCCESS = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    REAUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2

    @property
    def is_failure(self) -> bool:
        """Reason codes of 0x80 and above are failures (OASIS MQTT 5.0, section 2.4)."""
        return self >= 0x80


class TransportEvent(StrEnum):
    """Security event codes emitted by the broker, the in-memory bus and the client.

    Failed TLS handshakes are not here: every TLS endpoint of the project classifies them the
    same way, with ``pumpguard.pki.PkiEvent`` codes (``pki.tls.no_client_cert``,
    ``pki.tls.unknown_ca``, ``pki.tls.cert_expired``, ``pki.tls.cert_revoked``, ...), emitted
    by the transport with ``Component.TRANSPORT``.
    """

    IDENTITY_MISMATCH = "transport.identity_mismatch"
    ACL_PUBLISH_DENIED = "transport.acl.publish_denied"
    ACL_SUBSCRIBE_DENIED = "transport.acl.subscribe_denied"
    MALFORMED_PACKET = "transport.malformed_packet"
    PROTOCOL_VIOLATION = "transport.protocol_violation"
    PAYLOAD_INVALID = "transport.payload.invalid"
    PAYLOAD_SPOOFED = "transport.payload.spoofed"
    SESSION_TAKEN_OVER = "transport.session_taken_over"
    SESSION_REVOKED = "transport.session_revoked"
    CONNECTION_LIMIT = "transport.connection_limit"
