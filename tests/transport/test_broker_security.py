"""The embedded broker over real TLS on localhost: every refusal the issue lists, each with its
specific security event, and the deliveries that must still work."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from tests.transport.conftest import (
    SERVER_ID,
    SERVER_IDENTITY,
    Inbox,
    Pki,
    client_for,
    pump_identity,
    run,
    running_broker,
    status,
)

from pumpguard.pki import CertKind, PeerIdentity, PkiEvent, client_tls_context
from pumpguard.security_events import Component, SecurityEventLog
from pumpguard.transport import (
    Channel,
    CommandAction,
    CommandMessage,
    ConnectRefusedError,
    MqttClient,
    NotConnectedError,
    QoS,
    ReasonCode,
    TransportEvent,
    decode_message,
    device_topic,
    encode_message,
)
from pumpguard.transport.codec import Connect, Publish, encode_packet


async def _refused_connection(pki: Pki, creds: str, ident: str) -> SecurityEventLog:
    log = SecurityEventLog()
    async with running_broker(pki, log) as broker:
        client = client_for(pki, broker.port, creds, pump_identity(ident))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await client.connect()
        assert broker.connected == frozenset()
    return log


@pytest.mark.parametrize(
    ("creds", "ident", "code"),
    [
        ("no-cert", "PUMP-0001", PkiEvent.TLS_NO_CLIENT_CERT),
        ("foreign", "PUMP-0001", PkiEvent.TLS_UNKNOWN_CA),
        ("expired", "PUMP-0009", PkiEvent.TLS_CERT_EXPIRED),
        ("revoked", "PUMP-0007", PkiEvent.TLS_CERT_REVOKED),
    ],
)
def test_bad_client_certificates_are_refused_with_a_specific_event(
    pki: Pki, creds: str, ident: str, code: PkiEvent
) -> None:
    log = run(_refused_connection(pki, creds, ident))
    events = log.with_code(code)
    assert len(events) == 1, [e.code for e in log]
    assert events[0].component is Component.TRANSPORT
    assert events[0].peer is not None and events[0].peer.startswith("127.0.0.1:")


def test_a_good_certificate_is_admitted_under_its_own_identity(pki: Pki) -> None:
    async def scenario() -> tuple[frozenset[str], SecurityEventLog]:
        log = SecurityEventLog()
        async with running_broker(pki, log) as broker:
            client = client_for(pki, broker.port, "PUMP-0001", pump_identity("PUMP-0001"))
            connack = await client.connect()
            assert connack.reason is ReasonCode.SUCCESS
            assert connack.properties.maximum_qos == 1
            assert connack.properties.retain_available == 0
            seen = broker.connected
            await client.close()
        return seen, log

    seen, log = run(scenario())
    assert seen == {"PUMP-0001"}
    assert len(log) == 0


def test_client_id_that_is_not_the_certificate_identity_is_refused(pki: Pki) -> None:
    async def scenario() -> tuple[ReasonCode, SecurityEventLog]:
        log = SecurityEventLog()
        async with running_broker(pki, log) as broker:
            # a pump with PUMP-0001's certificate claiming to be PUMP-0002
            client = client_for(pki, broker.port, "PUMP-0001", pump_identity("PUMP-0002"))
            with pytest.raises(ConnectRefusedError) as refused:
                await client.connect()
            assert broker.connected == frozenset()
        return refused.value.reason, log

    reason, log = run(scenario())
    assert reason is ReasonCode.NOT_AUTHORIZED
    (event,) = log.with_code(TransportEvent.IDENTITY_MISMATCH)
    assert event.device_id == "PUMP-0001"
    assert event.attributes["claimed"] == "PUMP-0002"


def test_publishing_to_another_pumps_topic_is_refused(pki: Pki) -> None:
    async def scenario() -> tuple[ReasonCode, Inbox, SecurityEventLog]:
        log = SecurityEventLog()
        async with running_broker(pki, log) as broker:
            inbox = Inbox()
            server = client_for(pki, broker.port, SERVER_ID, SERVER_IDENTITY, inbox)
            await server.connect()
            await server.subscribe(f"pumpguard/v1/devices/+/{Channel.TELEMETRY}")
            pump = client_for(pki, broker.port, "PUMP-0001", pump_identity("PUMP-0001"))
            await pump.connect()
            reason = await pump.publish(
                device_topic("PUMP-0002", Channel.TELEMETRY), status("PUMP-0002")
            )
            await pump.close()
            await server.close()
        return reason, inbox, log

    reason, inbox, log = run(scenario())
    assert reason is ReasonCode.NOT_AUTHORIZED
    assert inbox.received == []
    (event,) = log.with_code(TransportEvent.ACL_PUBLISH_DENIED)
    assert event.device_id == "PUMP-0001"
    assert event.attributes["topic"] == "pumpguard/v1/devices/PUMP-0002/telemetry"


def test_qos0_publish_outside_the_acl_disconnects_with_not_authorized(pki: Pki) -> None:
    async def scenario() -> tuple[ReasonCode | None, SecurityEventLog]:
        log = SecurityEventLog()
        async with running_broker(pki, log) as broker:
            pump = client_for(pki, broker.port, "PUMP-0001", pump_identity("PUMP-0001"))
            await pump.connect()
            await pump.publish(device_topic("PUMP-0002", Channel.EVENTS), b"{}", QoS.AT_MOST_ONCE)
            reason = await pump.wait_closed()
        return reason, log

    reason, log = run(scenario())
    assert reason is ReasonCode.NOT_AUTHORIZED
    assert len(log.with_code(TransportEvent.ACL_PUBLISH_DENIED)) == 1


def test_subscribing_to_another_pumps_commands_is_refused(pki: Pki) -> None:
    async def scenario() -> tuple[list[ReasonCode], SecurityEventLog]:
        log = SecurityEventLog()
        async with running_broker(pki, log) as broker:
            pump = client_for(pki, broker.port, "PUMP-0001", pump_identity("PUMP-0001"), Inbox())
            await pump.connect()
            reasons = [
                await pump.subscribe(device_topic("PUMP-0002", Channel.COMMANDS)),
                await pump.subscribe("pumpguard/v1/devices/+/commands"),
                await pump.subscribe("#"),
                await pump.subscribe(device_topic("PUMP-0001", Channel.COMMANDS)),
            ]
            await pump.close()
        return reasons, log

    reasons, log = run(scenario())
    assert reasons == [
        ReasonCode.NOT_AUTHORIZED,
        ReasonCode.NOT_AUTHORIZED,
        ReasonCode.NOT_AUTHORIZED,
        ReasonCode.GRANTED_QOS_1,
    ]
    assert len(log.with_code(TransportEvent.ACL_SUBSCRIBE_DENIED)) == 3


def test_a_payload_naming_another_device_is_refused_as_spoofed(pki: Pki) -> None:
    async def scenario() -> tuple[ReasonCode, ReasonCode, Inbox, SecurityEventLog]:
        log = SecurityEventLog()
        async with running_broker(pki, log) as broker:
            inbox = Inbox()
            server = client_for(pki, broker.port, SERVER_ID, SERVER_IDENTITY, inbox)
            await server.connect()
            await server.subscribe("pumpguard/v1/devices/+/telemetry")
            pump = client_for(pki, broker.port, "PUMP-0001", pump_identity("PUMP-0001"))
            await pump.connect()
            own_topic = device_topic("PUMP-0001", Channel.TELEMETRY)
            spoofed = await pump.publish(own_topic, status("PUMP-0002"))
            garbage = await pump.publish(own_topic, b'{"schema_version": 1, "kind": "status"}')
            await pump.close()
            await server.close()
        return spoofed, garbage, inbox, log

    spoofed, garbage, inbox, log = run(scenario())
    assert spoofed is ReasonCode.NOT_AUTHORIZED
    assert garbage is ReasonCode.PAYLOAD_FORMAT_INVALID
    assert inbox.received == []
    (event,) = log.with_code(TransportEvent.PAYLOAD_SPOOFED)
    assert event.attributes["claimed"] == "PUMP-0002"
    assert len(log.with_code(TransportEvent.PAYLOAD_INVALID)) == 1


def test_malformed_packet_disconnects_with_0x81_and_an_event(pki: Pki) -> None:
    async def scenario() -> tuple[bytes, SecurityEventLog]:
        log = SecurityEventLog()
        async with running_broker(pki, log) as broker:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1",
                broker.port,
                ssl=client_tls_context(pki.creds("PUMP-0001")),
                server_hostname="127.0.0.1",
            )
            writer.write(encode_packet(Connect(client_id="PUMP-0001")))
            await reader.readexactly(2)  # CONNACK fixed header
            await reader.read(1024)
            # a PUBLISH whose topic length claims more bytes than the packet holds
            writer.write(bytes([0x30, 0x04, 0x00, 0x10, 0x61, 0x62]))
            answer = await reader.read(1024)
            writer.close()
        return answer, log

    answer, log = run(scenario())
    assert answer[0] == 0xE0  # DISCONNECT
    assert answer[2] == ReasonCode.MALFORMED_PACKET
    (event,) = log.with_code(TransportEvent.MALFORMED_PACKET)
    assert event.device_id == "PUMP-0001"


def test_telemetry_reaches_the_server_and_is_acknowledged_end_to_end(pki: Pki) -> None:
    async def scenario() -> tuple[list[ReasonCode], Inbox, SecurityEventLog]:
        log = SecurityEventLog()
        async with running_broker(pki, log) as broker:
            pump = client_for(pki, broker.port, "PUMP-0001", pump_identity("PUMP-0001"))
            await pump.connect()
            topic = device_topic("PUMP-0001", Channel.TELEMETRY)
            reasons = [await pump.publish(topic, status("PUMP-0001", 1))]
            inbox = Inbox()
            server = client_for(pki, broker.port, SERVER_ID, SERVER_IDENTITY, inbox)
            await server.connect()
            await server.subscribe("pumpguard/v1/devices/+/telemetry")
            reasons.append(await pump.publish(topic, status("PUMP-0001", 2)))
            inbox.answer = ReasonCode.UNSPECIFIED_ERROR  # e.g. the database is down
            reasons.append(await pump.publish(topic, status("PUMP-0001", 3)))
            await pump.close()
            await server.close()
        return reasons, inbox, log

    reasons, inbox, log = run(scenario())
    assert reasons == [
        ReasonCode.NO_MATCHING_SUBSCRIBERS,
        ReasonCode.SUCCESS,
        ReasonCode.UNSPECIFIED_ERROR,
    ]
    seqs = [decode_message(d.payload).seq for d in inbox.received]  # type: ignore[union-attr]
    assert seqs == [2, 3]
    assert len(log) == 0


def test_server_commands_reach_only_their_pump(pki: Pki) -> None:
    async def scenario() -> tuple[ReasonCode, ReasonCode, Inbox, Inbox]:
        log = SecurityEventLog()
        async with running_broker(pki, log) as broker:
            inbox1, inbox2 = Inbox(), Inbox()
            pump1 = client_for(pki, broker.port, "PUMP-0001", pump_identity("PUMP-0001"), inbox1)
            pump2 = client_for(pki, broker.port, "PUMP-0002", pump_identity("PUMP-0002"), inbox2)
            for pump, ident in ((pump1, "PUMP-0001"), (pump2, "PUMP-0002")):
                await pump.connect()
                await pump.subscribe(device_topic(ident, Channel.COMMANDS))
            server = client_for(pki, broker.port, SERVER_ID, SERVER_IDENTITY)
            await server.connect()
            command = CommandMessage(
                device_id="PUMP-0001",
                command_id="cmd-1",
                action=CommandAction.REQUEST_STATUS,
                sent_at_ms=5,
            )
            delivered = await server.publish(
                device_topic("PUMP-0001", Channel.COMMANDS), encode_message(command)
            )
            # a command whose payload names another pump than its topic
            mismatched = await server.publish(
                device_topic("PUMP-0002", Channel.COMMANDS), encode_message(command)
            )
            for client in (pump1, pump2, server):
                await client.close()
        return delivered, mismatched, inbox1, inbox2

    delivered, mismatched, inbox1, inbox2 = run(scenario())
    assert delivered is ReasonCode.SUCCESS
    assert mismatched is ReasonCode.PAYLOAD_FORMAT_INVALID
    assert len(inbox1.received) == 1
    assert inbox2.received == []


def test_a_second_connection_with_the_same_identity_takes_over(pki: Pki) -> None:
    async def scenario() -> tuple[ReasonCode | None, bool, SecurityEventLog]:
        log = SecurityEventLog()
        async with running_broker(pki, log) as broker:
            first = client_for(pki, broker.port, "PUMP-0001", pump_identity("PUMP-0001"))
            second = client_for(pki, broker.port, "PUMP-0001", pump_identity("PUMP-0001"))
            await first.connect()
            await second.connect()
            reason = await first.wait_closed()
            still = second.connected
            with pytest.raises(NotConnectedError):
                await first.publish(device_topic("PUMP-0001", Channel.EVENTS), b"{}")
            await second.close()
        return reason, still, log

    reason, still, log = run(scenario())
    assert reason is ReasonCode.SESSION_TAKEN_OVER
    assert still
    assert len(log.with_code(TransportEvent.SESSION_TAKEN_OVER)) == 1


def test_retain_and_qos2_are_refused_as_not_offered(pki: Pki) -> None:
    async def scenario(packet: Publish) -> tuple[bytes, SecurityEventLog]:
        log = SecurityEventLog()
        async with running_broker(pki, log) as broker:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1",
                broker.port,
                ssl=client_tls_context(pki.creds("PUMP-0001")),
                server_hostname="127.0.0.1",
            )
            writer.write(encode_packet(Connect(client_id="PUMP-0001")))
            await reader.read(1024)
            writer.write(encode_packet(packet))
            answer = await reader.read(1024)
            writer.close()
        return answer, log

    topic = device_topic("PUMP-0001", Channel.EVENTS)
    retained, log = run(scenario(Publish(topic, b"{}", QoS.AT_LEAST_ONCE, 1, retain=True)))
    assert (retained[0], retained[2]) == (0xE0, ReasonCode.RETAIN_NOT_SUPPORTED)
    assert len(log.with_code(TransportEvent.PROTOCOL_VIOLATION)) == 1
    qos2, _ = run(scenario(Publish(topic, b"{}", QoS.EXACTLY_ONCE, 1)))
    assert (qos2[0], qos2[2]) == (0xE0, ReasonCode.QOS_NOT_SUPPORTED)


def test_a_pump_certificate_cannot_act_as_the_server(pki: Pki) -> None:
    async def scenario() -> ReasonCode:
        log = SecurityEventLog()
        async with running_broker(pki, log) as broker:
            pump = MqttClient(
                "127.0.0.1",
                broker.port,
                client_tls_context(pki.creds("PUMP-0001")),
                PeerIdentity(CertKind.PUMP, "PUMP-0001"),
                on_message=Inbox(),
            )
            await pump.connect()
            reason = await pump.subscribe("pumpguard/v1/devices/+/telemetry")
            await pump.close()
        return reason

    assert run(scenario()) is ReasonCode.NOT_AUTHORIZED
