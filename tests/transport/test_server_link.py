"""The server's link: batched storage acknowledged only after commit, commands to pumps."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tests.transport.conftest import SERVER_ID, SERVER_IDENTITY, Pki, pump_identity, run, status

from pumpguard.clock import VirtualClock
from pumpguard.devices.infusion import EventKind
from pumpguard.pki import PeerIdentity, client_tls_context
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
    Connector,
    Delivery,
    DeviceEvent,
    DeviceLink,
    DeviceMessage,
    MessageHandler,
    MqttClient,
    Outbox,
    QoS,
    ReasonCode,
    ServerLink,
    Session,
    TransportEvent,
    device_topic,
)


class Database:
    """Stores each (device, seq) once, like a unique key; can be made to fail."""

    def __init__(self, failures: int = 0) -> None:
        self.rows: dict[tuple[str, int], DeviceMessage] = {}
        self.batch_sizes: list[int] = []
        self.failures = failures
        self.changed = asyncio.Event()

    async def store(self, batch: Sequence[DeviceMessage]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database unavailable")
        self.batch_sizes.append(len(batch))
        for message in batch:
            self.rows.setdefault((message.device_id, message.seq), message)
        self.changed.set()

    async def until(self, count: int) -> None:
        while len(self.rows) < count:
            self.changed.clear()
            await self.changed.wait()


def _events(outbox: Outbox, count: int) -> None:
    for n in range(1, count + 1):
        outbox.put(DeviceEvent, event=EventKind.SENSOR, log_seq=n, occurred_at_ms=n, summary="s")


def test_messages_are_stored_in_batches_and_resent_after_a_failed_commit() -> None:
    async def scenario() -> tuple[Database, list[ReasonCode | None], int]:
        clock = VirtualClock()
        bus = Bus(clock, SecurityEventLog())
        database = Database(failures=1)

        async def connect(handler: MessageHandler) -> Session:
            return bus.connect(SERVER_IDENTITY, on_message=handler)

        link = ServerLink(
            connect, database.store, clock=clock, events=SecurityEventLog(), batch_size=5
        )
        running = asyncio.ensure_future(link.run())
        await link.wait_ready()
        pumps = [f"PUMP-000{n}" for n in (1, 2, 3)]
        outboxes = [Outbox(ident, clock) for ident in pumps]
        for outbox in outboxes:
            _events(outbox, 4)
        sessions = [bus.connect(pump_identity(ident)) for ident in pumps]
        first = await asyncio.gather(*(o.flush(s) for o, s in zip(outboxes, sessions, strict=True)))
        await asyncio.gather(*(o.flush(s) for o, s in zip(outboxes, sessions, strict=True)))
        await link.stop()
        await running
        return database, [r.stopped_by for r in first], link.batches

    database, stopped_by, batches = run(scenario())
    assert ReasonCode.UNSPECIFIED_ERROR in stopped_by  # the failed commit was not acknowledged
    assert sorted(database.rows) == [(f"PUMP-000{p}", s) for p in (1, 2, 3) for s in range(1, 5)]
    assert sum(database.batch_sizes) == 12
    assert max(database.batch_sizes) <= 5
    assert batches == len(database.batch_sizes)


def test_behind_mosquitto_the_link_checks_payloads_itself() -> None:
    async def scenario() -> tuple[ReasonCode, ReasonCode, SecurityEventLog]:
        clock = VirtualClock()
        log = SecurityEventLog()
        database = Database()

        async def connect(handler: MessageHandler) -> Session:
            raise ConnectionRefusedError  # never connected: the handler is driven directly

        link = ServerLink(
            connect, database.store, clock=clock, events=log, check_payloads=True, batch_size=1
        )
        handler = link._on_delivery
        topic = device_topic("PUMP-0001", Channel.TELEMETRY)
        spoofed = await handler(Delivery(topic, status("PUMP-0002"), QoS.AT_LEAST_ONCE))
        genuine = await handler(Delivery(topic, status("PUMP-0001"), QoS.AT_LEAST_ONCE))
        return spoofed, genuine, log

    spoofed, genuine, log = run(scenario())
    assert spoofed is ReasonCode.NOT_AUTHORIZED
    assert genuine is ReasonCode.SUCCESS
    assert [e.code for e in log] == [TransportEvent.PAYLOAD_SPOOFED]


def test_server_link_and_device_link_over_the_broker(pki: Pki) -> None:
    async def execute(command: CommandMessage) -> CommandOutcome:
        return CommandOutcome(AckOutcome.REJECTED, "not while programming", 9017)

    async def scenario() -> tuple[Database, ReasonCode]:
        log = SecurityEventLog()
        clock = VirtualClock(1)
        database = Database()
        async with Broker(pki.server_context(), log, port=0) as broker:

            def connector(creds: str, identity: PeerIdentity) -> Connector:
                async def connect(handler: MessageHandler) -> Session:
                    client = MqttClient(
                        "127.0.0.1",
                        broker.port,
                        client_tls_context(pki.creds(creds)),
                        identity,
                        on_message=handler,
                    )
                    await client.connect()
                    return client

                return connect

            server = ServerLink(
                connector(SERVER_ID, SERVER_IDENTITY),
                database.store,
                clock=clock,
                events=log,
            )
            pump = DeviceLink(
                Outbox("PUMP-0002", clock),
                connector("PUMP-0002", pump_identity("PUMP-0002")),
                execute,
                clock=clock,
                events=log,
            )
            tasks = [asyncio.ensure_future(server.run()), asyncio.ensure_future(pump.run())]
            await server.wait_ready()
            _events_link(pump, 3)
            await database.until(3)
            while not pump.connected:
                await asyncio.sleep(0.01)
            command = CommandMessage(
                device_id="PUMP-0002",
                command_id="order-1",
                action=CommandAction.PREFILL_ORDER,
                sent_at_ms=1,
            )
            sent = await server.send_command(command)
            await database.until(4)
            await pump.stop()
            await server.stop()
            await asyncio.gather(*tasks)
        return database, sent

    database, sent = run(scenario())
    assert sent is ReasonCode.SUCCESS
    ack = database.rows[("PUMP-0002", 4)]
    assert isinstance(ack, CommandAck)
    assert (ack.command_id, ack.outcome, ack.err_code) == ("order-1", AckOutcome.REJECTED, 9017)


def _events_link(link: DeviceLink, count: int) -> None:
    for n in range(1, count + 1):
        link.put(DeviceEvent, event=EventKind.SENSOR, log_seq=n, occurred_at_ms=n, summary="s")
