"""A device's end of the transport: stay connected, drain the outbox, obey each command once.

``DeviceLink`` is the loop every networked pump runs (and ``pumpguard bench server`` runs 5,000
of in one event loop): connect, subscribe to its own commands, send the outbox, sleep until a
new message is queued or the connection ends, reconnect after a jittered, growing delay so
that a fleet does not reconnect in lockstep after a broker restart.

Commands arrive at least once, so the link remembers the outcome of recent command ids: a
command delivered again is acknowledged again with the same outcome and never executed twice.
A command past its ``expires_at_ms`` is acknowledged as expired without being executed; the
firmware's own limits still decide everything else (the executor is the firmware's door).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pumpguard.clock import Clock
from pumpguard.security_events import Component, SecurityEvent, SecurityEventSink, Severity
from pumpguard.transport.codes import ReasonCode, TransportEvent
from pumpguard.transport.messages import (
    AckOutcome,
    CommandAck,
    CommandMessage,
    MessageError,
    decode_message,
)
from pumpguard.transport.outbox import M, Outbox, OutboxFullError
from pumpguard.transport.session import (
    ConnectRefusedError,
    Delivery,
    MessageHandler,
    NotConnectedError,
    Session,
)
from pumpguard.transport.topics import Channel, device_topic

__all__ = ["CommandExecutor", "CommandOutcome", "Connector", "DeviceLink"]


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What the firmware made of a command; becomes the ``CommandAck``."""

    outcome: AckOutcome
    reason: str | None = None
    err_code: int | None = None


CommandExecutor = Callable[[CommandMessage], Awaitable[CommandOutcome]]
Connector = Callable[[MessageHandler], Awaitable[Session]]


class DeviceLink:
    """Keeps one device connected and its outbox empty; see the module docstring."""

    def __init__(
        self,
        outbox: Outbox,
        connect: Connector,
        execute: CommandExecutor,
        *,
        clock: Clock,
        events: SecurityEventSink,
        retry_s: float = 1.0,
        max_retry_s: float = 60.0,
        remembered_commands: int = 1024,
    ) -> None:
        self._outbox = outbox
        self._connect = connect
        self._execute = execute
        self._clock = clock
        self._events = events
        self._retry_s = retry_s
        self._max_retry_s = max_retry_s
        self._remembered = remembered_commands
        self._outcomes: OrderedDict[str, CommandOutcome] = OrderedDict()
        self._wake = asyncio.Event()
        self._stopping = False
        self._session: Session | None = None
        self._random = random.Random(outbox.device_id)
        self.connections = 0

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.connected

    def put(self, kind: type[M], **fields: Any) -> M:
        """Queue a message (see ``Outbox.put``) and wake the sender."""
        message = self._outbox.put(kind, **fields)
        self._wake.set()
        return message

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        session = self._session
        if session is not None and session.connected:
            await session.close()

    async def run(self) -> None:
        """Connect, send, wait, reconnect, until ``stop``."""
        delay = self._retry_s
        while not self._stopping:
            try:
                session = await self._connect(self._on_delivery)
            except (OSError, ConnectRefusedError, TimeoutError):
                await self._pause(delay)
                delay = min(delay * 2, self._max_retry_s)
                continue
            delay = self._retry_s
            self._session = session
            self.connections += 1
            try:
                commands = device_topic(self._outbox.device_id, Channel.COMMANDS)
                if (await session.subscribe(commands)).is_failure:
                    await session.close()
                    await self._pause(self._max_retry_s)
                    continue
                await self._serve(session)
            except NotConnectedError:
                pass
            finally:
                self._session = None
                if session.connected:
                    await session.close()
            if not self._stopping:
                await self._pause(delay)

    async def _pause(self, delay: float) -> None:
        if self._stopping:
            return
        jittered = delay * self._random.uniform(0.5, 1.5)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(jittered):
                while not self._stopping:
                    self._wake.clear()
                    await self._wake.wait()

    async def _serve(self, session: Session) -> None:
        closed = asyncio.ensure_future(session.wait_closed())
        try:
            while session.connected and not self._stopping:
                self._wake.clear()
                result = await self._outbox.flush(session)
                retry = self._retry_s if result.stopped_by is not None else None
                woken = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait(
                        {closed, woken}, timeout=retry, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    woken.cancel()
        finally:
            closed.cancel()

    async def _on_delivery(self, delivery: Delivery) -> ReasonCode:
        try:
            message = decode_message(delivery.payload)
        except MessageError as exc:
            self._report(f"command refused: {exc}", delivery.topic)
            return ReasonCode.PAYLOAD_FORMAT_INVALID
        if not isinstance(message, CommandMessage) or message.device_id != self._outbox.device_id:
            self._report(
                f"a {message.kind.value} for {message.device_id!r} is not my command",
                delivery.topic,
            )
            return ReasonCode.PAYLOAD_FORMAT_INVALID
        outcome = self._outcomes.get(message.command_id)
        if outcome is None:
            expiry = message.expires_at_ms
            if expiry is not None and self._clock.now_ms() > expiry:
                outcome = CommandOutcome(AckOutcome.EXPIRED, "expired before it arrived")
            else:
                outcome = await self._execute(message)
            self._outcomes[message.command_id] = outcome
            while len(self._outcomes) > self._remembered:
                self._outcomes.popitem(last=False)
        try:
            self.put(
                CommandAck,
                command_id=message.command_id,
                outcome=outcome.outcome,
                reason=outcome.reason,
                err_code=outcome.err_code,
            )
        except OutboxFullError:
            return ReasonCode.QUOTA_EXCEEDED
        return ReasonCode.SUCCESS

    def _report(self, text: str, topic: str) -> None:
        self._events.emit(
            SecurityEvent(
                time_ms=self._clock.now_ms(),
                component=Component.DEVICE,
                code=TransportEvent.PAYLOAD_INVALID,
                severity=Severity.MEDIUM,
                message=text,
                device_id=self._outbox.device_id,
                attributes={"topic": topic[:200]},
            )
        )
