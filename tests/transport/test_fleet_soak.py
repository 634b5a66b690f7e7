"""A fleet through a broker restart over real mutual-TLS MQTT: every message stored exactly
once. The correctness half of ``pumpguard bench server`` (which will measure the speed)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from tests.transport.conftest import SERVER_ID, SERVER_IDENTITY, run, server_client_credential

from pumpguard.clock import SystemClock
from pumpguard.devices.infusion import EventKind, PumpState
from pumpguard.pki import (
    CertificateAuthority,
    CertKind,
    PeerIdentity,
    client_tls_context,
    generate_passphrase,
    server_tls_context,
)
from pumpguard.security_events import SecurityEventLog
from pumpguard.transport import (
    AckOutcome,
    Broker,
    CommandMessage,
    CommandOutcome,
    Connector,
    DeviceEvent,
    DeviceLink,
    DeviceMessage,
    MessageHandler,
    MqttClient,
    Outbox,
    ServerLink,
    Session,
    StatusMessage,
)

PUMPS = 100
ROUNDS = 4  # each round: a status and an event per pump; the broker restarts during round 2


@pytest.mark.slow
def test_a_fleet_loses_nothing_and_stores_nothing_twice_across_a_broker_restart(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("fleet")
    passphrase = generate_passphrase()
    ca = CertificateAuthority.init(root / "ca", passphrase)
    ca.issue(CertKind.SERVER, "broker", sans=("127.0.0.1",)).write(root / "broker")
    server_client_credential(ca, root / SERVER_ID)
    idents = [f"PUMP-{n:04d}" for n in range(PUMPS)]
    for ident in idents:
        ca.issue(CertKind.PUMP, ident).write(root / ident)

    rows: dict[tuple[str, int], DeviceMessage] = {}
    offered: list[int] = []  # messages handed to store, duplicates included
    changed = asyncio.Event()

    async def store(batch: Sequence[DeviceMessage]) -> None:
        offered.append(len(batch))
        for message in batch:
            rows.setdefault((message.device_id, message.seq), message)
        changed.set()

    async def until(count: int) -> None:
        while len(rows) < count:
            changed.clear()
            await changed.wait()

    async def execute(command: CommandMessage) -> CommandOutcome:
        return CommandOutcome(AckOutcome.ACCEPTED)

    async def scenario() -> None:
        log = SecurityEventLog()
        clock = SystemClock()
        broker = Broker(server_tls_context(root / "broker"), log, port=0)
        await broker.start()
        port = broker.port

        def connector(ident: str, identity: PeerIdentity) -> Connector:
            tls = client_tls_context(root / ident)

            async def connect(handler: MessageHandler) -> Session:
                client = MqttClient("127.0.0.1", port, tls, identity, on_message=handler)
                await client.connect()
                return client

            return connect

        server = ServerLink(
            connector(SERVER_ID, SERVER_IDENTITY), store, clock=clock, events=log, retry_s=0.1
        )
        links = [
            DeviceLink(
                Outbox(ident, clock),
                connector(ident, PeerIdentity(CertKind.PUMP, ident)),
                execute,
                clock=clock,
                events=log,
                retry_s=0.1,
                max_retry_s=1.0,
            )
            for ident in idents
        ]
        tasks = [asyncio.ensure_future(server.run())]
        tasks += [asyncio.ensure_future(link.run()) for link in links]
        for round_no in range(ROUNDS):
            for n, link in enumerate(links):
                link.put(
                    StatusMessage,
                    state=PumpState.INFUSING,
                    battery_percent=90 - round_no,
                    on_mains=n % 2 == 0,
                    firmware_version="2.1.0",
                )
                link.put(
                    DeviceEvent,
                    event=EventKind.SENSOR,
                    log_seq=round_no + 1,
                    occurred_at_ms=round_no,
                    summary=f"round {round_no}",
                )
            if round_no == 0:
                await until(PUMPS * 2)
            elif round_no == 1:  # the broker goes down with this round on the wire
                await asyncio.sleep(0.005)  # some of the round is stored, some acks are lost
                await broker.stop()
                broker = Broker(server_tls_context(root / "broker"), log, port=port)
                await broker.start()
        await until(PUMPS * 2 * ROUNDS)
        for link in links:
            await link.stop()
        await server.stop()
        await asyncio.gather(*tasks)
        await broker.stop()
        assert [e.code for e in log] == []

    run(scenario(), timeout_s=300)
    assert len(rows) == PUMPS * 2 * ROUNDS
    for ident in idents:
        assert sorted(seq for device, seq in rows if device == ident) == list(
            range(1, 2 * ROUNDS + 1)
        )
    assert sum(offered) >= len(rows)  # resent copies reach store, which keeps the first
