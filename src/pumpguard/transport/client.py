"""An asyncio MQTT 5 client over mutual TLS, light enough for thousands per event loop.

A connection is two tasks (reader, keep-alive) and a few futures, with no thread of its own:
``pumpguard bench server`` holds 5,000 simulated pumps in one process this way, which a
thread-per-client library cannot. Handlers return the reason code their PUBACK carries, so a
subscriber decides whether a message was taken (see ``pumpguard.transport.session``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Coroutine
from typing import Any

from pumpguard.clock import Clock, SystemClock
from pumpguard.pki import PeerIdentity, tls_failure_event
from pumpguard.security_events import Component, SecurityEventSink
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
    Subscription,
    UnsubAck,
    Unsubscribe,
    encode_packet,
)
from pumpguard.transport.codes import QoS, ReasonCode
from pumpguard.transport.session import (
    ConnectRefusedError,
    Delivery,
    MessageHandler,
    NotConnectedError,
)

__all__ = ["MqttClient"]

_READ_CHUNK = 65_536
_log = logging.getLogger(__name__)
_CLIENT_RECEIVE_MAXIMUM = 1024
_CLIENT_MAX_PACKET = 65_536


class MqttClient:
    """One MQTT 5 connection authenticated by the certificate in ``tls``.

    The client id is the certificate identity; the broker refuses any other. ``events``, when
    given, receives a security event when the TLS handshake fails: the broker's certificate
    did not verify (a rogue broker), or a TLS 1.2 broker refused ours with an alert. Over TLS
    1.3 a refusal of our certificate reaches asyncio as a plain end of stream, which cannot be
    told from a broker going away, so it raises ``ConnectionResetError`` without an event.

    ``session_expiry_s`` > 0 asks for a persistent session (Clean Start 0, Session Expiry
    Interval, section 3.1.2.11.2): a broker that keeps sessions (Mosquitto) then queues QoS 1
    messages for this client while it is away and delivers them, with its subscriptions,
    when it reconnects. The embedded broker keeps none and answers Session Expiry 0.

    ``connect`` raises ``OSError`` subclasses only (``ssl.SSLError``, ``ConnectionError``,
    ``ConnectRefusedError``, ``TimeoutError``), so a reconnect loop catches one family.
    """

    def __init__(
        self,
        host: str,
        port: int,
        tls: ssl.SSLContext,
        identity: PeerIdentity,
        *,
        on_message: MessageHandler | None = None,
        keep_alive_s: int = 60,
        session_expiry_s: int = 0,
        server_hostname: str | None = None,
        connect_timeout_s: float = 10.0,
        events: SecurityEventSink | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._tls = tls
        self._identity = identity
        self._on_message = on_message
        self._keep_alive = keep_alive_s
        if not 0 <= session_expiry_s <= 0xFFFFFFFF:
            raise ValueError("session_expiry_s must fit a four byte integer")
        self._session_expiry = session_expiry_s
        self._server_hostname = server_hostname if server_hostname is not None else host
        self._connect_timeout = connect_timeout_s
        self._events = events
        self._clock = clock or SystemClock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = PacketDecoder(_CLIENT_MAX_PACKET)
        self._pending: dict[int, asyncio.Future[Packet]] = {}
        self._next_id = 0
        self._window = asyncio.Semaphore(65_535)
        self._max_packet = 268_435_460
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = asyncio.Event()
        self._closed.set()
        self._disconnect_reason: ReasonCode | None = None
        self._last_heard = 0.0
        self._early: list[Packet] = []

    # -- Session --------------------------------------------------------------------------

    @property
    def identity(self) -> PeerIdentity:
        return self._identity

    @property
    def connected(self) -> bool:
        return not self._closed.is_set()

    @property
    def disconnect_reason(self) -> ReasonCode | None:
        """The reason code of the broker's DISCONNECT, if the broker ended the session."""
        return self._disconnect_reason

    async def connect(self) -> ConnAck:
        if self.connected:
            raise RuntimeError("already connected")
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self._host,
                    self._port,
                    ssl=self._tls,
                    server_hostname=self._server_hostname,
                    limit=_READ_CHUNK,
                )
                self._decoder = PacketDecoder(_CLIENT_MAX_PACKET)
                connect = Connect(
                    client_id=self._identity.ident,
                    keep_alive=self._keep_alive,
                    clean_start=self._session_expiry == 0,
                    properties=Properties(
                        session_expiry_interval=self._session_expiry or None,
                        receive_maximum=_CLIENT_RECEIVE_MAXIMUM,
                        maximum_packet_size=_CLIENT_MAX_PACKET,
                    ),
                )
                writer.write(encode_packet(connect))
                await writer.drain()
                connack = await self._read_connack(reader, writer)
        except BaseException as exc:
            if writer is not None:
                writer.close()
            if isinstance(exc, PacketError):
                raise ConnectionError(f"the broker's answer is malformed: {exc}") from None
            if not isinstance(exc, ssl.SSLError) or self._events is None:
                raise
            peer = f"{self._host}:{self._port}"
            self._events.emit(
                tls_failure_event(
                    exc,
                    time_ms=self._clock.now_ms(),
                    component=Component.TRANSPORT,
                    peer=peer,
                    device_id=self._identity.ident,
                )
            )
            raise
        props = connack.properties
        self._window = asyncio.Semaphore(props.receive_maximum or 65_535)
        self._max_packet = props.maximum_packet_size or self._max_packet
        if props.server_keep_alive is not None:
            self._keep_alive = props.server_keep_alive
        self._reader, self._writer = reader, writer
        self._disconnect_reason = None
        self._closed.clear()
        self._last_heard = asyncio.get_running_loop().time()
        early, self._early = self._early, []
        self._spawn(self._read_loop(early))
        if self._keep_alive:
            self._spawn(self._ping_loop())
        return connack

    async def _read_connack(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> ConnAck:
        while True:
            data = await reader.read(_READ_CHUNK)
            if not data:
                writer.close()
                raise ConnectionResetError("the broker closed the connection before CONNACK")
            packets = list(self._decoder.feed(data))
            if not packets:
                continue
            first = packets[0]
            if not isinstance(first, ConnAck):
                writer.close()
                raise ConnectionError(f"expected CONNACK, got {type(first).__name__}")
            if first.reason.is_failure:
                writer.close()
                raise ConnectRefusedError(first.reason, first.properties.reason_string)
            self._early = packets[1:]
            return first

    async def publish(self, topic: str, payload: bytes, qos: QoS = QoS.AT_LEAST_ONCE) -> ReasonCode:
        if qos is QoS.EXACTLY_ONCE:
            raise ValueError("QoS 2 is not offered by pumpguard brokers")
        if qos is QoS.AT_MOST_ONCE:
            self._send(Publish(topic, payload, QoS.AT_MOST_ONCE))
            return ReasonCode.SUCCESS
        async with self._window:
            packet_id, future = self._register()
            self._send(Publish(topic, payload, QoS.AT_LEAST_ONCE, packet_id))
            ack = await self._await(packet_id, future)
        assert isinstance(ack, PubAck)
        return ack.reason

    async def subscribe(self, topic_filter: str, qos: QoS = QoS.AT_LEAST_ONCE) -> ReasonCode:
        if self._on_message is None:
            raise ValueError("a client that subscribes needs an on_message handler")
        packet_id, future = self._register()
        self._send(Subscribe(packet_id, (Subscription(topic_filter, qos),)))
        ack = await self._await(packet_id, future)
        assert isinstance(ack, SubAck)
        return ack.reasons[0]

    async def unsubscribe(self, topic_filter: str) -> ReasonCode:
        packet_id, future = self._register()
        self._send(Unsubscribe(packet_id, (topic_filter,)))
        ack = await self._await(packet_id, future)
        assert isinstance(ack, UnsubAck)
        return ack.reasons[0]

    async def close(self) -> None:
        if self.connected:
            with contextlib.suppress(NotConnectedError):
                self._send(Disconnect(ReasonCode.SUCCESS))
        await self._shutdown()

    async def wait_closed(self) -> ReasonCode | None:
        """Wait until the connection ends; the broker's DISCONNECT reason, if it sent one."""
        await self._closed.wait()
        return self._disconnect_reason

    # -- internals ------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send(self, packet: Packet) -> None:
        if not self.connected or self._writer is None:
            raise NotConnectedError(f"{self._identity} is not connected")
        data = encode_packet(packet)
        if len(data) > self._max_packet:
            raise ValueError(f"packet of {len(data)} bytes exceeds the broker's maximum")
        self._writer.write(data)

    def _register(self) -> tuple[int, asyncio.Future[Packet]]:
        if not self.connected:
            raise NotConnectedError(f"{self._identity} is not connected")
        for _ in range(0xFFFF):
            self._next_id = self._next_id % 0xFFFF + 1
            if self._next_id not in self._pending:
                future: asyncio.Future[Packet] = asyncio.get_running_loop().create_future()
                self._pending[self._next_id] = future
                return self._next_id, future
        raise RuntimeError("all 65535 packet identifiers are in use")

    async def _await(self, packet_id: int, future: asyncio.Future[Packet]) -> Packet:
        try:
            if self._writer is not None and self._writer.transport.get_write_buffer_size():
                await self._writer.drain()
            return await future
        except (ConnectionError, ssl.SSLError) as exc:
            raise NotConnectedError(f"connection lost: {exc}") from None
        finally:
            self._pending.pop(packet_id, None)

    async def _read_loop(self, early: list[Packet]) -> None:
        """``early``: packets that arrived in the same read as the CONNACK."""
        assert self._reader is not None
        try:
            for packet in early:
                self._dispatch(packet)
            while True:
                data = await self._reader.read(_READ_CHUNK)
                if not data:
                    return
                self._last_heard = asyncio.get_running_loop().time()
                for packet in self._decoder.feed(data):
                    self._dispatch(packet)
        except PacketError as exc:
            with contextlib.suppress(NotConnectedError):
                self._send(Disconnect(exc.reason))
        except (ConnectionError, ssl.SSLError):
            return
        finally:
            self._spawn(self._shutdown())

    def _dispatch(self, packet: Packet) -> None:
        match packet:
            case PubAck() | SubAck() | UnsubAck():
                future = self._pending.get(packet.packet_id)
                if future is not None and not future.done():
                    future.set_result(packet)
            case Publish():
                self._spawn(self._deliver(packet))
            case PingResp():
                pass
            case Disconnect():
                self._disconnect_reason = packet.reason
                raise ConnectionResetError(f"broker disconnected with 0x{packet.reason:02X}")
            case _:
                raise PacketError(
                    f"a broker may not send {type(packet).__name__.upper()} here",
                    ReasonCode.PROTOCOL_ERROR,
                )

    async def _deliver(self, packet: Publish) -> None:
        reason = ReasonCode.UNSPECIFIED_ERROR
        if self._on_message is not None:
            try:
                reason = await self._on_message(Delivery(packet.topic, packet.payload, packet.qos))
            except Exception:
                # the message was not taken: 0x80 makes its publisher keep it and send it again
                _log.exception("message handler of %s failed on %s", self._identity, packet.topic)
        if packet.qos is QoS.AT_LEAST_ONCE and packet.packet_id is not None:
            with contextlib.suppress(NotConnectedError):
                self._send(PubAck(packet.packet_id, reason))

    async def _ping_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self.connected:
            await asyncio.sleep(self._keep_alive * 0.75)
            if loop.time() - self._last_heard > self._keep_alive * 1.5:
                await self._shutdown()
                return
            with contextlib.suppress(NotConnectedError):
                self._send(PingReq())

    async def _shutdown(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(NotConnectedError(f"{self._identity} disconnected"))
        writer, self._writer = self._writer, None
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
