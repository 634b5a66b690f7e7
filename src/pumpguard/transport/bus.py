"""The in-memory bus: the broker's semantics without sockets, for virtual time.

The lab runs hundreds of pumps for simulated days in seconds; it needs the same answers the
embedded broker gives (ACL refusals, payload identity checks, end-to-end acknowledgement,
session take-over) and the same security events, but no TLS and no real time. A ``Bus`` hands
out ``BusSession`` objects implementing ``Session``; it asks the same ``Gatekeeper`` the broker
asks. What TLS decides on the wire (no certificate, a revoked one) is modelled by connecting
with no identity or after ``revoke``: the bus then refuses with the same PKI event codes.

Delivery is synchronous within ``publish``: every subscriber's handler has run when it returns,
in subscription order, so a run is exactly reproducible. A session dropped while its message
was being delivered gets ``NotConnectedError`` instead of the PUBACK, as over a real network,
so the lab reproduces the resend-and-de-duplicate path.
"""

from __future__ import annotations

import asyncio

from pumpguard.clock import Clock
from pumpguard.pki import PeerIdentity, PkiEvent
from pumpguard.security_events import Component, SecurityEvent, SecurityEventSink, Severity
from pumpguard.transport.codes import QoS, ReasonCode, TransportEvent
from pumpguard.transport.policy import Gatekeeper
from pumpguard.transport.session import (
    ConnectRefusedError,
    Delivery,
    MessageHandler,
    NotConnectedError,
)
from pumpguard.transport.topics import ACL_RULES, AclRule, topic_matches

__all__ = ["Bus", "BusSession"]


class BusSession:
    """One party's connection to the bus; implements ``pumpguard.transport.Session``."""

    def __init__(self, bus: Bus, identity: PeerIdentity, on_message: MessageHandler | None):
        self._bus = bus
        self._identity = identity
        self._on_message = on_message
        self._subscriptions: dict[str, QoS] = {}
        self._open = True
        self._closed = asyncio.Event()
        self.disconnect_reason: ReasonCode | None = None

    @property
    def identity(self) -> PeerIdentity:
        return self._identity

    @property
    def connected(self) -> bool:
        return self._open

    def _require_open(self) -> None:
        if not self._open:
            raise NotConnectedError(f"{self._identity} is not connected to the bus")

    async def publish(self, topic: str, payload: bytes, qos: QoS = QoS.AT_LEAST_ONCE) -> ReasonCode:
        self._require_open()
        if qos is QoS.EXACTLY_ONCE:
            raise ValueError("QoS 2 is not offered by pumpguard brokers")
        verdict = self._bus.gate.check_publish(self._identity, topic, payload)
        if not verdict.allowed:
            if qos is QoS.AT_MOST_ONCE:
                self.terminate(verdict.reason)
            return verdict.reason
        reason = await self._bus.deliver(self, topic, payload, qos)
        if not self._open:
            raise NotConnectedError(f"{self._identity} lost its connection before the PUBACK")
        return reason

    async def subscribe(self, topic_filter: str, qos: QoS = QoS.AT_LEAST_ONCE) -> ReasonCode:
        self._require_open()
        if self._on_message is None:
            raise ValueError("a session that subscribes needs an on_message handler")
        verdict = self._bus.gate.check_subscribe(self._identity, topic_filter)
        if not verdict.allowed:
            return verdict.reason
        granted = QoS(min(qos, QoS.AT_LEAST_ONCE))
        self._subscriptions[topic_filter] = granted
        return ReasonCode(granted)

    async def unsubscribe(self, topic_filter: str) -> ReasonCode:
        self._require_open()
        if self._subscriptions.pop(topic_filter, None) is None:
            return ReasonCode.NO_SUBSCRIPTION_EXISTED
        return ReasonCode.SUCCESS

    async def close(self) -> None:
        self.terminate(None)

    def drop(self) -> None:
        """The network fails under this session: no DISCONNECT, the session just ends."""
        self.terminate(None)

    async def wait_closed(self) -> ReasonCode | None:
        await self._closed.wait()
        return self.disconnect_reason

    def terminate(self, reason: ReasonCode | None) -> None:
        if self._open:
            self._open = False
            self._closed.set()
            self.disconnect_reason = reason
            self._subscriptions.clear()
            self._bus.forget(self)

    def granted(self, topic: str) -> QoS | None:
        best: QoS | None = None
        for topic_filter, qos in self._subscriptions.items():
            if topic_matches(topic_filter, topic) and (best is None or qos > best):
                best = qos
        return best

    async def receive(self, delivery: Delivery) -> ReasonCode:
        assert self._on_message is not None
        return await self._on_message(delivery)


