"""The server's end of the transport: receive every device message, store in batches, command.

``ServerLink`` holds one session subscribed to every device's telemetry, events and acks. It
collects incoming messages into batches (up to ``batch_size``, or whatever arrived within
``batch_delay_s``) and hands each batch to ``store`` in one call, because a database commits
500 rows far faster than 500 single rows; only when ``store`` returns does every message of
the batch get its PUBACK 0x00, so a pump keeps whatever was not committed and sends it again.
If ``store`` raises, the whole batch is answered 0x80 and resent by the pumps later: ``store``
must therefore be idempotent on (device_id, seq), which the server's unique key gives.

Behind Mosquitto, which forwards payloads unread, ``check_payloads=True`` runs the embedded
broker's payload check (``Gatekeeper.check_received``) on every message first. Several server
workers behind one external broker each pass the same ``share_group``: their subscriptions
become MQTT 5 shared subscriptions (``$share/GROUP/...``), so the broker hands each device
message to one worker instead of all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from pumpguard.clock import Clock
from pumpguard.security_events import SecurityEventSink
from pumpguard.transport.clock_offset import ClockOffsets, in_device_time
from pumpguard.transport.codes import QoS, ReasonCode
from pumpguard.transport.device import Connector
from pumpguard.transport.messages import (
    CommandMessage,
    DeviceMessage,
    MessageError,
    decode_message,
    encode_message,
)
from pumpguard.transport.policy import Gatekeeper
from pumpguard.transport.session import (
    ConnectRefusedError,
    Delivery,
    NotConnectedError,
    Session,
)
from pumpguard.transport.topics import TOPIC_ROOT, Channel, device_topic

__all__ = ["ServerLink", "Store"]

Store = Callable[[Sequence[DeviceMessage]], Awaitable[None]]

_log = logging.getLogger(__name__)
_FILTERS = tuple(f"{TOPIC_ROOT}/+/{c.value}" for c in Channel if c.from_device)


def _valid_share_group(name: str) -> bool:
    return 0 < len(name) <= 64 and all(c.isascii() and (c.isalnum() or c in "-_") for c in name)


class ServerLink:
    """Receives device messages in batches and sends commands; see the module docstring."""

    def __init__(
        self,
        connect: Connector,
        store: Store,
        *,
        clock: Clock,
        events: SecurityEventSink,
        check_payloads: bool = False,
        share_group: str | None = None,
        batch_size: int = 500,
        batch_delay_s: float = 0.05,
        retry_s: float = 1.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self._connect = connect
        self._store = store
        if share_group is not None and not _valid_share_group(share_group):
            raise ValueError(
                f"share group {share_group!r} must be 1-64 letters, digits, '-' or '_'"
            )
        self._gate = Gatekeeper(events, clock) if check_payloads else None
        self._clock = clock
        self.clock_offsets = ClockOffsets()
        self._filters = (
            _FILTERS
            if share_group is None
            else tuple(f"$share/{share_group}/{f}" for f in _FILTERS)
        )
        self._batch_size = batch_size
        self._batch_delay = batch_delay_s
        self._retry_s = retry_s
        self._pending: list[tuple[DeviceMessage, asyncio.Future[ReasonCode]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._session: Session | None = None
        self._ready = asyncio.Event()
        self._stopping = False
        self.batches = 0

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.connected

    async def wait_ready(self) -> None:
        """Return once connected and subscribed to every device channel."""
        await self._ready.wait()

    async def send_command(self, command: CommandMessage) -> ReasonCode:
        """Publish a command to its device: SUCCESS once the pump acknowledged the PUBLISH
        (embedded broker) or the broker took it (Mosquitto). The pump's ``CommandAck`` arrives
        separately, through ``store``."""
        session = self._session
        if session is None or not session.connected:
            raise NotConnectedError("the server link is not connected")
        topic = device_topic(command.device_id, Channel.COMMANDS)
        return await session.publish(
            topic, encode_message(self._in_device_time(command)), QoS.AT_LEAST_ONCE
        )

    def _in_device_time(self, command: CommandMessage) -> CommandMessage:
        """``command`` with its instants on the device's clock (see ``ClockOffsets``)."""
        offset = self.clock_offsets.offset_ms(command.device_id, self._clock.now_ms())
        if offset is None:
            return command
        expires = command.expires_at_ms
        return command.model_copy(
            update={
                "sent_at_ms": in_device_time(command.sent_at_ms, offset),
                "expires_at_ms": None if expires is None else in_device_time(expires, offset),
            }
        )

    async def stop(self) -> None:
        self._stopping = True
        session = self._session
        if session is not None and session.connected:
            await session.close()
        self._flush_now()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    async def run(self) -> None:
        """Connect, subscribe, receive until the session ends, reconnect; until ``stop``."""
        while not self._stopping:
            try:
                session = await self._connect(self._on_delivery)
            except (OSError, ConnectRefusedError, TimeoutError):
                await asyncio.sleep(self._retry_s)
                continue
            self._session = session
            try:
                for topic_filter in self._filters:
                    granted = await session.subscribe(topic_filter)
                    if granted.is_failure:
                        raise ConnectRefusedError(granted, f"subscription to {topic_filter}")
                self._ready.set()
                await session.wait_closed()
            except (NotConnectedError, ConnectRefusedError):
                pass
            finally:
                self._ready.clear()
                self._session = None
                if session.connected:
                    await session.close()
            if not self._stopping:
                await asyncio.sleep(self._retry_s)

    async def _on_delivery(self, delivery: Delivery) -> ReasonCode:
        if self._gate is not None:
            verdict = self._gate.check_received(delivery.topic, delivery.payload)
            if not verdict.allowed:
                return verdict.reason
        try:
            message = decode_message(delivery.payload)
        except MessageError:
            return ReasonCode.PAYLOAD_FORMAT_INVALID
        if isinstance(message, CommandMessage):
            return ReasonCode.PAYLOAD_FORMAT_INVALID
        self.clock_offsets.observe(message.device_id, message.sent_at_ms, self._clock.now_ms())
        future: asyncio.Future[ReasonCode] = asyncio.get_running_loop().create_future()
        self._pending.append((message, future))
        if len(self._pending) >= self._batch_size:
            self._flush_now()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._batch_delay, self._flush_now)
        return await future

    def _flush_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._commit(batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _commit(self, batch: list[tuple[DeviceMessage, asyncio.Future[ReasonCode]]]) -> None:
        reason = ReasonCode.SUCCESS
        try:
            await self._store([message for message, _ in batch])
            self.batches += 1
        except Exception:
            # nothing of this batch is acknowledged: the pumps keep it and send it again
            _log.exception("storing a batch of %d device messages failed", len(batch))
            reason = ReasonCode.UNSPECIFIED_ERROR
        for _, future in batch:
            with contextlib.suppress(asyncio.InvalidStateError):
                future.set_result(reason)
