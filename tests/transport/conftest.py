"""A real PKI for the transport tests: a broker certificate, pumps, the server, and the bad
certificates the security tests present (expired, revoked, from a foreign CA, none)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pumpguard.devices.infusion import PumpState
from pumpguard.pki import (
    CertificateAuthority,
    CertKind,
    PeerIdentity,
    RevocationReason,
    client_tls_context,
    generate_passphrase,
    server_tls_context,
)
from pumpguard.security_events import SecurityEventLog
from pumpguard.transport import (
    Broker,
    BrokerLimits,
    Delivery,
    MessageHandler,
    MqttClient,
    ReasonCode,
    StatusMessage,
    encode_message,
)

T = TypeVar("T")

SERVER_ID = "pumpguard-server"
SECOND_SERVER_ID = "pumpguard-server-2"
"""A second server worker, for shared subscriptions behind Mosquitto."""
CA_START = datetime.now(UTC) - timedelta(days=60)


@dataclass(frozen=True)
class Pki:
    root: Path
    ca_dir: Path

    def creds(self, name: str) -> Path:
        return self.root / "creds" / name

    @property
    def crl(self) -> Path:
        return self.ca_dir / "crl.pem"

    def server_context(self) -> Any:
        return server_tls_context(self.creds("broker"), crl=self.crl)


def server_client_credential(ca: CertificateAuthority, out: Path, ident: str = SERVER_ID) -> None:
    """The pump server connects to the broker as a client, so its certificate carries clientAuth.

    The PKI gives a server certificate clientAuth only when asked (``also_client``), so the
    broker's own certificate cannot be used to log in with server rights.
    """
    ca.issue(CertKind.SERVER, ident, also_client=True).write(out)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("transport-pki")
    passphrase = generate_passphrase()
    ca = CertificateAuthority.init(root / "ca", passphrase, now=CA_START)
    creds = root / "creds"
    ca.issue(CertKind.SERVER, "broker", sans=("localhost", "127.0.0.1")).write(creds / "broker")
    for ident in ("PUMP-0001", "PUMP-0002"):
        ca.issue(CertKind.PUMP, ident).write(creds / ident)
    server_client_credential(ca, creds / SERVER_ID)
    server_client_credential(ca, creds / SECOND_SERVER_ID, SECOND_SERVER_ID)
    ca.issue(
        CertKind.PUMP,
        "PUMP-0009",
        now=CA_START + timedelta(days=1),
        validity=timedelta(days=2),
    ).write(creds / "expired")
    revoked = ca.issue(CertKind.PUMP, "PUMP-0007")
    revoked.write(creds / "revoked")
    ca.revoke(revoked.serial, RevocationReason.KEY_COMPROMISE)
    foreign = CertificateAuthority.init(root / "foreign-ca", generate_passphrase())
    foreign_pump = foreign.issue(CertKind.PUMP, "PUMP-0001")
    foreign_pump.write(creds / "foreign")
    foreign.issue(CertKind.SERVER, "broker", sans=("127.0.0.1",)).write(creds / "rogue-broker")
    (creds / "foreign" / "ca.pem").write_bytes(ca.ca_pem)  # it trusts our broker all the same
    (creds / "no-cert").mkdir()
    (creds / "no-cert" / "ca.pem").write_bytes(ca.ca_pem)
    return Pki(root=root, ca_dir=root / "ca")


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
    """Run one test coroutine; a hung handshake fails the test instead of hanging it."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout_s):
            return await coro

    return asyncio.run(bounded())


@asynccontextmanager
async def running_broker(
    pki: Pki, log: SecurityEventLog, limits: BrokerLimits | None = None
) -> AsyncIterator[Broker]:
    broker = Broker(pki.server_context(), log, port=0, limits=limits)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


def pump_identity(ident: str) -> PeerIdentity:
    return PeerIdentity(CertKind.PUMP, ident)


SERVER_IDENTITY = PeerIdentity(CertKind.SERVER, SERVER_ID)


class Inbox:
    """A handler that keeps what it is given and answers with a chosen reason code."""

    def __init__(self, answer: ReasonCode = ReasonCode.SUCCESS) -> None:
        self.answer = answer
        self.received: list[Delivery] = []
        self.arrived = asyncio.Event()

    async def __call__(self, delivery: Delivery) -> ReasonCode:
        self.received.append(delivery)
        self.arrived.set()
        return self.answer

    async def until(self, count: int) -> None:
        """Wait until ``count`` deliveries have arrived."""
        while len(self.received) < count:
            self.arrived.clear()
            await self.arrived.wait()


def client_for(
    pki: Pki,
    broker_port: int,
    creds: str,
    identity: PeerIdentity,
    inbox: MessageHandler | None = None,
    events: SecurityEventLog | None = None,
) -> MqttClient:
    return MqttClient(
        "127.0.0.1",
        broker_port,
        client_tls_context(pki.creds(creds)),
        identity,
        on_message=inbox,
        events=events,
    )


def status(device_id: str, seq: int = 1) -> bytes:
    """A valid status payload for ``device_id``."""
    return encode_message(
        StatusMessage(
            device_id=device_id,
            seq=seq,
            sent_at_ms=1_000 * seq,
            state=PumpState.IDLE,
            battery_percent=90,
            on_mains=True,
            firmware_version="1.4.2",
        )
    )