class Bus:
    """A broker in memory; see the module docstring."""

    def __init__(
        self,
        clock: Clock,
        events: SecurityEventSink,
        rules: tuple[AclRule, ...] = ACL_RULES,
    ) -> None:
        self._clock = clock
        self._events = events
        self.gate = Gatekeeper(events, clock, rules)
        self._sessions: dict[str, BusSession] = {}
        self._revoked: set[str] = set()

    @property
    def connected(self) -> frozenset[str]:
        return frozenset(self._sessions)

    def revoke(self, ident: str) -> None:
        """From now on ``ident`` fails the (modelled) TLS handshake; a live session ends."""
        self._revoked.add(ident)
        session = self._sessions.get(ident)
        if session is not None:
            session.drop()

    def connect(
        self,
        identity: PeerIdentity | None,
        *,
        client_id: str = "",
        on_message: MessageHandler | None = None,
    ) -> BusSession:
        """Open a session for the holder of ``identity``'s certificate (None: no certificate)."""
        if identity is None or identity.ident in self._revoked:
            code = PkiEvent.TLS_NO_CLIENT_CERT if identity is None else PkiEvent.TLS_CERT_REVOKED
            what = "no client certificate" if identity is None else "certificate revoked"
            self._events.emit(
                SecurityEvent(
                    time_ms=self._clock.now_ms(),
                    component=Component.TRANSPORT,
                    code=code,
                    severity=Severity.HIGH if identity else Severity.MEDIUM,
                    message=f"TLS handshake refused ({code.value}): {what}",
                    peer=str(identity) if identity else None,
                )
            )
            raise ConnectRefusedError(ReasonCode.NOT_AUTHORIZED, what)
        verdict = self.gate.check_client_id(identity, client_id, None, "bus")
        if not verdict.allowed:
            raise ConnectRefusedError(verdict.reason, verdict.explanation)
        old = self._sessions.get(identity.ident)
        if old is not None:
            self.gate.report(
                TransportEvent.SESSION_TAKEN_OVER,
                f"a second connection for {identity} replaced the first",
                identity=identity,
            )
            old.terminate(ReasonCode.SESSION_TAKEN_OVER)
        session = BusSession(self, identity, on_message)
        self._sessions[identity.ident] = session
        return session

    def forget(self, session: BusSession) -> None:
        if self._sessions.get(session.identity.ident) is session:
            del self._sessions[session.identity.ident]

    async def deliver(self, source: BusSession, topic: str, payload: bytes, qos: QoS) -> ReasonCode:
        """Hand a checked message to every subscriber; the worst of their answers."""
        reached = False
        worst = ReasonCode.SUCCESS
        for session in list(self._sessions.values()):
            granted = session.granted(topic)
            if granted is None or not session.connected:
                continue
            reached = True
            effective = QoS(min(qos, granted))
            reason = await session.receive(Delivery(topic, payload, effective))
            if effective is QoS.AT_LEAST_ONCE and reason.is_failure:
                worst = max(worst, reason)
        if qos is QoS.AT_MOST_ONCE:
            return ReasonCode.SUCCESS
        if not reached:
            return ReasonCode.NO_MATCHING_SUBSCRIBERS
        return worst
