"""A pump's link through a broker restart: nothing lost, nothing stored twice, commands once."""

from __future__ import annotations

import asyncio

from tests.transport.conftest import SERVER_ID, SERVER_IDENTITY, Pki, client_for, pump_identity, run

from pumpguard.clock import VirtualClock
from pumpguard.devices.infusion import EventKind
from pumpguard.pki import client_tls_context
from pumpguard.security_events import SecurityEventLog
from pumpguard.transport import (
    AckOutcome,
    Broker,
    Bus,
    Channel,
    CommandAck,
    CommandAction,
    CommandMessage,
    CommandOutcome,
    Deduplicator,
    Delivery,
    DeviceEvent,
    DeviceLink,
    MessageHandler,
    MqttClient,
    Outbox,
    QoS,
    ReasonCode,
    Session,
    TransportEvent,
    decode_message,
    device_topic,
    encode_message,
)


class Server:
    """Stores each (device, seq) once and lets a test wait for a number of stored messages."""

    def __init__(self) -> None:
        self.dedup = Deduplicator()
        self.stored: list[tuple[str, int]] = []
        self.acks: list[tuple[str, AckOutcome]] = []
        self._changed = asyncio.Event()

    async def __call__(self, delivery: Delivery) -> ReasonCode:
        message = decode_message(delivery.payload)
        assert not isinstance(message, CommandMessage)
        if self.dedup.accept(message.device_id, message.seq):
            self.stored.append((message.device_id, message.seq))
            if isinstance(message, CommandAck):
                self.acks.append((message.command_id, message.outcome))
            self._changed.set()
        return ReasonCode.SUCCESS

    async def until(self, stored: int) -> None:
        while len(self.stored) < stored:
            self._changed.clear()
            await self._changed.wait()


def _event(link: DeviceLink, n: int) -> None:
    link.put(DeviceEvent, event=EventKind.ALARM_ON, log_seq=n, occurred_at_ms=n, summary=f"#{n}")


def _command(command_id: str) -> bytes:
    command = CommandMessage(
        device_id="PUMP-0001",
        command_id=command_id,
        action=CommandAction.PAUSE,
        sent_at_ms=0,
    )
    return encode_message(command)


def test_a_link_survives_a_broker_restart_without_loss_or_doubles(pki: Pki) -> None:
    executed: list[str] = []

    async def execute(command: CommandMessage) -> CommandOutcome:
        executed.append(command.command_id)
        return CommandOutcome(AckOutcome.ACCEPTED)

    async def scenario() -> tuple[Server, int]:
        log = SecurityEventLog()
        clock = VirtualClock(1)
        broker = Broker(pki.server_context(), log, port=0)
        await broker.start()
        port = broker.port
        server = Server()

        async def connect(handler: MessageHandler) -> Session:
            client = MqttClient(
                "127.0.0.1",
                port,
                client_tls_context(pki.creds("PUMP-0001")),
                pump_identity("PUMP-0001"),
                on_message=handler,
            )
            await client.connect()
            return client

        async def server_session() -> MqttClient:
            client = client_for(pki, port, SERVER_ID, SERVER_IDENTITY, server)
            await client.connect()
            for channel in ("telemetry", "events", "acks"):
                await client.subscribe(f"pumpguard/v1/devices/+/{channel}")
            return client

        link = DeviceLink(
            Outbox("PUMP-0001", clock), connect, execute, clock=clock, events=log, retry_s=0.05
        )
        running = asyncio.ensure_future(link.run())
        ingest = await server_session()
        for n in (1, 2, 3):
            _event(link, n)
        await server.until(3)

        await broker.stop()  # the network goes away; the pump keeps recording
        for n in (4, 5):
            _event(link, n)
        broker = Broker(pki.server_context(), log, port=port)
        await broker.start()
        ingest = await server_session()
        await server.until(5)

        topic = device_topic("PUMP-0001", Channel.COMMANDS)
        while not link.connected:  # the pump may still be backing off
            await asyncio.sleep(0.01)
        first = await ingest.publish(topic, _command("c-1"))
        again = await ingest.publish(topic, _command("c-1"))  # a resend of the same command
        await server.until(7)
        assert (first, again) == (ReasonCode.SUCCESS, ReasonCode.SUCCESS)

        await link.stop()
        await running
        await ingest.close()
        await broker.stop()
        return server, link.connections

    server, connections = run(scenario())
    assert [seq for _, seq in server.stored] == [1, 2, 3, 4, 5, 6, 7]
    assert executed == ["c-1"]
    assert server.acks == [("c-1", AckOutcome.ACCEPTED), ("c-1", AckOutcome.ACCEPTED)]
    assert connections >= 2


def test_expired_and_foreign_commands_are_not_executed() -> None:
    executed: list[str] = []

    async def execute(command: CommandMessage) -> CommandOutcome:
        executed.append(command.command_id)
        return CommandOutcome(AckOutcome.ACCEPTED)

    async def scenario() -> tuple[Outbox, SecurityEventLog]:
        log = SecurityEventLog()
        clock = VirtualClock(10_000)
        bus = Bus(clock, log)
        outbox = Outbox("PUMP-0001", clock)

        async def connect(handler: MessageHandler) -> Session:
            return bus.connect(pump_identity("PUMP-0001"), on_message=handler)

        link = DeviceLink(outbox, connect, execute, clock=clock, events=log)
        handler = link._on_delivery
        topic = device_topic("PUMP-0001", Channel.COMMANDS)
        late = CommandMessage(
            device_id="PUMP-0001",
            command_id="late",
            action=CommandAction.PAUSE,
            sent_at_ms=1,
            expires_at_ms=5_000,
        )
        assert (
            await handler(Delivery(topic, encode_message(late), QoS.AT_LEAST_ONCE))
            is ReasonCode.SUCCESS
        )
        refused = await handler(Delivery(topic, b'{"schema_version": 1}', QoS.AT_LEAST_ONCE))
        assert refused is ReasonCode.PAYLOAD_FORMAT_INVALID
        return outbox, log

    outbox, log = run(scenario())
    assert executed == []
    (ack,) = outbox.pending
    assert isinstance(ack, CommandAck)
    assert ack.outcome is AckOutcome.EXPIRED
    assert [e.code for e in log] == [TransportEvent.PAYLOAD_INVALID]
