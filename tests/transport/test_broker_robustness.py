"""The broker under hostile or unusual clients: garbage, silence, pipelining."""

from __future__ import annotations

import asyncio
import random
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

from pumpguard.pki import PkiEvent, client_tls_context, server_tls_context
from pumpguard.security_events import SecurityEventLog
from pumpguard.transport import (
    Broker,
    BrokerLimits,
    Channel,
    Delivery,
    MqttClient,
    ReasonCode,
    TransportEvent,
    device_topic,
)
from pumpguard.transport.codec import (
    ConnAck,
    Connect,
    Disconnect,
    PacketDecoder,
    PacketError,
    PingReq,
    PingResp,
    Properties,
    SubAck,
    Subscribe,
    Subscription,
    Will,
    encode_packet,
)


async def _open(pki: Pki, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        "127.0.0.1",
        port,
        ssl=client_tls_context(pki.creds("PUMP-0001")),
        server_hostname="127.0.0.1",
    )


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    data = b""
    while chunk := await reader.read(4096):
        data += chunk
    return data


def _hostile_tails(count: int) -> list[bytes]:
    """Random bytes that our own decoder refuses somewhere (so the broker must hang up,
    rather than wait for the rest of a packet that never comes)."""
    rng = random.Random(20261121)
    tails: list[bytes] = []
    while len(tails) < count:
        tail = rng.randbytes(rng.randint(1, 300))
        try:
            list(PacketDecoder(65_536).feed(tail))
        except PacketError:
            tails.append(tail)
    return tails


def test_garbage_after_connect_never_takes_the_broker_down(pki: Pki) -> None:
    samples = _hostile_tails(25)

    async def scenario() -> tuple[list[bytes], ReasonCode, SecurityEventLog]:
        log = SecurityEventLog()
        answers = []
        async with running_broker(pki, log) as broker:
            for garbage in samples:
                reader, writer = await _open(pki, broker.port)
                writer.write(encode_packet(Connect("PUMP-0001")) + garbage)
                answers.append(await _read_all(reader))
                writer.close()
            client = client_for(pki, broker.port, "PUMP-0001", pump_identity("PUMP-0001"))
            connack = await client.connect()
            await client.close()
        return answers, connack.reason, log

    answers, still_serving, log = run(scenario())
    assert still_serving is ReasonCode.SUCCESS
    for answer in answers:
        packets = list(PacketDecoder().feed(answer))
        assert isinstance(packets[0], ConnAck)
        assert isinstance(packets[-1], Disconnect)
        assert packets[-1].reason.is_failure
    assert len(log) >= len(samples)


def test_packets_pipelined_behind_connect_are_served(pki: Pki) -> None:
    async def scenario() -> list[object]:
        async with running_broker(pki, SecurityEventLog()) as broker:
            reader, writer = await _open(pki, broker.port)
            subscribe = Subscribe(1, (Subscription(device_topic("PUMP-0001", Channel.COMMANDS)),))
            writer.write(encode_packet(Connect("PUMP-0001")) + encode_packet(subscribe))
            decoder = PacketDecoder()
            packets: list[object] = []
            while len(packets) < 2:
                packets += decoder.feed(await reader.read(4096))
            writer.close()
        return packets

    connack, suback = run(scenario())
    assert isinstance(connack, ConnAck) and connack.reason is ReasonCode.SUCCESS
    assert suback == SubAck(1, (ReasonCode.GRANTED_QOS_1,))


def test_silent_peers_are_cut_off_and_reported(pki: Pki) -> None:
    limits = BrokerLimits(handshake_timeout_s=0.3, connect_timeout_s=0.3)

    async def scenario() -> tuple[bytes, bytes, SecurityEventLog]:
        log = SecurityEventLog()
        async with running_broker(pki, log, limits) as broker:
            reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
            no_hello = await _read_all(reader)  # TCP only, never a ClientHello
            writer.close()
            reader, writer = await _open(pki, broker.port)
            no_connect = await _read_all(reader)  # TLS done, never a CONNECT
            writer.close()
        return no_hello, no_connect, log

    no_hello, no_connect, log = run(scenario())
    assert (no_hello, no_connect) == (b"", b"")
    assert len(log.with_code(PkiEvent.TLS_HANDSHAKE_FAILED)) == 1
    (event,) = log.with_code(TransportEvent.PROTOCOL_VIOLATION)
    assert "no CONNECT" in event.message


