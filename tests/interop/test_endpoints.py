"""MLLP over TLS between an EHR and the order consumer, and the legacy cleartext profile."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from tests.interop.messages import NOW, library, piv
from tests.interop.test_order_check import PUMPS

from pumpguard.clock import VirtualClock
from pumpguard.interop import (
    AckCode,
    AppError,
    DeliveryError,
    Endpoint,
    InteropEvent,
    MllpServer,
    OrderContext,
    PeerInfo,
    PivReceiver,
    TransportProfile,
    check_order,
    encode_frame,
    parse_ack,
    send_message,
)
from pumpguard.pki import (
    CertificateAuthority,
    CertKind,
    PkiEvent,
    client_tls_context,
    server_tls_context,
)
from pumpguard.security_events import SecurityEventLog

PASSPHRASE = b"correct horse battery staple"


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("interop-pki")
    ca = CertificateAuthority.init(root / "ca", PASSPHRASE)
    other = CertificateAuthority.init(root / "other-ca", PASSPHRASE)
    out: dict[str, Path] = {}
    for name, authority, kind, ident, sans in (
        ("server", ca, CertKind.SERVER, "pumpserver", ["localhost", "127.0.0.1"]),
        ("ehr", ca, CertKind.EHR, "ehr-main", ["localhost", "127.0.0.1"]),
        ("pump", ca, CertKind.PUMP, "PUMP-0001", []),
        ("foreign-ehr", other, CertKind.EHR, "ehr-evil", ["localhost"]),
    ):
        # the pump server also connects out (RRG^O16 to the EHR), so it needs clientAuth
        also_client = kind is CertKind.SERVER
        authority.issue(kind, ident, sans=sans, also_client=also_client).write(root / name)
        out[name] = root / name
    ours = (root / "server" / "ca.pem").read_bytes()
    (root / "foreign-ehr" / "ca.pem").write_bytes(ours)  # trusts us; we must not trust it
    (root / "anonymous").mkdir()
    (root / "anonymous" / "ca.pem").write_bytes(ours)
    out["anonymous"] = root / "anonymous"
    return out


def _receiver(events: SecurityEventLog) -> PivReceiver:
    return PivReceiver(clock=VirtualClock(1_795_000_000_000), events=events)


def _serving(
    receiver: PivReceiver,
    creds: dict[str, Path],
    events: SecurityEventLog,
    seen: list[PeerInfo],
    **kwargs: object,
) -> MllpServer:
    async def handle(text: str, peer: PeerInfo) -> str | None:
        seen.append(peer)
        return receiver.receive(text, str(peer)).ack

    return MllpServer(
        handle,
        profile=TransportProfile.SECURE,
        tls_context=server_tls_context(creds["server"]),
        on_problem=lambda problem, peer: receiver.answer_problem(problem, str(peer)),
        events=events,
        **kwargs,  # type: ignore[arg-type]
    )


def _send(server: MllpServer, client_dir: Path, message: str) -> str | None:
    endpoint = Endpoint("localhost", server.port)
    return asyncio.run(_send_async(server, endpoint, message, client_tls_context(client_dir)))


async def _send_async(
    server: MllpServer, endpoint: Endpoint, message: str, ctx: ssl.SSLContext
) -> str | None:
    return await send_message(
        endpoint, message, profile=TransportProfile.SECURE, tls_context=ctx, timeout=5
    )


def _roundtrip(
    creds: dict[str, Path], client: str, message: str, **kwargs: object
) -> tuple[str | None, SecurityEventLog, list[PeerInfo]]:
    events = SecurityEventLog()
    seen: list[PeerInfo] = []

    async def run() -> str | None:
        server = _serving(_receiver(events), creds, events, seen, **kwargs)
        async with server:
            endpoint = Endpoint("localhost", server.port)
            try:
                return await send_message(
                    endpoint,
                    message,
                    profile=TransportProfile.SECURE,
                    tls_context=client_tls_context(creds[client]),
                    timeout=5,
                )
            except DeliveryError:
                return None

    return asyncio.run(run()), events, seen


def test_an_ehr_with_a_certificate_gets_a_commit_accept(creds: dict[str, Path]) -> None:
    reply, events, seen = _roundtrip(creds, "ehr", piv())
    assert reply is not None
    ack = parse_ack(reply)
    assert (ack.code, ack.acknowledged_id) == (AckCode.CA, "EHR-0001")
    assert [str(p.identity) for p in seen] == ["ehr:ehr-main"]
    assert len(events) == 0


def test_a_malformed_order_gets_a_commit_error_on_the_same_connection(
    creds: dict[str, Path],
) -> None:
    reply, events, _ = _roundtrip(creds, "ehr", piv(placer=""))
    assert reply is not None
    ack = parse_ack(reply)
    assert (ack.code, ack.acknowledged_id) == (AckCode.CE, "EHR-0001")
    assert ack.errors[0].location is not None and ack.errors[0].location.field == 2
    assert events.with_code(InteropEvent.MALFORMED)


def test_a_pump_certificate_may_not_send_orders(creds: dict[str, Path]) -> None:
    reply, events, seen = _roundtrip(creds, "pump", piv())
    assert reply is None and seen == []
    assert events.with_code(InteropEvent.WRONG_PEER_KIND)


@pytest.mark.parametrize(
    ("client", "code"),
    [("anonymous", PkiEvent.TLS_NO_CLIENT_CERT), ("foreign-ehr", PkiEvent.TLS_UNKNOWN_CA)],
)
def test_unauthenticated_hosts_are_refused_and_logged(
    creds: dict[str, Path], client: str, code: PkiEvent
) -> None:
    reply, events, seen = _roundtrip(creds, client, piv())
    assert reply is None and seen == []
    assert events.with_code(code), [e.code for e in events]


def test_the_secure_profile_refuses_plain_mllp(creds: dict[str, Path]) -> None:
    async def handle(text: str, peer: PeerInfo) -> str | None:
        return None

    with pytest.raises(ValueError, match="TLS"):
        MllpServer(handle, profile=TransportProfile.SECURE)
    no_client_cert = server_tls_context(creds["server"], require_client_cert=False)
    with pytest.raises(ValueError, match="certificate"):
        MllpServer(handle, profile=TransportProfile.SECURE, tls_context=no_client_cert)
    with pytest.raises(ValueError, match="legacy"):
        asyncio.run(
            send_message(Endpoint.parse("mllp://localhost:1"), "x", profile=TransportProfile.SECURE)
        )


def test_endpoint_urls() -> None:
    assert Endpoint.parse("mllps://ehr.example:2575") == Endpoint("ehr.example", 2575, True)
    assert str(Endpoint.parse("mllp://10.0.0.5:6661")) == "mllp://10.0.0.5:6661"
    for bad in ("https://x:1", "mllps://x", "mllps://:99", "mllps://x:port"):
        with pytest.raises(ValueError, match="mllp"):
            Endpoint.parse(bad)


def test_legacy_cleartext_works_and_is_flagged() -> None:
    events = SecurityEventLog()
    receiver = _receiver(events)

    async def handle(text: str, peer: PeerInfo) -> str | None:
        return receiver.receive(text).ack

    async def run() -> str | None:
        async with MllpServer(handle, profile=TransportProfile.LEGACY, events=events) as server:
            return await send_message(
                Endpoint("127.0.0.1", server.port, tls=False),
                piv(),
                profile=TransportProfile.LEGACY,
                timeout=5,
            )

    reply = asyncio.run(run())
    assert reply is not None and parse_ack(reply).code is AckCode.CA
    assert events.with_code(InteropEvent.CLEARTEXT)


def test_a_sender_that_stops_mid_frame_is_dropped(creds: dict[str, Path]) -> None:
    events = SecurityEventLog()
    seen: list[PeerInfo] = []

    async def run() -> bytes:
        server = _serving(_receiver(events), creds, events, seen, read_timeout=0.2)
        async with server:
            reader, writer = await asyncio.open_connection(
                "localhost",
                server.port,
                ssl=client_tls_context(creds["ehr"]),
                server_hostname="localhost",
            )
            writer.write(encode_frame(piv())[:40])
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return data

    assert asyncio.run(run()) == b""
    assert events.with_code(InteropEvent.READ_TIMEOUT)
    assert seen == []


def test_an_oversized_frame_is_rejected_with_its_control_id(creds: dict[str, Path]) -> None:
    big = piv().replace("Tester^Tara", "T" * 5000)
    reply, events, seen = _roundtrip(creds, "ehr", big, max_frame=2048)
    assert reply is not None
    ack = parse_ack(reply)
    assert (ack.code, ack.acknowledged_id) == (AckCode.CR, "EHR-0001")
    assert events.with_code(InteropEvent.OVERSIZED_FRAME)
    assert seen == []


def test_application_ack_goes_to_the_ehr_on_a_new_connection(creds: dict[str, Path]) -> None:
    """The full PIV exchange: order in, CA back, check, RRG^O16 sent to the EHR's listener."""
    events = SecurityEventLog()
    receiver = _receiver(events)
    ehr_inbox: list[tuple[str, PeerInfo]] = []

    async def ehr_handle(text: str, peer: PeerInfo) -> str | None:
        ehr_inbox.append((text, peer))
        return None

    async def consumer_handle(text: str, peer: PeerInfo) -> str | None:
        reception = receiver.receive(text, str(peer))
        if reception.order is not None:
            pending.append(reception)
        return reception.ack

    pending: list[object] = []

    async def run() -> str | None:
        ehr = MllpServer(
            ehr_handle,
            profile=TransportProfile.SECURE,
            tls_context=server_tls_context(creds["ehr"]),
            allowed_kinds=frozenset({CertKind.SERVER}),
        )
        consumer = MllpServer(
            consumer_handle,
            profile=TransportProfile.SECURE,
            tls_context=server_tls_context(creds["server"]),
        )
        async with ehr, consumer:
            commit = await send_message(
                Endpoint("localhost", consumer.port),
                piv(rate="45"),
                profile=TransportProfile.SECURE,
                tls_context=client_tls_context(creds["ehr"]),
            )
            (reception,) = pending
            order = reception.order  # type: ignore[attr-defined]
            verdict = check_order(order, OrderContext(PUMPS, library(), NOW))
            rrg = receiver.application_ack(order, verdict, "ehr:ehr-main")
            assert rrg is not None
            await send_message(
                Endpoint("localhost", ehr.port),
                rrg,
                profile=TransportProfile.SECURE,
                tls_context=client_tls_context(creds["server"]),
                expect_reply=False,
            )
            for _ in range(100):
                if ehr_inbox:
                    break
                await asyncio.sleep(0.02)
            return commit

    commit = asyncio.run(run())
    assert commit is not None and parse_ack(commit).code is AckCode.CA
    ((text, peer),) = ehr_inbox
    assert str(peer.identity) == "server:pumpserver"
    rrg = parse_ack(text)
    assert rrg.code is AckCode.AE
    assert rrg.acknowledged_id == "EHR-0001"
    assert rrg.app_errors == (AppError.HARD_LIMIT,)
    assert events.with_code(InteropEvent.HARD_LIMIT)


