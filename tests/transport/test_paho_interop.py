"""paho-mqtt 2.x, an independent MQTT 5 implementation, as a pump against the embedded broker:
our codec and broker speak real MQTT 5, reason codes included."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode as PahoReasonCode
from tests.transport.conftest import (
    SERVER_ID,
    SERVER_IDENTITY,
    Inbox,
    Pki,
    client_for,
    run,
    running_broker,
    status,
)

from pumpguard.pki import client_tls_context
from pumpguard.security_events import SecurityEventLog
from pumpguard.transport import (
    Channel,
    CommandAction,
    CommandMessage,
    TransportEvent,
    device_topic,
    encode_message,
)

WAIT_S = 10.0


@dataclass
class PahoOutcome:
    connect: int = -1
    publish: dict[int, int] = field(default_factory=dict)
    subscribe: dict[int, list[int]] = field(default_factory=dict)
    messages: list[tuple[str, bytes]] = field(default_factory=list)


def _paho_pump(pki: Pki, port: int) -> PahoOutcome:
    """A pump written against paho: connect, subscribe, publish, receive one command."""
    outcome = PahoOutcome()
    ready = threading.Event()
    acked = threading.Condition()
    commanded = threading.Event()
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="PUMP-0001",
        protocol=paho.MQTTv5,
    )
    client.tls_set_context(client_tls_context(pki.creds("PUMP-0001")))

    def on_connect(c: Any, u: Any, flags: Any, reason: PahoReasonCode, props: Any) -> None:
        outcome.connect = reason.value
        ready.set()

    def on_publish(c: Any, u: Any, mid: int, reason: PahoReasonCode, props: Any) -> None:
        with acked:
            outcome.publish[mid] = reason.value
            acked.notify_all()

    def on_subscribe(c: Any, u: Any, mid: int, reasons: list[PahoReasonCode], props: Any) -> None:
        with acked:
            outcome.subscribe[mid] = [r.value for r in reasons]
            acked.notify_all()

    def on_message(c: Any, u: Any, message: paho.MQTTMessage) -> None:
        outcome.messages.append((message.topic, bytes(message.payload)))
        commanded.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    try:
        assert ready.wait(WAIT_S), "no CONNACK"

        def wait_for(table: dict[int, Any], mid: int | None) -> None:
            assert mid is not None
            with acked:
                assert acked.wait_for(lambda: mid in table, WAIT_S)

        _, mid = client.subscribe(device_topic("PUMP-0002", Channel.COMMANDS), qos=1)
        wait_for(outcome.subscribe, mid)
        _, mid = client.subscribe(device_topic("PUMP-0001", Channel.COMMANDS), qos=1)
        wait_for(outcome.subscribe, mid)
        for topic, payload in (
            (device_topic("PUMP-0001", Channel.TELEMETRY), status("PUMP-0001")),
            (device_topic("PUMP-0002", Channel.TELEMETRY), status("PUMP-0002")),
        ):
            info = client.publish(topic, payload, qos=1)
            wait_for(outcome.publish, info.mid)
        assert commanded.wait(WAIT_S), "no command arrived"
    finally:
        client.disconnect()
        client.loop_stop()
    return outcome


def test_paho_pump_against_the_embedded_broker(pki: Pki) -> None:
    async def scenario() -> tuple[PahoOutcome, Inbox, SecurityEventLog]:
        log = SecurityEventLog()
        async with running_broker(pki, log) as broker:
            inbox = Inbox()
            server = client_for(pki, broker.port, SERVER_ID, SERVER_IDENTITY, inbox)
            await server.connect()
            await server.subscribe("pumpguard/v1/devices/+/telemetry")
            pump = asyncio.ensure_future(asyncio.to_thread(_paho_pump, pki, broker.port))
            await inbox.arrived.wait()  # the pump subscribed before it published
            command = CommandMessage(
                device_id="PUMP-0001",
                command_id="c-1",
                action=CommandAction.REQUEST_STATUS,
                sent_at_ms=1,
            )
            await server.publish(
                device_topic("PUMP-0001", Channel.COMMANDS), encode_message(command)
            )
            outcome = await pump
            await server.close()
        return outcome, inbox, log

    outcome, inbox, log = run(scenario())
    assert outcome.connect == 0x00
    assert sorted(outcome.subscribe.values()) == [[0x01], [0x87]]
    assert sorted(outcome.publish.values()) == [0x00, 0x87]
    assert [d.topic for d in inbox.received] == ["pumpguard/v1/devices/PUMP-0001/telemetry"]
    assert [topic for topic, _ in outcome.messages] == ["pumpguard/v1/devices/PUMP-0001/commands"]
    assert len(log.with_code(TransportEvent.ACL_PUBLISH_DENIED)) == 1
    assert len(log.with_code(TransportEvent.ACL_SUBSCRIBE_DENIED)) == 1