def test_the_broker_refuses_a_tls_context_weaker_than_production(pki: Pki) -> None:
    weak = pki.server_context()
    weak.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with pytest.raises(ValueError, match="below TLSv1_2"):
        Broker(weak, SecurityEventLog())
    no_client_certs = server_tls_context(pki.creds("broker"), require_client_cert=False)
    with pytest.raises(ValueError, match="client certificates are not required"):
        Broker(no_client_certs, SecurityEventLog())


def test_a_failing_subscriber_handler_makes_the_publisher_keep_its_message(pki: Pki) -> None:
    async def broken(delivery: Delivery) -> ReasonCode:
        raise RuntimeError("database unavailable")

    async def scenario() -> ReasonCode:
        async with running_broker(pki, SecurityEventLog()) as broker:
            server = client_for(pki, broker.port, SERVER_ID, SERVER_IDENTITY, broken)
            await server.connect()
            await server.subscribe("pumpguard/v1/devices/+/telemetry")
            pump = client_for(pki, broker.port, "PUMP-0001", pump_identity("PUMP-0001"))
            await pump.connect()
            reason = await pump.publish(
                device_topic("PUMP-0001", Channel.TELEMETRY), status("PUMP-0001")
            )
            await pump.close()
            await server.close()
        return reason

    assert run(scenario()) is ReasonCode.UNSPECIFIED_ERROR


def test_tls_13_is_negotiated_and_12_is_the_floor(pki: Pki) -> None:
    async def version(port: int, maximum: ssl.TLSVersion) -> str:
        context = client_tls_context(pki.creds("PUMP-0001"))
        context.maximum_version = maximum
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
        )
        negotiated = str(writer.get_extra_info("ssl_object").version())
        writer.write(encode_packet(Connect("PUMP-0001")))
        answer = list(PacketDecoder().feed(await reader.read(4096)))
        assert isinstance(answer[0], ConnAck) and answer[0].reason is ReasonCode.SUCCESS
        writer.close()
        return negotiated

    async def scenario() -> tuple[str, str]:
        async with running_broker(pki, SecurityEventLog()) as broker:
            best = await version(broker.port, ssl.TLSVersion.MAXIMUM_SUPPORTED)
            floor = await version(broker.port, ssl.TLSVersion.TLSv1_2)
        return best, floor

    assert run(scenario()) == ("TLSv1.3", "TLSv1.2")


def test_sockets_beyond_the_limit_are_closed_and_reported(pki: Pki) -> None:
    async def scenario() -> tuple[bytes, ReasonCode, SecurityEventLog]:
        log = SecurityEventLog()
        async with running_broker(pki, log, BrokerLimits(max_connections=1)) as broker:
            first = client_for(pki, broker.port, "PUMP-0001", pump_identity("PUMP-0001"))
            await first.connect()
            reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
            refused = await _read_all(reader)
            writer.close()
            await first.close()
            while broker.connected:  # the broker closes the socket after its DISCONNECT
                await asyncio.sleep(0.01)
            second = client_for(pki, broker.port, "PUMP-0002", pump_identity("PUMP-0002"))
            admitted = (await second.connect()).reason
            await second.close()
        return refused, admitted, log

    refused, admitted, log = run(scenario())
    assert refused == b""
    assert admitted is ReasonCode.SUCCESS
    assert len(log.with_code(TransportEvent.CONNECTION_LIMIT)) == 1


def test_an_empty_client_id_gets_the_certificate_id_and_a_foreign_user_name_is_refused(
    pki: Pki,
) -> None:
    async def connack(port: int, connect: Connect) -> ConnAck:
        reader, writer = await _open(pki, port)
        writer.write(encode_packet(connect))
        answer = list(PacketDecoder().feed(await reader.read(4096)))
        writer.close()
        assert isinstance(answer[0], ConnAck)
        return answer[0]

    async def scenario() -> tuple[ConnAck, ConnAck, SecurityEventLog]:
        log = SecurityEventLog()
        async with running_broker(pki, log) as broker:
            anonymous = await connack(broker.port, Connect(""))
            other_user = await connack(broker.port, Connect("PUMP-0001", username="PUMP-0002"))
        return anonymous, other_user, log

    anonymous, other_user, log = run(scenario())
    assert anonymous.reason is ReasonCode.SUCCESS
    assert anonymous.properties.assigned_client_identifier == "PUMP-0001"
    assert other_user.reason is ReasonCode.NOT_AUTHORIZED
    (event,) = log.with_code(TransportEvent.IDENTITY_MISMATCH)
    assert event.attributes["field"] == "user name"


