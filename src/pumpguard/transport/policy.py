"""The checks every pumpguard broker makes, in one place: the embedded MQTT broker and the
in-memory bus both ask a ``Gatekeeper``, so virtual-time runs enforce exactly what production
enforces, and every refusal becomes a security event through the same code path.

On top of the topic ACL, the gatekeeper reads the payload of every publish on a device topic:
a message whose kind does not belong on the channel, or whose ``device_id`` is not the
publisher's certificate identity, is refused. The topic ACL alone would let a pump put another
pump's id inside a message on its own topic; the server would then file it under the victim.
"""

from __future__ import annotations

from dataclasses import dataclass

from pumpguard.clock import Clock
from pumpguard.pki import CertKind, PeerIdentity
from pumpguard.security_events import Component, SecurityEvent, SecurityEventSink, Severity
from pumpguard.transport.codes import ReasonCode, TransportEvent
from pumpguard.transport.messages import (
    CommandMessage,
    MessageError,
    channel_for,
    decode_message,
)
from pumpguard.transport.topics import (
    ACL_RULES,
    Access,
    AclRule,
    acl_allows,
    parse_device_topic,
    validate_topic_filter,
    validate_topic_name,
)

__all__ = ["Gatekeeper", "Verdict"]

_SEVERITY: dict[TransportEvent, Severity] = {
    TransportEvent.IDENTITY_MISMATCH: Severity.HIGH,
    TransportEvent.ACL_PUBLISH_DENIED: Severity.HIGH,
    TransportEvent.ACL_SUBSCRIBE_DENIED: Severity.HIGH,
    TransportEvent.PAYLOAD_SPOOFED: Severity.HIGH,
    TransportEvent.MALFORMED_PACKET: Severity.MEDIUM,
    TransportEvent.PROTOCOL_VIOLATION: Severity.MEDIUM,
    TransportEvent.PAYLOAD_INVALID: Severity.MEDIUM,
    TransportEvent.SESSION_TAKEN_OVER: Severity.LOW,
    TransportEvent.SESSION_REVOKED: Severity.HIGH,
    TransportEvent.CONNECTION_LIMIT: Severity.HIGH,
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one check: ``reason`` is SUCCESS or the MQTT reason code to refuse with."""

    reason: ReasonCode
    explanation: str = ""

    @property
    def allowed(self) -> bool:
        return not self.reason.is_failure


_OK = Verdict(ReasonCode.SUCCESS)


class Gatekeeper:
    """Authorises publishes and subscriptions and reports every refusal."""

    def __init__(
        self,
        sink: SecurityEventSink,
        clock: Clock,
        rules: tuple[AclRule, ...] = ACL_RULES,
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._rules = rules

    def report(
        self,
        code: TransportEvent,
        message: str,
        *,
        identity: PeerIdentity | None = None,
        peer: str | None = None,
        **attributes: str,
    ) -> None:
        device_id = identity.ident if identity and identity.kind is CertKind.PUMP else None
        self._sink.emit(
            SecurityEvent(
                time_ms=self._clock.now_ms(),
                component=Component.TRANSPORT,
                code=code,
                severity=_SEVERITY.get(code, Severity.MEDIUM),
                message=message,
                device_id=device_id,
                peer=peer if peer is not None else (str(identity) if identity else None),
                attributes=attributes,
            )
        )

    def check_client_id(
        self, identity: PeerIdentity, client_id: str, username: str | None, peer: str
    ) -> Verdict:
        """CONNECT: the client id and user name, when given, must be the certificate's id."""
        for label, claimed in (("client id", client_id), ("user name", username)):
            if claimed and claimed != identity.ident:
                text = (
                    f"{label} {claimed!r} does not match the certificate identity "
                    f"{identity.ident!r}"
                )
                self.report(
                    TransportEvent.IDENTITY_MISMATCH,
                    text,
                    identity=identity,
                    peer=peer,
                    claimed=claimed,
                    field=label,
                )
                return Verdict(ReasonCode.NOT_AUTHORIZED, text)
        return _OK

    def check_publish(
        self, identity: PeerIdentity, topic: str, payload: bytes, peer: str | None = None
    ) -> Verdict:
        problem = validate_topic_name(topic)
        if problem is not None:
            self.report(
                TransportEvent.PROTOCOL_VIOLATION,
                f"publish refused: {problem}",
                identity=identity,
                peer=peer,
                topic=topic[:200],
            )
            return Verdict(ReasonCode.TOPIC_NAME_INVALID, problem)
        if not self._allowed(identity, Access.WRITE, topic):
            text = f"{identity} may not publish to {topic!r}"
            self.report(
                TransportEvent.ACL_PUBLISH_DENIED, text, identity=identity, peer=peer, topic=topic
            )
            return Verdict(ReasonCode.NOT_AUTHORIZED, text)
        return self._check_payload(identity, topic, payload, peer)

    def check_subscribe(
        self, identity: PeerIdentity, topic_filter: str, peer: str | None = None
    ) -> Verdict:
        problem = validate_topic_filter(topic_filter)
        if topic_filter.startswith("$share/"):
            problem = "shared subscriptions are not offered"
            self.report(
                TransportEvent.PROTOCOL_VIOLATION,
                f"subscribe refused: {problem}",
                identity=identity,
                peer=peer,
                topic_filter=topic_filter[:200],
            )
            return Verdict(ReasonCode.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED, problem)
        if problem is not None:
            self.report(
                TransportEvent.PROTOCOL_VIOLATION,
                f"subscribe refused: {problem}",
                identity=identity,
                peer=peer,
                topic_filter=topic_filter[:200],
            )
            return Verdict(ReasonCode.TOPIC_FILTER_INVALID, problem)
        if not self._allowed(identity, Access.READ, topic_filter):
            text = f"{identity} may not subscribe to {topic_filter!r}"
            self.report(
                TransportEvent.ACL_SUBSCRIBE_DENIED,
                text,
                identity=identity,
                peer=peer,
                topic_filter=topic_filter,
            )
            return Verdict(ReasonCode.NOT_AUTHORIZED, text)
        return _OK

    def check_received(self, topic: str, payload: bytes) -> Verdict:
        """The payload check for a server behind Mosquitto, which does not read payloads.

        Mosquitto's ACL already tied the topic's device id to the publisher's certificate CN,
        so a message received on a device topic must name that device, belong on that channel
        and be a valid message, exactly what the embedded broker checks before forwarding.
        """
        target = parse_device_topic(topic)
        if target is None or not target.channel.from_device:
            text = f"{topic!r} is not a device-to-server topic"
            self.report(TransportEvent.PAYLOAD_INVALID, text, topic=topic[:200])
            return Verdict(ReasonCode.TOPIC_NAME_INVALID, text)
        publisher = PeerIdentity(CertKind.PUMP, target.device_id)
        return self._check_payload(publisher, topic, payload, None)

    def _allowed(self, identity: PeerIdentity, access: Access, topic: str) -> bool:
        return acl_allows(identity, access, topic, self._rules)

    def _check_payload(
        self, identity: PeerIdentity, topic: str, payload: bytes, peer: str | None
    ) -> Verdict:
        target = parse_device_topic(topic)
        if target is None:
            return _OK
        try:
            message = decode_message(payload)
        except MessageError as exc:
            text = f"payload on {topic!r} refused: {exc}"
            self.report(
                TransportEvent.PAYLOAD_INVALID,
                text,
                identity=identity,
                peer=peer,
                topic=topic,
                error=exc.code.value,
            )
            return Verdict(ReasonCode.PAYLOAD_FORMAT_INVALID, text)
        if channel_for(message.kind) is not target.channel:
            text = f"a {message.kind.value} message does not belong on {topic!r}"
            self.report(
                TransportEvent.PAYLOAD_INVALID,
                text,
                identity=identity,
                peer=peer,
                topic=topic,
                error="wrong-channel",
            )
            return Verdict(ReasonCode.PAYLOAD_FORMAT_INVALID, text)
        if message.device_id != target.device_id:
            from_device = not isinstance(message, CommandMessage)
            code = TransportEvent.PAYLOAD_SPOOFED if from_device else TransportEvent.PAYLOAD_INVALID
            text = (
                f"message names device {message.device_id!r} but was published on the topic "
                f"of {target.device_id!r} by {identity}"
            )
            self.report(
                code,
                text,
                identity=identity,
                peer=peer,
                topic=topic,
                claimed=message.device_id,
            )
            reason = ReasonCode.NOT_AUTHORIZED if from_device else ReasonCode.PAYLOAD_FORMAT_INVALID
            return Verdict(reason, text)
        return _OK
