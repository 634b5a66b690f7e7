"""The production configuration: a Mosquitto process started from the generated config on a
free port (never the system broker on 1883), checked with real certificates."""

from __future__ import annotations

import asyncio
import getpass
import ssl
from collections.abc import Iterator, Sequence

import pytest
from tests.transport.conftest import (
    SECOND_SERVER_ID,
    SERVER_ID,
    SERVER_IDENTITY,
    Inbox,
    Pki,
    client_for,
    pump_identity,
    run,
    status,
)
from tests.transport.mosquitto_process import free_port, needs_mosquitto, running_mosquitto

from pumpguard.clock import SystemClock
from pumpguard.pki import CertKind, PeerIdentity, client_tls_context
from pumpguard.security_events import SecurityEventLog
from pumpguard.transport import (
    Channel,
    DeviceMessage,
    MessageHandler,
    MosquittoSettings,
    MqttClient,
    ReasonCode,
    ServerLink,
    Session,
    TransportEvent,
    device_topic,
    write_mosquitto_config,
)

# The broker on PUMPGUARD_TEST_MQTT_URL (1883) is plaintext and shared: never used here.
pytestmark = needs_mosquitto


@pytest.fixture(scope="module")
def mosquitto(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    directory = tmp_path_factory.mktemp("mosquitto")
    port = free_port()
    conf = write_mosquitto_config(
        directory,
        MosquittoSettings(
            cert_dir=pki.creds("broker"),
            crl=pki.crl,
            port=port,
            server_idents=(SERVER_ID, SECOND_SERVER_ID),
            log_file=directory / "mosquitto.log",
            run_as_user=getpass.getuser(),  # so that it can read the test's private key
        ),
    )
    with running_mosquitto(conf, port):
        yield port


@pytest.mark.parametrize("creds", ["no-cert", "foreign", "expired", "revoked"])
def test_mosquitto_refuses_bad_certificates(pki: Pki, mosquitto: int, creds: str) -> None:
    async def scenario() -> None:
        client = client_for(pki, mosquitto, creds, pump_identity("PUMP-0001"))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await client.connect()

    run(scenario())


def test_mosquitto_enforces_the_generated_acl(pki: Pki, mosquitto: int) -> None:
    async def scenario() -> tuple[list[ReasonCode], list[ReasonCode], list[Inbox]]:
        server_inbox, pump1_inbox, pump2_inbox = Inbox(), Inbox(), Inbox()
        server = client_for(pki, mosquitto, SERVER_ID, SERVER_IDENTITY, server_inbox)
        await server.connect()
        subs = [await server.subscribe("pumpguard/v1/devices/+/telemetry")]
        pump1 = client_for(pki, mosquitto, "PUMP-0001", pump_identity("PUMP-0001"), pump1_inbox)
        pump2 = client_for(pki, mosquitto, "PUMP-0002", pump_identity("PUMP-0002"), pump2_inbox)
        await pump1.connect()
        await pump2.connect()
        subs.append(await pump2.subscribe(device_topic("PUMP-0002", Channel.COMMANDS)))
        # Mosquitto 2.0 grants this, then refuses every delivery on it (checked below)
        subs.append(await pump1.subscribe(device_topic("PUMP-0002", Channel.COMMANDS)))
        subs.append(await pump1.subscribe(device_topic("PUMP-0001", Channel.COMMANDS)))
        pubs = [
            await pump1.publish(device_topic("PUMP-0001", Channel.TELEMETRY), status("PUMP-0001")),
            await pump1.publish(device_topic("PUMP-0002", Channel.TELEMETRY), status("PUMP-0002")),
            await pump1.publish(device_topic("PUMP-0002", Channel.COMMANDS), b"{}"),
            await server.publish(device_topic("PUMP-0002", Channel.COMMANDS), b"{}"),
            await server.publish(device_topic("PUMP-0002", Channel.TELEMETRY), b"{}"),
            # sentinels: once these arrive, anything wrongly routed before them has too
            await pump2.publish(device_topic("PUMP-0002", Channel.TELEMETRY), status("PUMP-0002")),
            await server.publish(device_topic("PUMP-0001", Channel.COMMANDS), b"{}"),
        ]
        await server_inbox.until(2)
        await pump1_inbox.until(1)
        await pump2_inbox.until(1)
        for client in (pump1, pump2, server):
            await client.close()
        return subs, pubs, [server_inbox, pump1_inbox, pump2_inbox]

    subs, pubs, (server_inbox, pump1_inbox, pump2_inbox) = run(scenario())
    assert subs == [ReasonCode.GRANTED_QOS_1] * 4
    assert pubs == [
        ReasonCode.SUCCESS,
        ReasonCode.NOT_AUTHORIZED,
        ReasonCode.NOT_AUTHORIZED,
        ReasonCode.SUCCESS,
        ReasonCode.NOT_AUTHORIZED,
        ReasonCode.SUCCESS,
        ReasonCode.SUCCESS,
    ]
    assert [d.topic for d in server_inbox.received] == [
        "pumpguard/v1/devices/PUMP-0001/telemetry",
        "pumpguard/v1/devices/PUMP-0002/telemetry",
    ]
    assert [d.topic for d in pump2_inbox.received] == ["pumpguard/v1/devices/PUMP-0002/commands"]
    assert [d.topic for d in pump1_inbox.received] == ["pumpguard/v1/devices/PUMP-0001/commands"]


def test_mosquitto_takes_the_identity_from_the_certificate(pki: Pki, mosquitto: int) -> None:
    """Mosquitto admits any client id (the embedded broker refuses a mismatch), but the ACL
    uses the certificate CN: claiming PUMP-0002 with PUMP-0001's certificate gains nothing."""

    async def scenario() -> ReasonCode:
        impostor = client_for(pki, mosquitto, "PUMP-0001", pump_identity("PUMP-0002"))
        await impostor.connect()
        reason = await impostor.publish(
            device_topic("PUMP-0002", Channel.TELEMETRY), status("PUMP-0002")
        )
        await impostor.close()
        return reason

    assert run(scenario()) is ReasonCode.NOT_AUTHORIZED


def test_mosquitto_prefers_tls_13_and_accepts_12(pki: Pki, mosquitto: int) -> None:
    async def version(maximum: ssl.TLSVersion) -> str:
        context = client_tls_context(pki.creds("PUMP-0001"))
        context.maximum_version = maximum
        _, writer = await asyncio.open_connection(
            "127.0.0.1", mosquitto, ssl=context, server_hostname="127.0.0.1"
        )
        negotiated = str(writer.get_extra_info("ssl_object").version())
        writer.close()
        return negotiated

    async def scenario() -> tuple[str, str]:
        return (
            await version(ssl.TLSVersion.MAXIMUM_SUPPORTED),
            await version(ssl.TLSVersion.TLSv1_2),
        )

    assert run(scenario()) == ("TLSv1.3", "TLSv1.2")


def test_mosquitto_queues_for_a_server_with_a_persistent_session(pki: Pki, mosquitto: int) -> None:
    """Mosquitto acknowledges on receipt, so the server keeps a session there while it is away
    (the embedded broker instead acknowledges only what the server took)."""

    def server_client(inbox: Inbox) -> MqttClient:
        return MqttClient(
            "127.0.0.1",
            mosquitto,
            client_tls_context(pki.creds(SERVER_ID)),
            SERVER_IDENTITY,
            on_message=inbox,
            session_expiry_s=3600,
        )

    async def scenario() -> tuple[ReasonCode, bool, list[str]]:
        first = server_client(Inbox())
        await first.connect()
        await first.subscribe("pumpguard/v1/devices/+/events")
        await first.close()
        pump = client_for(pki, mosquitto, "PUMP-0002", pump_identity("PUMP-0002"))
        await pump.connect()
        reason = await pump.publish(device_topic("PUMP-0002", Channel.EVENTS), b"{}")
        await pump.close()
        inbox = Inbox()
        again = server_client(inbox)
        connack = await again.connect()
        await inbox.until(1)
        await again.close()
        return reason, connack.session_present, [d.topic for d in inbox.received]

    reason, session_present, topics = run(scenario())
    assert reason is ReasonCode.SUCCESS
    assert session_present
    assert topics == ["pumpguard/v1/devices/PUMP-0002/events"]


def test_server_workers_share_the_device_messages_behind_mosquitto(
    pki: Pki, mosquitto: int
) -> None:
    """Two server workers with one share group: each device message reaches exactly one of
    them (MQTT 5 shared subscription), and the payload check runs on each."""
    events = SecurityEventLog()

    def worker(ident: str, stored: list[int]) -> ServerLink:
        async def connect(handler: MessageHandler) -> Session:
            client = MqttClient(
                "127.0.0.1",
                mosquitto,
                client_tls_context(pki.creds(ident)),
                PeerIdentity(CertKind.SERVER, ident),
                on_message=handler,
            )
            await client.connect()
            return client

        async def store(batch: Sequence[DeviceMessage]) -> None:
            stored.extend(m.seq for m in batch)

        return ServerLink(
            connect,
            store,
            clock=SystemClock(),
            events=events,
            check_payloads=True,
            share_group="ingest",
            batch_delay_s=0.01,
            retry_s=0.1,
        )

    async def scenario() -> tuple[list[int], list[int], list[ReasonCode]]:
        first: list[int] = []
        second: list[int] = []
        links = [worker(SERVER_ID, first), worker(SECOND_SERVER_ID, second)]
        tasks = [asyncio.ensure_future(link.run()) for link in links]
        for link in links:
            await link.wait_ready()
        pump = client_for(pki, mosquitto, "PUMP-0001", pump_identity("PUMP-0001"))
        await pump.connect()
        topic = device_topic("PUMP-0001", Channel.TELEMETRY)
        reasons = [await pump.publish(topic, status("PUMP-0001", seq)) for seq in range(1, 21)]
        reasons.append(await pump.publish(topic, status("PUMP-0002", 99)))  # wrong device id
        await pump.close()
        while len(first) + len(second) < 20 or not events.with_code(TransportEvent.PAYLOAD_SPOOFED):
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # a duplicate or the spoofed status would arrive by now
        for link in links:
            await link.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return first, second, reasons

    first, second, reasons = run(scenario())
    assert reasons == [ReasonCode.SUCCESS] * 21  # Mosquitto acknowledges on receipt
    assert sorted(first + second) == list(range(1, 21))
    assert first and second
    assert len(events.with_code(TransportEvent.PAYLOAD_SPOOFED)) == 1
