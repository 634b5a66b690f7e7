"""The topic scheme, topic filter matching, and the one ACL model every broker enforces.

Topics (``docs/transport.md``)::

    pumpguard/v1/devices/{id}/telemetry   device -> server   status messages
    pumpguard/v1/devices/{id}/events      device -> server   device events
    pumpguard/v1/devices/{id}/acks        device -> server   command acknowledgements
    pumpguard/v1/devices/{id}/commands    server -> device   commands

``ACL_RULES`` is the single source of truth: the embedded broker and the in-memory bus check
``acl_allows`` against it, and ``mosquitto_acl_file`` renders the same rules as Mosquitto
``pattern`` lines (``%u`` = the certificate CN with ``use_identity_as_username``). Matching
follows the MQTT 5.0 OASIS Standard, section 4.7.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pumpguard.pki import CertKind, PeerIdentity, validate_ident

__all__ = [
    "ACL_RULES",
    "TOPIC_ROOT",
    "Access",
    "AclRule",
    "Channel",
    "DeviceTopic",
    "acl_allows",
    "device_topic",
    "filter_covers",
    "mosquitto_acl_file",
    "parse_device_topic",
    "topic_matches",
    "validate_topic_filter",
    "validate_topic_name",
]

TOPIC_ROOT = "pumpguard/v1/devices"
_IDENT_PLACEHOLDER = "%u"


class Channel(StrEnum):
    """The last topic level: what flows on it and in which direction."""

    TELEMETRY = "telemetry"
    EVENTS = "events"
    ACKS = "acks"
    COMMANDS = "commands"

    @property
    def from_device(self) -> bool:
        return self is not Channel.COMMANDS


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    device_id: str
    channel: Channel

    def __str__(self) -> str:
        return f"{TOPIC_ROOT}/{self.device_id}/{self.channel.value}"


def device_topic(device_id: str, channel: Channel) -> str:
    return str(DeviceTopic(device_id, channel))


def parse_device_topic(topic: str) -> DeviceTopic | None:
    """The device and channel a concrete topic names, or None if it is not a device topic."""
    prefix = TOPIC_ROOT + "/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix) :].split("/")
    if len(parts) != 2 or not parts[0]:
        return None
    try:
        channel = Channel(parts[1])
    except ValueError:
        return None
    return DeviceTopic(parts[0], channel)


class Access(StrEnum):
    """Mosquitto's ACL access words: ``write`` = publish, ``read`` = subscribe and receive."""

    READ = "read"
    WRITE = "write"


@dataclass(frozen=True, slots=True)
class AclRule:
    """``kind`` may ``access`` topics matching ``pattern``; ``%u`` stands for the peer's own id."""

    kind: CertKind
    access: Access
    pattern: str

    def for_identity(self, identity: PeerIdentity) -> str:
        return self.pattern.replace(_IDENT_PLACEHOLDER, identity.ident)


ACL_RULES: tuple[AclRule, ...] = (
    AclRule(CertKind.PUMP, Access.WRITE, f"{TOPIC_ROOT}/%u/{Channel.TELEMETRY}"),
    AclRule(CertKind.PUMP, Access.WRITE, f"{TOPIC_ROOT}/%u/{Channel.EVENTS}"),
    AclRule(CertKind.PUMP, Access.WRITE, f"{TOPIC_ROOT}/%u/{Channel.ACKS}"),
    AclRule(CertKind.PUMP, Access.READ, f"{TOPIC_ROOT}/%u/{Channel.COMMANDS}"),
    AclRule(CertKind.SERVER, Access.READ, f"{TOPIC_ROOT}/+/{Channel.TELEMETRY}"),
    AclRule(CertKind.SERVER, Access.READ, f"{TOPIC_ROOT}/+/{Channel.EVENTS}"),
    AclRule(CertKind.SERVER, Access.READ, f"{TOPIC_ROOT}/+/{Channel.ACKS}"),
    AclRule(CertKind.SERVER, Access.WRITE, f"{TOPIC_ROOT}/+/{Channel.COMMANDS}"),
)


