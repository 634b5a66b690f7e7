"""Device <-> server messaging: MQTT 5 over mutual TLS with per-device topic ACLs.

The embedded ``Broker`` (the default, no external service) and Mosquitto (production, from a
generated configuration) enforce one ACL model (``topics.ACL_RULES``); the in-memory ``Bus``
enforces the same checks in virtual time. Devices and the server talk to either through the
``Session`` interface: a pump runs a ``DeviceLink`` (outbox, reconnects, commands once), the
server a ``ServerLink`` (batched, acknowledged-after-commit ingest). See ``docs/transport.md``.
"""

from pumpguard.transport.broker import Broker, BrokerLimits
from pumpguard.transport.bus import Bus, BusSession
from pumpguard.transport.client import MqttClient
from pumpguard.transport.clock_offset import ClockOffsets
from pumpguard.transport.codes import QoS, ReasonCode, TransportEvent
from pumpguard.transport.device import CommandExecutor, CommandOutcome, Connector, DeviceLink
from pumpguard.transport.messages import (
    MAX_PAYLOAD_BYTES,
    SCHEMA_VERSION,
    AckOutcome,
    CommandAck,
    CommandAction,
    CommandMessage,
    DeviceEvent,
    DeviceMessage,
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
from pumpguard.transport.mosquitto import (
    MosquittoSettings,
    render_mosquitto_conf,
    write_mosquitto_config,
)
from pumpguard.transport.outbox import (
    Deduplicator,
    FlushResult,
    Outbox,
    OutboxFullError,
    Refused,
)
from pumpguard.transport.policy import Gatekeeper, Verdict
from pumpguard.transport.server import ServerLink, Store
from pumpguard.transport.session import (
    ConnectRefusedError,
    Delivery,
    MessageHandler,
    NotConnectedError,
    Session,
)
from pumpguard.transport.topics import (
    ACL_RULES,
    TOPIC_ROOT,
    Access,
    AclRule,
    Channel,
    DeviceTopic,
    acl_allows,
    device_topic,
    mosquitto_acl_file,
    parse_device_topic,
    topic_matches,
)

__all__ = [
    "ACL_RULES",
    "MAX_PAYLOAD_BYTES",
    "SCHEMA_VERSION",
    "TOPIC_ROOT",
    "Access",
    "AckOutcome",
    "AclRule",
    "Broker",
    "BrokerLimits",
    "Bus",
    "BusSession",
    "Channel",
    "ClockOffsets",
    "CommandAck",
    "CommandAction",
    "CommandExecutor",
    "CommandMessage",
    "CommandOutcome",
    "ConnectRefusedError",
    "Connector",
    "Deduplicator",
    "Delivery",
    "DeviceEvent",
    "DeviceLink",
    "DeviceMessage",
    "DeviceTopic",
    "FlushResult",
    "Gatekeeper",
    "Message",
    "MessageError",
    "MessageErrorCode",
    "MessageHandler",
    "MessageKind",
    "MosquittoSettings",
    "MqttClient",
    "NotConnectedError",
    "Outbox",
    "OutboxFullError",
    "ProgrammeSummary",
    "QoS",
    "ReasonCode",
    "Refused",
    "SecurityReport",
    "ServerLink",
    "Session",
    "StatusMessage",
    "Store",
    "TransportEvent",
    "Verdict",
    "acl_allows",
    "channel_for",
    "decode_message",
    "device_topic",
    "encode_message",
    "mosquitto_acl_file",
    "parse_device_topic",
    "render_mosquitto_conf",
    "topic_matches",
    "write_mosquitto_config",
]
