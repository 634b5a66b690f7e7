"""The device outbox and server de-duplication: nothing lost, nothing stored twice."""

from __future__ import annotations

import pytest
from tests.transport.conftest import (
    SERVER_ID,
    SERVER_IDENTITY,
    Pki,
    client_for,
    pump_identity,
    run,
    running_broker,
)

from pumpguard.clock import VirtualClock
from pumpguard.devices.infusion import EventKind, PumpState
from pumpguard.security_events import SecurityEventLog
from pumpguard.transport import (
    Bus,
    BusSession,
    Deduplicator,
    Delivery,
    DeviceEvent,
    Outbox,
    OutboxFullError,
    ReasonCode,
    StatusMessage,
    decode_message,
)


class Ingest:
    """What the server does: de-duplicate, store, and only then acknowledge."""

    def __init__(self) -> None:
        self.dedup = Deduplicator()
        self.stored: list[tuple[str, int]] = []
        self.on_store: list[BusSession] = []  # sessions to cut right after storing

    async def __call__(self, delivery: Delivery) -> ReasonCode:
        message = decode_message(delivery.payload)
        if self.dedup.accept(message.device_id, message.seq):  # type: ignore[union-attr]
            self.stored.append((message.device_id, message.seq))  # type: ignore[union-attr]
        while self.on_store:
            self.on_store.pop().drop()
        return ReasonCode.SUCCESS


def _event(outbox: Outbox, n: int) -> DeviceEvent:
    return outbox.put(
        DeviceEvent,
        event=EventKind.DELIVERY_START,
        log_seq=n,
        occurred_at_ms=n,
        summary=f"event {n}",
    )


def _status(outbox: Outbox) -> StatusMessage:
    return outbox.put(
        StatusMessage,
        state=PumpState.INFUSING,
        battery_percent=50,
        on_mains=False,
        firmware_version="1.0",
    )


def test_offline_messages_are_kept_and_a_lost_puback_is_deduplicated() -> None:
    async def scenario() -> tuple[Ingest, Outbox, list[int]]:
        clock = VirtualClock(10_000)
        bus = Bus(clock, SecurityEventLog())
        ingest = Ingest()
        server = bus.connect(SERVER_IDENTITY, on_message=ingest)
        await server.subscribe("pumpguard/v1/devices/+/events")
        outbox = Outbox("PUMP-0001", clock)
        for n in (1, 2, 3):  # offline
            _event(outbox, n)
            clock.advance(1_000)
        pump = bus.connect(pump_identity("PUMP-0001"))
        ingest.on_store.append(pump)  # the PUBACK of the first message is lost
        first = await outbox.flush(pump)
        pending_after_loss = [m.seq for m in outbox.pending]
        pump = bus.connect(pump_identity("PUMP-0001"))
        await outbox.flush(pump)
        return ingest, outbox, [first.delivered, *pending_after_loss]

    ingest, outbox, seen = run(scenario())
    assert seen == [0, 1, 2, 3]
    assert ingest.stored == [("PUMP-0001", 1), ("PUMP-0001", 2), ("PUMP-0001", 3)]
    assert ingest.dedup.duplicates == 1
    assert outbox.pending == ()
    assert outbox.next_seq == 4


def test_without_a_listening_server_nothing_is_dropped() -> None:
    async def scenario() -> tuple[ReasonCode | None, int, list[tuple[str, int]]]:
        clock = VirtualClock()
        bus = Bus(clock, SecurityEventLog())
        outbox = Outbox("PUMP-0001", clock)
        pump = bus.connect(pump_identity("PUMP-0001"))
        _event(outbox, 1)
        result = await outbox.flush(pump)
        ingest = Ingest()
        server = bus.connect(SERVER_IDENTITY, on_message=ingest)
        await server.subscribe("pumpguard/v1/devices/+/events")
        await outbox.flush(pump)
        return result.stopped_by, result.pending, ingest.stored

    stopped_by, pending, stored = run(scenario())
    assert stopped_by is ReasonCode.NO_MATCHING_SUBSCRIBERS
    assert pending == 1
    assert stored == [("PUMP-0001", 1)]


