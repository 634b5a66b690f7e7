"""The running server: ingest over real mTLS MQTT, restart with every record kept, commands."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from tests.server.runtime.support import (
    client_for,
    config,
    provision,
    run,
    running_stack,
    security_events,
    stored_events,
    wait_stored,
)

from pumpguard.clinical import PumpKind, load_library
from pumpguard.clock import SystemClock
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.devices.infusion import PumpState
from pumpguard.pki import CertKind, PeerIdentity, read_credential
from pumpguard.security_events import SecurityEventLog
from pumpguard.server import AssetService, AssetState, IngestService, Role, Store, UserService
from pumpguard.server.device_runtime import SeqReservation, SimulatedPump, mqtt_connector
from pumpguard.server.runtime import INGEST_CLIENT_ID, LISTENER_ID, Stack, StackError
from pumpguard.transport import (
    Channel,
    CommandAction,
    Outbox,
    ReasonCode,
    StatusMessage,
    device_topic,
    encode_message,
)


def _serial(cert_dir: Path) -> int:
    return read_credential(cert_dir).serial


def test_a_restart_keeps_users_assets_events_and_credentials(
    tmp_path: Path, database_url: str | None
) -> None:
    data_dir = tmp_path / "data"

    async def first_run() -> tuple[int, int, int]:
        async with running_stack(data_dir, database_url) as stack:
            await asyncio.to_thread(_create_user, stack.store, "bob")
            creds = await provision(stack, "PUMP-0001")
            pump = client_for(stack, creds)
            await pump.connect()
            outbox = Outbox("PUMP-0001", SystemClock())
            for battery in (90, 89, 88):
                outbox.put(
                    StatusMessage,
                    state=PumpState.IDLE,
                    battery_percent=battery,
                    on_mains=False,
                    firmware_version="t",
                )
            assert (await outbox.flush(pump)).delivered == 3
            await pump.close()
            assert stack.ingest_counts.stored == 3
            server = data_dir / "server"
            return _serial(creds), _serial(server / "listener"), _serial(server / "ingest")

    pump_serial, listener_serial, ingest_serial = run(first_run())

    async def second_run() -> tuple[list[str], str, int, int, list[int]]:
        async with running_stack(data_dir, database_url) as stack:
            creds = await provision(stack, "PUMP-0001")  # the same credential, not a new one
            pump = client_for(stack, creds)
            await pump.connect()  # the pump's certificate still works
            await pump.close()
            with stack.store.transaction() as session:
                users = [u.username for u in UserService(session, stack.store.ctx).list_users()]
                asset = AssetService(session, stack.store.ctx).get("PUMP-0001")
                status = IngestService(session, stack.store.ctx).status("PUMP-0001")
            server = data_dir / "server"
            serials = [_serial(creds), _serial(server / "listener"), _serial(server / "ingest")]
            return (
                users,
                str(asset.state),
                status.battery_pct or 0,
                stored_events(stack, "PUMP-0001"),
                serials,
            )

    users, state, battery, stored, serials = run(second_run())
    assert users == ["bob"]
    assert state == AssetState.IN_SERVICE
    assert (battery, stored) == (88, 3)
    assert serials == [pump_serial, listener_serial, ingest_serial]


def _create_user(store: Store, username: str) -> None:
    with store.transaction() as session:
        UserService(session, store.ctx).create_user(username, Role.BIOMED, "test")


def test_a_resent_message_is_stored_once_and_counted(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        async with running_stack(tmp_path / "data", None) as stack:
            pump = client_for(stack, await provision(stack, "PUMP-0001"))
            await pump.connect()
            message = StatusMessage(
                device_id="PUMP-0001",
                seq=7,
                sent_at_ms=5,
                state=PumpState.IDLE,
                battery_percent=50,
                on_mains=True,
                firmware_version="t",
            )
            topic = device_topic("PUMP-0001", Channel.TELEMETRY)
            for _ in range(2):  # a PUBACK lost with the connection: the pump sends it again
                assert await pump.publish(topic, encode_message(message)) is ReasonCode.SUCCESS
            await pump.close()
            counts = stack.ingest_counts
            return counts.stored, counts.duplicates

    assert run(scenario()) == (1, 1)


def test_a_pump_not_in_service_is_refused_by_ingest(tmp_path: Path) -> None:
    """A certificate from our CA is not enough: the asset must be admitted to report."""

    async def scenario() -> list[str]:
        async with running_stack(tmp_path / "data", None) as stack:
            creds = tmp_path / "unregistered"
            stack.ca.issue(CertKind.PUMP, "PUMP-0042").write(creds)
            pump = client_for(stack, creds)
            await pump.connect()
            outbox = Outbox("PUMP-0042", SystemClock())
            outbox.put(
                StatusMessage,
                state=PumpState.IDLE,
                battery_percent=1,
                on_mains=True,
                firmware_version="t",
            )
            await outbox.flush(pump)
            await pump.close()
            assert stack.ingest_counts.refused == 1
            return [e.code for e in security_events(stack) if e.device_id == "PUMP-0042"]

    assert "server.ingest.unknown_device" in run(scenario())


def test_a_simulated_pump_reports_and_answers_commands(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[str], dict[str, object]]:
        async with running_stack(tmp_path / "data", None) as stack:
            creds = await provision(stack, "PUMP-0005")
            pump = SimulatedPump(
                "PUMP-0005",
                PumpKind.LVP,
                mqtt_connector(
                    stack.local_address,
                    stack.mqtt_port,
                    creds,
                    PeerIdentity(CertKind.PUMP, "PUMP-0005"),
                ),
                clock=SystemClock(),
                events=SecurityEventLog(),
                library=load_library(EXAMPLE_LIBRARY),
                care_area="ICU",
                seq=SeqReservation(creds / "outbox-seq"),
            )
            task = asyncio.ensure_future(pump.run())
            await wait_stored(stack, "PUMP-0005", 4)  # power-on, self-test, care-area, status
            while not pump.link.connected:
                await asyncio.sleep(0.05)
            await stack.send_command("PUMP-0005", CommandAction.REQUEST_STATUS)
            await stack.send_command("PUMP-0005", CommandAction.RESUME)
            await wait_stored(stack, "PUMP-0005", 8)  # + a status and two acks
            await pump.stop()
            await task
            with stack.store.transaction() as session:
                events = IngestService(session, stack.store.ctx).events(device_id="PUMP-0005")
            acks = [e.body for e in events if e.kind == "command-ack"]
            return [e.kind for e in events], {str(a["outcome"]): a for a in acks}

    kinds, acks = run(scenario())
    assert kinds[:3] == ["power-on", "self-test", "care-area"]
    assert kinds.count("status") == 2
    assert set(acks) == {"accepted", "rejected"}  # resuming from the network is refused


def test_a_pump_buffers_while_the_server_is_down_and_sends_it_all_later(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> tuple[int, int]:
        data_dir = tmp_path / "data"
        async with running_stack(data_dir, None) as stack:
            creds = await provision(stack, "PUMP-0006")
        connect = mqtt_connector("127.0.0.1", port, creds, PeerIdentity(CertKind.PUMP, "PUMP-0006"))
        pump = SimulatedPump(
            "PUMP-0006",
            PumpKind.LVP,
            connect,
            clock=SystemClock(),
            events=SecurityEventLog(),
            retry_s=0.05,
            max_retry_s=0.2,
        )
        task = asyncio.ensure_future(pump.run())
        while len(pump.outbox.pending) < 3:  # power-on, self-test, status: nowhere to go
            await asyncio.sleep(0.05)
        buffered = len(pump.outbox.pending)
        async with running_stack(data_dir, None, mqtt_port=port) as stack:
            await wait_stored(stack, "PUMP-0006", buffered)
            await pump.stop()
            await task
            return buffered, stored_events(stack, "PUMP-0006")

    buffered, stored = run(scenario())
    assert stored >= buffered >= 3


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def scenario() -> None:
            await Stack.start(config(tmp_path / "data", None, http_port=port))

        with pytest.raises(StackError, match=f"HTTPS on 127.0.0.1:{port}"):
            run(scenario())


def test_server_identities_are_what_the_broker_admits(tmp_path: Path) -> None:
    async def scenario() -> frozenset[str]:
        async with running_stack(tmp_path / "data", None) as stack:
            assert stack.broker is not None
            listener = read_credential(tmp_path / "data" / "server" / "listener")
            assert listener.identity.ident == LISTENER_ID
            return stack.broker.connected

    assert run(scenario()) == {INGEST_CLIENT_ID}
