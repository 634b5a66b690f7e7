"""The server's link: batched storage acknowledged only after commit, commands to pumps."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
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
    ClockOffsets,
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


_HOUR_MS = 3_600_000


@pytest.mark.parametrize("skew_ms", [3 * _HOUR_MS, -3 * _HOUR_MS, 0])
def test_commands_carry_their_instants_in_the_pumps_time(skew_ms: int) -> None:
    """A pump whose clock is hours off still takes a fresh command and refuses a stale one:
    the server writes each command's instants on the pump's clock, learnt from its messages."""

    async def scenario() -> list[tuple[str, AckOutcome]]:
        server_clock = VirtualClock(10 * _HOUR_MS)
        pump_clock = VirtualClock(10 * _HOUR_MS + skew_ms)
        bus = Bus(server_clock, SecurityEventLog())
        database = Database()

        async def connect_server(handler: MessageHandler) -> Session:
            return bus.connect(SERVER_IDENTITY, on_message=handler)

        async def connect_pump(handler: MessageHandler) -> Session:
            return bus.connect(pump_identity("PUMP-0001"), on_message=handler)

        async def execute(command: CommandMessage) -> CommandOutcome:
            return CommandOutcome(AckOutcome.ACCEPTED, "done")

        server = ServerLink(
            connect_server, database.store, clock=server_clock, events=SecurityEventLog()
        )
        pump = DeviceLink(
            Outbox("PUMP-0001", pump_clock),
            connect_pump,
            execute,
            clock=pump_clock,
            events=SecurityEventLog(),
        )
        tasks = [asyncio.ensure_future(server.run()), asyncio.ensure_future(pump.run())]
        await server.wait_ready()
        _events_link(pump, 1)  # the pump's first message teaches the server its clock
        await database.until(1)
        now = server_clock.now_ms()
        for command_id, expires in (("fresh", now + 60_000), ("stale", now - 10_000)):
            command = CommandMessage(
                device_id="PUMP-0001",
                command_id=command_id,
                action=CommandAction.REQUEST_STATUS,
                sent_at_ms=now - 70_000 if command_id == "stale" else now,
                expires_at_ms=expires,
            )
            assert await server.send_command(command) is ReasonCode.SUCCESS
        await database.until(3)
        await pump.stop()
        await server.stop()
        await asyncio.gather(*tasks)
        acks = [m for m in database.rows.values() if isinstance(m, CommandAck)]
        return [(a.command_id, a.outcome) for a in acks]

    assert run(scenario()) == [("fresh", AckOutcome.ACCEPTED), ("stale", AckOutcome.EXPIRED)]


def test_clock_offsets_take_the_least_delayed_recent_message() -> None:
    offsets = ClockOffsets(window_ms=300_000)
    assert offsets.offset_ms("PUMP-0001", 0) is None
    assert offsets.to_device("PUMP-0001", 5_000, 0) == 5_000
    offsets.observe("PUMP-0001", sent_at_ms=1_000, received_at_ms=100_050)  # 50 ms on the way
    offsets.observe("PUMP-0001", sent_at_ms=2_000, received_at_ms=200_000)  # queued offline
    assert offsets.offset_ms("PUMP-0001", 200_000) == 99_050
    assert offsets.to_device("PUMP-0001", 300_000, 200_000) == 200_950
    # the clock was corrected; the old samples age out of the window in time
    offsets.observe("PUMP-0001", sent_at_ms=250_000, received_at_ms=250_010)
    assert offsets.offset_ms("PUMP-0001", 250_010) == 10
    assert offsets.offset_ms("PUMP-0001", 600_000) is None