def validate_topic_name(topic: str) -> str | None:
    """Why ``topic`` may not be published to (section 4.7), or None if it may."""
    if not topic:
        return "the topic name is empty"
    if "+" in topic or "#" in topic:
        return "a topic name must not contain wildcards"
    if len(topic.encode("utf-8")) > 65535:
        return "the topic name is longer than 65535 bytes"
    return None


def validate_topic_filter(topic_filter: str) -> str | None:
    """Why ``topic_filter`` is not a valid filter (section 4.7.1), or None if it is."""
    if not topic_filter:
        return "the topic filter is empty"
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be a whole level and the last one"
        if "+" in level and level != "+":
            return "'+' must occupy a whole level"
    return None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether a concrete topic name matches a (valid) topic filter, section 4.7."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, level in enumerate(f_levels):
        if level == "#":
            return True
        if i >= len(t_levels):
            return False
        if level != "+" and level != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


def filter_covers(outer: str, inner: str) -> bool:
    """Whether every topic matched by filter ``inner`` is also matched by filter ``outer``.

    A subscription is authorised only if an allowed filter covers it entirely, so a pump that
    asks for ``pumpguard/v1/devices/+/commands`` is refused rather than silently narrowed.
    """
    if inner.startswith("$") and outer[:1] in ("+", "#"):
        return False  # section 4.7.2: a leading wildcard never matches a "$" topic
    o_levels = outer.split("/")
    i_levels = inner.split("/")
    for i, level in enumerate(o_levels):
        if level == "#":
            return True
        if i >= len(i_levels):
            return False
        inner_level = i_levels[i]
        if inner_level == "#":
            return False
        if level == "+":
            continue
        if inner_level == "+" or inner_level != level:
            return False
    return len(o_levels) == len(i_levels)


def _rules_for(identity: PeerIdentity, access: Access, rules: Iterable[AclRule]) -> list[str]:
    return [
        r.for_identity(identity) for r in rules if r.kind is identity.kind and r.access is access
    ]


def acl_allows(
    identity: PeerIdentity,
    access: Access,
    topic_or_filter: str,
    rules: Iterable[AclRule] = ACL_RULES,
) -> bool:
    """Whether ``identity`` may publish to a topic (WRITE) or subscribe to a filter (READ)."""
    allowed = _rules_for(identity, access, rules)
    if access is Access.WRITE:
        return any(topic_matches(pattern, topic_or_filter) for pattern in allowed)
    return any(filter_covers(pattern, topic_or_filter) for pattern in allowed)


def mosquitto_acl_file(server_idents: Iterable[str], rules: Iterable[AclRule] = ACL_RULES) -> str:
    """The Mosquitto ``acl_file`` for ``rules``.

    Mosquitto cannot see the certificate kind, only the CN it uses as the username: rules for
    pumps become ``pattern`` lines (which apply to every client, with ``%u`` substituted) and
    rules for the server become ``topic`` lines under a ``user`` line per server id. The ids in
    the pattern lines never collide with a server's, because pump and server ids come from one
    CA namespace. Raises ``pumpguard.pki.InvalidIdentError`` for an id that is not one.
    """
    rules = tuple(rules)
    lines = ["# pumpguard MQTT ACL, generated from pumpguard.transport.topics.ACL_RULES", ""]
    for rule in rules:
        if rule.kind is CertKind.PUMP:
            lines.append(f"pattern {rule.access.value} {rule.pattern}")
    for ident in server_idents:
        validate_ident(ident)  # a newline in an id would smuggle in ACL lines
        lines += ["", f"user {ident}"]
        for rule in rules:
            if rule.kind is CertKind.SERVER:
                lines.append(f"topic {rule.access.value} {rule.pattern}")
    return "\n".join(lines) + "\n"
