"""The in-memory bus gives the embedded broker's answers and events, in virtual time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

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

from pumpguard.clock import VirtualClock
from pumpguard.pki import PeerIdentity, PkiEvent
from pumpguard.security_events import SecurityEventLog
from pumpguard.transport import (
    Bus,
    Channel,
    ConnectRefusedError,
    NotConnectedError,
    QoS,
    ReasonCode,
    Session,
    TransportEvent,
    device_topic,
)

Connector = Callable[[str, PeerIdentity, Inbox | None], Awaitable[Session]]


@dataclass(frozen=True)
class Observed:
    reasons: tuple[ReasonCode, ...]
    server_topics: tuple[str, ...]
    event_codes: tuple[str, ...]


async def _scenario(connect: Connector, log: SecurityEventLog) -> Observed:
    """The same conversation, whichever transport ``connect`` opens sessions on."""
    inbox = Inbox()
    server = await connect(SERVER_ID, SERVER_IDENTITY, inbox)
    pump = await connect("PUMP-0001", pump_identity("PUMP-0001"), Inbox())
    own = device_topic("PUMP-0001", Channel.TELEMETRY)
    reasons = [
        await pump.publish(own, status("PUMP-0001", 1)),  # nobody listening yet
        await server.subscribe("pumpguard/v1/devices/+/telemetry"),
        await server.subscribe("pumpguard/v1/devices/+/commands"),
        await pump.subscribe("pumpguard/v1/devices/+/commands"),
        await pump.subscribe(device_topic("PUMP-0001", Channel.COMMANDS)),
        await pump.publish(own, status("PUMP-0001", 2)),
        await pump.publish(own, status("PUMP-0002", 3)),
        await pump.publish(own, b"not json"),
        await pump.publish(device_topic("PUMP-0002", Channel.TELEMETRY), status("PUMP-0002")),
        await server.publish(own, status("PUMP-0001", 4)),
    ]
    inbox.answer = ReasonCode.UNSPECIFIED_ERROR
    reasons.append(await pump.publish(own, status("PUMP-0001", 5)))
    await pump.close()
    await server.close()
    return Observed(
        reasons=tuple(reasons),
        server_topics=tuple(d.topic for d in inbox.received),
        event_codes=tuple(e.code for e in log),
    )


def _on_bus() -> Observed:
    log = SecurityEventLog()
    bus = Bus(VirtualClock(), log)

    async def connect(creds: str, identity: PeerIdentity, inbox: Inbox | None) -> Session:
        return bus.connect(identity, client_id=identity.ident, on_message=inbox)

    return run(_scenario(connect, log))


def _on_broker(pki: Pki) -> Observed:
    async def main() -> Observed:
        log = SecurityEventLog()
        async with running_broker(pki, log) as broker:

            async def connect(creds: str, identity: PeerIdentity, inbox: Inbox | None) -> Session:
                client = client_for(pki, broker.port, creds, identity, inbox)
                await client.connect()
                return client

            return await _scenario(connect, log)

    return run(main())


def test_the_bus_and_the_broker_answer_alike(pki: Pki) -> None:
    on_bus = _on_bus()
    assert on_bus == _on_broker(pki)
    assert on_bus.reasons == (
        ReasonCode.NO_MATCHING_SUBSCRIBERS,
        ReasonCode.GRANTED_QOS_1,
        ReasonCode.NOT_AUTHORIZED,
        ReasonCode.NOT_AUTHORIZED,
        ReasonCode.GRANTED_QOS_1,
        ReasonCode.SUCCESS,
        ReasonCode.NOT_AUTHORIZED,
        ReasonCode.PAYLOAD_FORMAT_INVALID,
        ReasonCode.NOT_AUTHORIZED,
        ReasonCode.NOT_AUTHORIZED,
        ReasonCode.UNSPECIFIED_ERROR,
    )
    assert on_bus.event_codes == (
        TransportEvent.ACL_SUBSCRIBE_DENIED,
        TransportEvent.ACL_SUBSCRIBE_DENIED,
        TransportEvent.PAYLOAD_SPOOFED,
        TransportEvent.PAYLOAD_INVALID,
        TransportEvent.ACL_PUBLISH_DENIED,
        TransportEvent.ACL_PUBLISH_DENIED,
    )


def test_no_certificate_revoked_and_mismatched_identities_are_refused() -> None:
    log = SecurityEventLog()
    clock = VirtualClock(1_000)
    bus = Bus(clock, log)
    with pytest.raises(ConnectRefusedError):
        bus.connect(None)
    session = bus.connect(pump_identity("PUMP-0007"))
    bus.revoke("PUMP-0007")
    assert not session.connected
    with pytest.raises(ConnectRefusedError):
        bus.connect(pump_identity("PUMP-0007"))
    with pytest.raises(ConnectRefusedError) as refused:
        bus.connect(pump_identity("PUMP-0001"), client_id="PUMP-0002")
    assert refused.value.reason is ReasonCode.NOT_AUTHORIZED
    assert [e.code for e in log] == [
        PkiEvent.TLS_NO_CLIENT_CERT,
        PkiEvent.TLS_CERT_REVOKED,
        TransportEvent.IDENTITY_MISMATCH,
    ]
    assert {e.time_ms for e in log} == {1_000}


def test_qos0_refusal_ends_the_session_and_takeover_replaces_it() -> None:
    async def scenario() -> tuple[ReasonCode | None, ReasonCode | None]:
        bus = Bus(VirtualClock(), SecurityEventLog())
        pump = bus.connect(pump_identity("PUMP-0001"))
        await pump.publish(device_topic("PUMP-0002", Channel.EVENTS), b"{}", QoS.AT_MOST_ONCE)
        refused = pump.disconnect_reason
        with pytest.raises(NotConnectedError):
            await pump.publish(device_topic("PUMP-0001", Channel.EVENTS), b"{}")
        first = bus.connect(pump_identity("PUMP-0001"))
        bus.connect(pump_identity("PUMP-0001"))
        return refused, first.disconnect_reason

    refused, taken_over = run(scenario())
    assert refused is ReasonCode.NOT_AUTHORIZED
    assert taken_over is ReasonCode.SESSION_TAKEN_OVER


def test_server_side_payload_check_for_brokers_that_do_not_read_payloads() -> None:
    log = SecurityEventLog()
    gate = Bus(VirtualClock(), log).gate
    own = device_topic("PUMP-0001", Channel.TELEMETRY)
    assert gate.check_received(own, status("PUMP-0001")).allowed
    spoofed = gate.check_received(own, status("PUMP-0002"))
    assert spoofed.reason is ReasonCode.NOT_AUTHORIZED
    wrong_way = gate.check_received(device_topic("PUMP-0001", Channel.COMMANDS), b"{}")
    assert wrong_way.reason is ReasonCode.TOPIC_NAME_INVALID
    assert [e.code for e in log] == [
        TransportEvent.PAYLOAD_SPOOFED,
        TransportEvent.PAYLOAD_INVALID,
    ]
