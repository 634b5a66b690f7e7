"""The embedded MQTT 5 broker: small, strict, and no weaker than the production configuration.

Each connection is accepted as plain TCP and upgraded to TLS by hand, so that a failed
handshake is seen here and classified (no client certificate, unknown CA, expired, revoked,
...) into a security event instead of vanishing inside asyncio. The peer's identity is read
from its verified certificate; the CONNECT client id and user name must be that identity or
empty. Every PUBLISH and SUBSCRIBE then goes through the ``Gatekeeper`` (topic ACL, payload
schema, payload identity), the same one the in-memory bus uses.

Delivery is end to end: a QoS 1 PUBLISH is acknowledged to its publisher only after every
matching subscriber acknowledged its copy, and the publisher receives the worst subscriber
reason code (0x10 No matching subscribers when nobody was listening). The broker therefore
keeps no session state and no message store, yet a device's outbox never drops a message the
server did not take. What is not offered is advertised in CONNACK (section 3.2.2.3): QoS 2,
retained messages, topic aliases, shared subscriptions, subscription identifiers, wills.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from pumpguard.clock import Clock, SystemClock
from pumpguard.pki import (
    PeerIdentity,
    PkiError,
    PkiEvent,
    peer_identity,
    reload_crl,
    tls_configuration_problems,
    tls_failure_event,
)
from pumpguard.security_events import Component, SecurityEvent, SecurityEventSink, Severity
from pumpguard.transport.codec import (
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PacketDecoder,
    PacketError,
    PingReq,
    PingResp,
    Properties,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    encode_packet,
)
from pumpguard.transport.codes import QoS, ReasonCode, TransportEvent
from pumpguard.transport.policy import Gatekeeper
from pumpguard.transport.topics import topic_matches

__all__ = ["Broker", "BrokerLimits"]

_READ_CHUNK = 65_536


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """What the broker tolerates; sizes in bytes, times in seconds.

    ``max_connections`` bounds the sockets open at once, handshakes in progress included, so a
    flood of half-open TLS connections cannot exhaust memory and file descriptors.
    """

    max_connections: int = 20_000
    max_packet_size: int = 65_536
    receive_maximum: int = 256
    max_keep_alive_s: int = 300
    handshake_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    delivery_timeout_s: float = 30.0


@dataclass(eq=False)
class _Client:
    identity: PeerIdentity
    peer: str
    writer: asyncio.StreamWriter
    certificate: x509.Certificate
    receive_maximum: int
    max_packet_size: int
    subscriptions: dict[str, QoS] = field(default_factory=dict)
    no_local: set[str] = field(default_factory=set)
    inflight: dict[int, asyncio.Future[ReasonCode]] = field(default_factory=dict)
    inbound: int = 0
    next_id: int = 0
    closed: bool = False
    window: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.window = asyncio.Semaphore(self.receive_maximum)

    def allocate_id(self) -> int:
        for _ in range(0xFFFF):
            self.next_id = self.next_id % 0xFFFF + 1
            if self.next_id not in self.inflight:
                return self.next_id
        raise RuntimeError("no free packet identifier")  # unreachable below receive_maximum

    def send(self, packet: Packet) -> None:
        if not self.closed:
            self.writer.write(encode_packet(packet))


class _Disconnect(Exception):
    def __init__(self, reason: ReasonCode, why: str) -> None:
        super().__init__(why)
        self.reason = reason


class Broker:
    """An asyncio MQTT 5 broker over mutual TLS; see the module docstring."""

    def __init__(
        self,
        tls: ssl.SSLContext,
        events: SecurityEventSink,
        *,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        port: int = 8883,
        limits: BrokerLimits | None = None,
    ) -> None:
        _check_context(tls)
        self._tls = tls
        self._events = events
        self._clock = clock or SystemClock()
        self._gate = Gatekeeper(events, self._clock)
        self._host = host
        self._port = port
        self._limits = limits or BrokerLimits()
        self._server: asyncio.Server | None = None
        self._clients: dict[str, _Client] = {}
        self._exact: dict[str, dict[_Client, QoS]] = {}
        self._wild: dict[str, dict[_Client, QoS]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._open_sockets = 0

    # -- life cycle -----------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self._host, self._port, limit=_READ_CHUNK, backlog=4096
        )

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the broker is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connected(self) -> frozenset[str]:
        return frozenset(self._clients)

    def replace_tls_context(self, tls: ssl.SSLContext) -> None:
        """Use ``tls`` for every handshake from now on (a new certificate or CRL)."""
        _check_context(tls)
        self._tls = tls

    def apply_crl(self, crl: Path) -> list[str]:
        """Check every next handshake against ``crl`` and end the sessions it revokes.

        Reloading a CRL into the TLS context alone would leave a stolen pump's open session
        running until it reconnects; this ends it now (DISCONNECT 0x98 Administrative action,
        ``transport.session_revoked``). Returns the ids whose sessions were ended.
        """
        reload_crl(self._tls, crl)
        try:
            revocations = x509.load_pem_x509_crl(crl.read_bytes())
        except (OSError, ValueError) as exc:
            raise PkiError(f"cannot read CRL {crl}: {exc}") from None
        ended: list[str] = []
        for client in list(self._clients.values()):
            cert = client.certificate
            if cert.issuer != revocations.issuer:
                continue
            if revocations.get_revoked_certificate_by_serial_number(cert.serial_number) is None:
                continue
            self._gate.report(
                TransportEvent.SESSION_REVOKED,
                f"ended the session of {client.identity}: certificate "
                f"{cert.serial_number:X} is revoked",
                identity=client.identity,
                peer=client.peer,
                serial=format(cert.serial_number, "X"),
            )
            client.send(Disconnect(ReasonCode.ADMINISTRATIVE_ACTION))
            self._drop(client)
            ended.append(client.identity.ident)
        return ended

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for client in list(self._clients.values()):
            client.send(Disconnect(ReasonCode.SERVER_SHUTTING_DOWN))
            self._drop(client)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Broker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- connection -----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._open_sockets += 1
        try:
            if self._open_sockets > self._limits.max_connections:
                address = writer.get_extra_info("peername")
                self._gate.report(
                    TransportEvent.CONNECTION_LIMIT,
                    f"refused a connection: {self._limits.max_connections} already open",
                    peer=f"{address[0]}:{address[1]}" if isinstance(address, tuple) else None,
                )
                return
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            # ``stop`` cancels every connection. This task is the stream server's
            # client_connected_cb, and Python 3.11's asyncio logs a cancelled one as an
            # "Exception in callback" with a traceback (3.12 checks ``cancelled()`` first),
            # so the connection ends here, quietly, as an ordinary return.
            return
        finally:
            self._open_sockets -= 1
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            # a connection cancelled mid-handshake never reports closed: do not wait forever
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername")
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        limits = self._limits
        try:
            await writer.start_tls(self._tls, ssl_handshake_timeout=limits.handshake_timeout_s)
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            self._events.emit(
                tls_failure_event(
                    exc, time_ms=self._clock.now_ms(), component=Component.TRANSPORT, peer=peer
                )
            )
            return
        ssl_object = writer.get_extra_info("ssl_object")
        try:
            identity = peer_identity(ssl_object)
        except PkiError as exc:
            self._events.emit(
                SecurityEvent(
                    time_ms=self._clock.now_ms(),
                    component=Component.TRANSPORT,
                    code=PkiEvent.PEER_BAD_IDENTITY,
                    severity=Severity.HIGH,
                    message=f"peer certificate names no pumpguard identity: {exc}",
                    peer=peer,
                )
            )
            return
        certificate = x509.load_der_x509_certificate(ssl_object.getpeercert(binary_form=True))
        decoder = PacketDecoder(limits.max_packet_size)
        try:
            opening = await self._read_connect(reader, writer, decoder, identity, peer)
        except (_Disconnect, PacketError, ConnectionError, ssl.SSLError):
            return
        if opening is None:
            return
        connect, early = opening
        client = self._admit(connect, identity, peer, writer, certificate)
        keep_alive = min(connect.keep_alive or limits.max_keep_alive_s, limits.max_keep_alive_s)
        try:
            await self._session(client, reader, decoder, keep_alive, early)
        finally:
            self._drop(client)

    async def _read_connect(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        decoder: PacketDecoder,
        identity: PeerIdentity,
        peer: str,
    ) -> tuple[Connect, Iterator[Packet]] | None:
        """The CONNECT, and any packets the client sent right behind it (3.1.4 allows that)."""
        first: Packet | None = None
        rest: Iterator[Packet] = iter(())
        timeout = self._limits.connect_timeout_s
        try:
            async with asyncio.timeout(timeout):
                while first is None:
                    data = await reader.read(_READ_CHUNK)
                    if not data:
                        return None
                    rest = decoder.feed(data)
                    first = next(rest, None)
        except TimeoutError:
            self._gate.report(
                TransportEvent.PROTOCOL_VIOLATION,
                f"no CONNECT within {timeout:g} s of the TLS handshake",
                identity=identity,
                peer=peer,
            )
            return None
        except PacketError as exc:
            self._report_packet_error(exc, identity, peer)
            writer.write(encode_packet(ConnAck(exc.reason)))
            return None
        if not isinstance(first, Connect):
            why = "the first packet must be CONNECT"
            self._gate.report(TransportEvent.PROTOCOL_VIOLATION, why, identity=identity, peer=peer)
            writer.write(encode_packet(ConnAck(ReasonCode.PROTOCOL_ERROR)))
            return None
        verdict = self._gate.check_client_id(identity, first.client_id, first.username, peer)
        refusal: ReasonCode | None = None if verdict.allowed else verdict.reason
        text = verdict.explanation
        if refusal is None and first.will is not None:
            refusal, text = ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR, "wills are not offered"
        if refusal is None and first.properties.authentication_method is not None:
            refusal = ReasonCode.BAD_AUTHENTICATION_METHOD
            text = "authentication is by client certificate only"
        if refusal is not None:
            writer.write(encode_packet(ConnAck(refusal, properties=Properties(reason_string=text))))
            await _drain(writer)
            return None
        return first, rest

    def _admit(
        self,
        connect: Connect,
        identity: PeerIdentity,
        peer: str,
        writer: asyncio.StreamWriter,
        certificate: x509.Certificate,
    ) -> _Client:
        limits = self._limits
        old = self._clients.get(identity.ident)
        if old is not None:
            self._gate.report(
                TransportEvent.SESSION_TAKEN_OVER,
                f"a second connection for {identity} replaced the one from {old.peer}",
                identity=identity,
                peer=peer,
                previous_peer=old.peer,
            )
            old.send(Disconnect(ReasonCode.SESSION_TAKEN_OVER))
            self._drop(old)
        props = connect.properties
        client = _Client(
            identity=identity,
            peer=peer,
            writer=writer,
            certificate=certificate,
            receive_maximum=props.receive_maximum or 65_535,
            max_packet_size=props.maximum_packet_size or limits.max_packet_size,
        )
        self._clients[identity.ident] = client
        keep_alive = connect.keep_alive
        server_keep_alive = (
            limits.max_keep_alive_s
            if keep_alive == 0 or keep_alive > limits.max_keep_alive_s
            else None
        )
        client.send(
            ConnAck(
                ReasonCode.SUCCESS,
                session_present=False,
                properties=Properties(
                    session_expiry_interval=0
                    if props.session_expiry_interval not in (None, 0)
                    else None,
                    assigned_client_identifier=identity.ident if not connect.client_id else None,
                    server_keep_alive=server_keep_alive,
                    receive_maximum=limits.receive_maximum,
                    maximum_qos=1,
                    retain_available=0,
                    maximum_packet_size=limits.max_packet_size,
                    wildcard_subscription_available=1,
                    subscription_identifier_available=0,
                    shared_subscription_available=0,
                ),
            )
        )
        return client

    async def _session(
        self,
        client: _Client,
        reader: asyncio.StreamReader,
        decoder: PacketDecoder,
        keep_alive: int,
        early: Iterator[Packet],
    ) -> None:
        try:
            for packet in early:
                if not await self._handle(client, packet):
                    return
            while not client.closed:
                async with asyncio.timeout(keep_alive * 1.5):
                    data = await reader.read(_READ_CHUNK)
                if not data:
                    return
                for packet in decoder.feed(data):
                    if not await self._handle(client, packet):
                        return
                await _drain(client.writer)
        except PacketError as exc:
            self._report_packet_error(exc, client.identity, client.peer)
            client.send(Disconnect(exc.reason, Properties(reason_string=str(exc)[:200])))
        except _Disconnect as exc:
            client.send(Disconnect(exc.reason, Properties(reason_string=str(exc)[:200])))
        except TimeoutError:
            client.send(Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT))
        except (ConnectionError, ssl.SSLError):
            return
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await _drain(client.writer)

    def _report_packet_error(self, exc: PacketError, identity: PeerIdentity, peer: str) -> None:
        code = (
            TransportEvent.MALFORMED_PACKET
            if exc.reason is ReasonCode.MALFORMED_PACKET
            else TransportEvent.PROTOCOL_VIOLATION
        )
        self._gate.report(
            code,
            f"disconnected with 0x{exc.reason:02X}: {exc}",
            identity=identity,
            peer=peer,
            reason_code=f"0x{exc.reason:02X}",
        )

    def _violation(self, client: _Client, reason: ReasonCode, why: str) -> _Disconnect:
        self._gate.report(
            TransportEvent.PROTOCOL_VIOLATION,
            f"disconnected with 0x{reason:02X}: {why}",
            identity=client.identity,
            peer=client.peer,
            reason_code=f"0x{reason:02X}",
        )
        return _Disconnect(reason, why)

    async def _handle(self, client: _Client, packet: Packet) -> bool:
        """Act on one packet; False ends the session."""
        match packet:
            case Publish():
                self._on_publish(client, packet)
            case PubAck():
                # an unknown id is a late answer to a delivery that already timed out
                future = client.inflight.pop(packet.packet_id, None)
                if future is not None and not future.done():
                    future.set_result(packet.reason)
            case Subscribe():
                self._on_subscribe(client, packet)
            case Unsubscribe():
                reasons = []
                for topic_filter in packet.topic_filters:
                    existed = self._unsubscribe(client, topic_filter)
                    reasons.append(
                        ReasonCode.SUCCESS if existed else ReasonCode.NO_SUBSCRIPTION_EXISTED
                    )
                client.send(UnsubAck(packet.packet_id, tuple(reasons)))
            case PingReq():
                client.send(PingResp())
            case Disconnect():
                return False
            case _:
                raise self._violation(
                    client,
                    ReasonCode.PROTOCOL_ERROR,
                    f"a client may not send {type(packet).__name__.upper()} here",
                )
        return True

    # -- publish --------------------------------------------------------------------------

    def _on_publish(self, client: _Client, packet: Publish) -> None:
        if packet.qos is QoS.EXACTLY_ONCE:
            raise self._violation(client, ReasonCode.QOS_NOT_SUPPORTED, "QoS 2 is not offered")
        if packet.retain:
            raise self._violation(
                client, ReasonCode.RETAIN_NOT_SUPPORTED, "retained messages are not offered"
            )
        if packet.properties.topic_alias is not None:
            raise self._violation(
                client, ReasonCode.TOPIC_ALIAS_INVALID, "topic aliases are not offered"
            )
        if packet.properties.subscription_identifiers:
            raise self._violation(
                client,
                ReasonCode.PROTOCOL_ERROR,
                "a client may not send a subscription identifier in PUBLISH",
            )
        verdict = self._gate.check_publish(
            client.identity, packet.topic, packet.payload, client.peer
        )
        if not verdict.allowed:
            if packet.qos is QoS.AT_MOST_ONCE:
                raise _Disconnect(verdict.reason, verdict.explanation)
            assert packet.packet_id is not None
            client.send(
                PubAck(
                    packet.packet_id,
                    verdict.reason,
                    Properties(reason_string=verdict.explanation[:200]),
                )
            )
            return
        if packet.qos is QoS.AT_MOST_ONCE:
            for target, granted in self._subscribers(client, packet.topic):
                self._spawn(self._forward(target, packet, granted))
            return
        if client.inbound >= self._limits.receive_maximum:
            raise self._violation(
                client,
                ReasonCode.RECEIVE_MAXIMUM_EXCEEDED,
                f"more than {self._limits.receive_maximum} QoS 1 messages unacknowledged",
            )
        client.inbound += 1
        self._spawn(self._route(client, packet))

    def _subscribers(self, source: _Client, topic: str) -> list[tuple[_Client, QoS]]:
        found: dict[_Client, QoS] = dict(self._exact.get(topic, {}))
        for topic_filter, subs in self._wild.items():
            if topic_matches(topic_filter, topic):
                for target, qos in subs.items():
                    if topic_filter in target.no_local and target is source:
                        continue
                    found[target] = max(found.get(target, qos), qos)
        if source in found and topic in source.no_local:
            del found[source]
        return list(found.items())

    async def _route(self, client: _Client, packet: Publish) -> None:
        assert packet.packet_id is not None
        try:
            targets = self._subscribers(client, packet.topic)
            if not targets:
                reason = ReasonCode.NO_MATCHING_SUBSCRIBERS
            else:
                results = await asyncio.gather(
                    *(self._forward(target, packet, granted) for target, granted in targets)
                )
                failures = [r for r in results if r.is_failure]
                reason = max(failures) if failures else ReasonCode.SUCCESS
            client.send(PubAck(packet.packet_id, reason))
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await _drain(client.writer)
        finally:
            client.inbound -= 1

    async def _forward(self, target: _Client, packet: Publish, granted: QoS) -> ReasonCode:
        qos = min(packet.qos, granted)
        if target.closed:
            return ReasonCode.UNSPECIFIED_ERROR
        if qos is QoS.AT_MOST_ONCE:
            out = Publish(packet.topic, packet.payload, QoS.AT_MOST_ONCE)
            if len(encode_packet(out)) <= target.max_packet_size:
                target.send(out)
            return ReasonCode.SUCCESS
        try:
            async with asyncio.timeout(self._limits.delivery_timeout_s), target.window:
                if target.closed:
                    return ReasonCode.UNSPECIFIED_ERROR
                packet_id = target.allocate_id()
                out = Publish(packet.topic, packet.payload, QoS.AT_LEAST_ONCE, packet_id)
                data = encode_packet(out)
                if len(data) > target.max_packet_size:
                    return ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR
                future: asyncio.Future[ReasonCode] = asyncio.get_running_loop().create_future()
                target.inflight[packet_id] = future
                target.writer.write(data)
                try:
                    return await future
                finally:
                    target.inflight.pop(packet_id, None)
        except TimeoutError:
            return ReasonCode.UNSPECIFIED_ERROR

    # -- subscribe ------------------------------------------------------------------------

    def _on_subscribe(self, client: _Client, packet: Subscribe) -> None:
        reasons: list[ReasonCode] = []
        for sub in packet.subscriptions:
            if packet.properties.subscription_identifiers:
                reasons.append(ReasonCode.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED)
                continue
            verdict = self._gate.check_subscribe(client.identity, sub.topic_filter, client.peer)
            if not verdict.allowed:
                reasons.append(verdict.reason)
                continue
            granted = QoS(min(sub.qos, QoS.AT_LEAST_ONCE))
            self._unsubscribe(client, sub.topic_filter)
            table = self._wild if _is_wild(sub.topic_filter) else self._exact
            table.setdefault(sub.topic_filter, {})[client] = granted
            client.subscriptions[sub.topic_filter] = granted
            if sub.no_local:
                client.no_local.add(sub.topic_filter)
            reasons.append(ReasonCode(granted))
        client.send(SubAck(packet.packet_id, tuple(reasons)))

    def _unsubscribe(self, client: _Client, topic_filter: str) -> bool:
        client.no_local.discard(topic_filter)
        if client.subscriptions.pop(topic_filter, None) is None:
            return False
        table = self._wild if _is_wild(topic_filter) else self._exact
        subs = table.get(topic_filter)
        if subs is not None:
            subs.pop(client, None)
            if not subs:
                del table[topic_filter]
        return True

    def _drop(self, client: _Client) -> None:
        if client.closed:
            return
        for topic_filter in list(client.subscriptions):
            self._unsubscribe(client, topic_filter)
        client.closed = True
        if self._clients.get(client.identity.ident) is client:
            del self._clients[client.identity.ident]
        for future in client.inflight.values():
            if not future.done():
                future.set_result(ReasonCode.UNSPECIFIED_ERROR)
        client.inflight.clear()
        client.writer.close()


def _check_context(tls: ssl.SSLContext) -> None:
    """The embedded broker is never weaker than production: refuse a context that is."""
    problems = tls_configuration_problems(tls)
    if tls.verify_mode != ssl.CERT_REQUIRED:
        problems.append("client certificates are not required (verify_mode is not CERT_REQUIRED)")
    if problems:
        raise ValueError("refusing a TLS context below the project policy: " + "; ".join(problems))


def _is_wild(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


async def _drain(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if transport.is_closing():
        return
    if transport.get_write_buffer_size() > 256 * 1024:
        await writer.drain()