def test_the_embedded_broker_declines_persistent_sessions_openly(pki: Pki) -> None:
    async def scenario() -> ConnAck:
        async with running_broker(pki, SecurityEventLog()) as broker:
            client = MqttClient(
                "127.0.0.1",
                broker.port,
                client_tls_context(pki.creds("PUMP-0001")),
                pump_identity("PUMP-0001"),
                session_expiry_s=3600,
            )
            connack = await client.connect()
            await client.close()
        return connack

    connack = run(scenario())
    assert not connack.session_present
    assert connack.properties.session_expiry_interval == 0


def test_unsubscribe_and_ping(pki: Pki) -> None:
    async def scenario() -> tuple[list[ReasonCode], bytes]:
        async with running_broker(pki, SecurityEventLog()) as broker:
            server = client_for(pki, broker.port, SERVER_ID, SERVER_IDENTITY, Inbox())
            pump = client_for(pki, broker.port, "PUMP-0001", pump_identity("PUMP-0001"))
            await server.connect()
            await pump.connect()
            telemetry = "pumpguard/v1/devices/+/telemetry"
            own = device_topic("PUMP-0001", Channel.TELEMETRY)
            reasons = [
                await server.subscribe(telemetry),
                await pump.publish(own, status("PUMP-0001", 1)),
                await server.unsubscribe(telemetry),
                await server.unsubscribe(telemetry),
                await pump.publish(own, status("PUMP-0001", 2)),
            ]
            await pump.close()
            await server.close()
            reader, writer = await _open(pki, broker.port)
            writer.write(encode_packet(Connect("PUMP-0001")) + encode_packet(PingReq()))
            answer = b""
            while len(answer) < 2 or answer[-2:] != encode_packet(PingResp()):
                answer += await reader.read(4096)
            writer.close()
        return reasons, answer

    reasons, answer = run(scenario())
    assert reasons == [
        ReasonCode.GRANTED_QOS_1,
        ReasonCode.SUCCESS,
        ReasonCode.SUCCESS,
        ReasonCode.NO_SUBSCRIPTION_EXISTED,
        ReasonCode.NO_MATCHING_SUBSCRIBERS,
    ]
    packets = list(PacketDecoder().feed(answer))
    assert isinstance(packets[0], ConnAck)
    assert packets[-1] == PingResp()


def test_a_client_silent_beyond_its_keep_alive_is_disconnected(pki: Pki) -> None:
    async def scenario() -> list[object]:
        async with running_broker(pki, SecurityEventLog()) as broker:
            reader, writer = await _open(pki, broker.port)
            writer.write(encode_packet(Connect("PUMP-0001", keep_alive=1)))
            answer = await _read_all(reader)  # then silence, until the broker hangs up
            writer.close()
        return list(PacketDecoder().feed(answer))

    connack, disconnect = run(scenario())
    assert isinstance(connack, ConnAck)
    assert disconnect == Disconnect(ReasonCode.KEEP_ALIVE_TIMEOUT)


def test_a_broker_answering_garbage_gives_the_client_a_connection_error(pki: Pki) -> None:
    async def scenario() -> None:
        async def fake_broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(4096)
            writer.write(b"\x20\x02\x00\x42")  # a CONNACK with an undefined reason code
            await writer.drain()
            await reader.read(4096)
            writer.close()

        server = await asyncio.start_server(
            fake_broker, "127.0.0.1", 0, ssl=server_tls_context(pki.creds("broker"))
        )
        port = server.sockets[0].getsockname()[1]
        client = client_for(pki, port, "PUMP-0001", pump_identity("PUMP-0001"))
        with pytest.raises(ConnectionError, match="malformed"):
            await client.connect()
        server.close()
        await server.wait_closed()

    run(scenario())


def test_wills_and_enhanced_authentication_are_declined_at_connect(pki: Pki) -> None:
    async def connack(port: int, connect: Connect) -> ConnAck:
        reader, writer = await _open(pki, port)
        writer.write(encode_packet(connect))
        answer = list(PacketDecoder().feed(await reader.read(4096)))
        writer.close()
        assert isinstance(answer[0], ConnAck)
        return answer[0]

    async def scenario() -> tuple[ReasonCode, ReasonCode]:
        async with running_broker(pki, SecurityEventLog()) as broker:
            topic = device_topic("PUMP-0001", Channel.EVENTS)
            will = await connack(broker.port, Connect("PUMP-0001", will=Will(topic, b"{}")))
            scram = await connack(
                broker.port,
                Connect("PUMP-0001", properties=Properties(authentication_method="SCRAM-SHA-1")),
            )
        return will.reason, scram.reason

    assert run(scenario()) == (
        ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR,
        ReasonCode.BAD_AUTHENTICATION_METHOD,
    )