def test_a_permanent_refusal_is_set_aside_not_retried_forever() -> None:
    async def scenario() -> Outbox:
        clock = VirtualClock()
        bus = Bus(clock, SecurityEventLog())
        outbox = Outbox("PUMP-0002", clock)  # misconfigured: not this session's identity
        _event(outbox, 1)
        await outbox.flush(bus.connect(pump_identity("PUMP-0001")))
        return outbox

    outbox = run(scenario())
    assert outbox.pending == ()
    assert [(r.message.seq, r.reason) for r in outbox.refused] == [(1, ReasonCode.NOT_AUTHORIZED)]


def test_capacity_drops_superseded_statuses_never_events() -> None:
    outbox = Outbox("PUMP-0001", VirtualClock(), capacity=3)
    _status(outbox)
    _event(outbox, 1)
    _status(outbox)
    _event(outbox, 2)  # full: the oldest status goes
    assert [(type(m).__name__, m.seq) for m in outbox.pending] == [
        ("DeviceEvent", 2),
        ("StatusMessage", 3),
        ("DeviceEvent", 4),
    ]
    _event(outbox, 3)  # the remaining status goes
    assert outbox.dropped_statuses == 2
    with pytest.raises(OutboxFullError):
        _event(outbox, 4)
    assert [m.seq for m in outbox.pending] == [2, 4, 5]


def test_sequence_numbers_continue_from_the_persisted_counter() -> None:
    outbox = Outbox("PUMP-0001", VirtualClock(), next_seq=1_001)
    assert _event(outbox, 1).seq == 1_001
    with pytest.raises(ValueError, match="start at 1"):
        Outbox("PUMP-0001", VirtualClock(), next_seq=0)


def test_outbox_over_the_real_broker(pki: Pki) -> None:
    async def scenario() -> tuple[list[tuple[str, int]], int]:
        clock = VirtualClock(5)
        outbox = Outbox("PUMP-0001", clock)
        for n in range(1, 6):
            _event(outbox, n)
        async with running_broker(pki, SecurityEventLog()) as broker:
            ingest = Ingest()
            server = client_for(pki, broker.port, SERVER_ID, SERVER_IDENTITY, ingest)
            await server.connect()
            await server.subscribe("pumpguard/v1/devices/+/events")
            pump = client_for(pki, broker.port, "PUMP-0001", pump_identity("PUMP-0001"))
            await pump.connect()
            result = await outbox.flush(pump)
            await pump.close()
            await server.close()
        return ingest.stored, result.delivered

    stored, delivered = run(scenario())
    assert delivered == 5
    assert stored == [("PUMP-0001", n) for n in range(1, 6)]


def test_a_status_on_the_wire_is_not_dropped_to_make_room() -> None:
    async def scenario() -> tuple[list[int], int]:
        clock = VirtualClock()
        bus = Bus(clock, SecurityEventLog())
        outbox = Outbox("PUMP-0001", clock, capacity=3)
        stored: list[int] = []

        async def server(delivery: Delivery) -> ReasonCode:
            stored.append(decode_message(delivery.payload).seq)  # type: ignore[union-attr]
            if len(stored) == 1:  # the pump records an event while its first status travels
                _event(outbox, 4)
            return ReasonCode.SUCCESS

        session = bus.connect(SERVER_IDENTITY, on_message=server)
        await session.subscribe("pumpguard/v1/devices/+/telemetry")
        await session.subscribe("pumpguard/v1/devices/+/events")
        _status(outbox)
        _event(outbox, 2)
        _status(outbox)
        await outbox.flush(bus.connect(pump_identity("PUMP-0001")))
        return stored, outbox.dropped_statuses

    stored, dropped = run(scenario())
    assert stored == [1, 2, 4]  # status 3 made room; event 2 was not lost in its place
    assert dropped == 1
