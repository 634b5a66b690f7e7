"""Revocation that takes effect on a running broker, and a pump that meets a rogue broker."""

from __future__ import annotations

import ssl

import pytest
from tests.transport.conftest import Pki, client_for, pump_identity, run

from pumpguard.pki import (
    CertificateAuthority,
    CertKind,
    PkiEvent,
    RevocationReason,
    generate_passphrase,
    reload_crl,
    server_tls_context,
)
from pumpguard.security_events import SecurityEventLog
from pumpguard.transport import Broker, ReasonCode, Session, TransportEvent


def test_a_revocation_reaches_the_running_broker(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("revocation")
    ca = CertificateAuthority.init(root / "ca", generate_passphrase())
    pki = Pki(root=root, ca_dir=root / "ca")
    ca.issue(CertKind.SERVER, "broker", sans=("127.0.0.1",)).write(pki.creds("broker"))
    pump = ca.issue(CertKind.PUMP, "PUMP-0003")
    pump.write(pki.creds("PUMP-0003"))

    async def scenario() -> tuple[ReasonCode, SecurityEventLog]:
        log = SecurityEventLog()
        tls = server_tls_context(pki.creds("broker"), crl=pki.crl)
        broker = Broker(tls, log, port=0)
        await broker.start()
        try:
            client = client_for(pki, broker.port, "PUMP-0003", pump_identity("PUMP-0003"))
            admitted = (await client.connect()).reason
            await client.close()
            ca.revoke(pump.serial, RevocationReason.KEY_COMPROMISE)
            reload_crl(tls, pki.crl)
            again = client_for(pki, broker.port, "PUMP-0003", pump_identity("PUMP-0003"))
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await again.connect()
        finally:
            await broker.stop()
        return admitted, log

    admitted, log = run(scenario())
    assert admitted is ReasonCode.SUCCESS
    assert [e.code for e in log] == [PkiEvent.TLS_CERT_REVOKED]


def test_a_pump_refuses_a_broker_from_another_ca_and_says_so(pki: Pki) -> None:
    async def scenario() -> SecurityEventLog:
        broker_log, pump_log = SecurityEventLog(), SecurityEventLog()
        rogue = Broker(server_tls_context(pki.creds("rogue-broker")), broker_log, port=0)
        await rogue.start()
        try:
            client = client_for(
                pki, rogue.port, "PUMP-0001", pump_identity("PUMP-0001"), events=pump_log
            )
            assert isinstance(client, Session)
            with pytest.raises(ssl.SSLCertVerificationError):
                await client.connect()
        finally:
            await rogue.stop()
        return pump_log

    (event,) = run(scenario())
    assert event.code == PkiEvent.TLS_UNKNOWN_CA
    assert event.device_id == "PUMP-0001"


def test_applying_a_crl_ends_the_open_session_of_a_revoked_pump(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("eviction")
    ca = CertificateAuthority.init(root / "ca", generate_passphrase())
    pki = Pki(root=root, ca_dir=root / "ca")
    ca.issue(CertKind.SERVER, "broker", sans=("127.0.0.1",)).write(pki.creds("broker"))
    stolen = ca.issue(CertKind.PUMP, "PUMP-0004")
    stolen.write(pki.creds("PUMP-0004"))
    ca.issue(CertKind.PUMP, "PUMP-0005").write(pki.creds("PUMP-0005"))

    async def scenario() -> tuple[list[str], ReasonCode | None, bool, SecurityEventLog]:
        log = SecurityEventLog()
        broker = Broker(server_tls_context(pki.creds("broker"), crl=pki.crl), log, port=0)
        await broker.start()
        try:
            thief = client_for(pki, broker.port, "PUMP-0004", pump_identity("PUMP-0004"))
            honest = client_for(pki, broker.port, "PUMP-0005", pump_identity("PUMP-0005"))
            await thief.connect()
            await honest.connect()
            ca.revoke(stolen.serial, RevocationReason.KEY_COMPROMISE)
            ended = broker.apply_crl(pki.crl)
            reason = await thief.wait_closed()
            still = honest.connected
            await honest.close()
        finally:
            await broker.stop()
        return ended, reason, still, log

    ended, reason, honest_still_connected, log = run(scenario())
    assert ended == ["PUMP-0004"]
    assert reason is ReasonCode.ADMINISTRATIVE_ACTION
    assert honest_still_connected
    (event,) = log.with_code(TransportEvent.SESSION_REVOKED)
    assert event.device_id == "PUMP-0004"