def test_connections_beyond_the_limit_are_refused_and_logged() -> None:
    events = SecurityEventLog()
    receiver = _receiver(events)

    async def handle(text: str, peer: PeerInfo) -> str | None:
        return receiver.receive(text).ack

    async def run() -> tuple[bytes, bytes]:
        server = MllpServer(
            handle, profile=TransportProfile.LEGACY, events=events, max_connections=1
        )
        async with server:
            reader1, writer1 = await asyncio.open_connection("127.0.0.1", server.port)
            writer1.write(encode_frame(piv()))
            first = await asyncio.wait_for(reader1.readuntil(b"\x1c\r"), 10)
            reader2, writer2 = await asyncio.open_connection("127.0.0.1", server.port)
            second = await asyncio.wait_for(reader2.read(), 10)
            writer1.close()
            writer2.close()
            return first, second

    first, second = asyncio.run(run())
    assert b"MSA|CA|EHR-0001" in first
    assert second == b""
    assert events.with_code(InteropEvent.TOO_MANY_CONNECTIONS)


def test_a_sender_trickling_a_frame_is_dropped_at_the_frame_deadline() -> None:
    events = SecurityEventLog()
    receiver = _receiver(events)

    async def handle(text: str, peer: PeerInfo) -> str | None:
        return receiver.receive(text).ack

    async def run() -> tuple[int, int, bytes]:
        server = MllpServer(
            handle, profile=TransportProfile.LEGACY, events=events, read_timeout=0.3
        )
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            closed = asyncio.ensure_future(reader.read())
            frame = encode_frame(piv())
            sent = 0
            for byte in frame:
                if closed.done():
                    break
                try:
                    writer.write(bytes([byte]))
                    await writer.drain()
                except ConnectionError:
                    break
                sent += 1
                await asyncio.sleep(0.01)
            data = await asyncio.wait_for(closed, 10)
            writer.close()
            return sent, len(frame), data

    sent, total, data = asyncio.run(run())
    assert data == b""
    assert sent < total
    assert events.with_code(InteropEvent.READ_TIMEOUT)
