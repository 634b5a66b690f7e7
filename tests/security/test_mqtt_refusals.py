"""Black-box: what a live ``Stack``'s broker refuses, and the security event each refusal
leaves in ``DATA_DIR/security-events.jsonl``.

Every party here presents real certificates: from the stack's own CA (``provision_device``,
``Stack.ca``), from a foreign CA made with ``CertificateAuthority.init`` elsewhere, none at all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.server.runtime.support import (
    alert_analytics,
    client_for,
    provision,
    run,
    running_stack,
    stored_events,
    wait_for_event,
    wait_stored,
)

from pumpguard.devices.infusion import PumpState
from pumpguard.pki import (
    CertificateAuthority,
    CertKind,
    PeerIdentity,
    PkiEvent,
    RevocationReason,
    generate_passphrase,
)
from pumpguard.server.runtime import Stack
from pumpguard.transport import (
    Channel,
    ReasonCode,
    StatusMessage,
    TransportEvent,
    device_topic,
    encode_message,
)


def _status(device_id: str, seq: int = 1) -> bytes:
    return encode_message(
        StatusMessage(
            device_id=device_id,
            seq=seq,
            sent_at_ms=1,
            state=PumpState.IDLE,
            battery_percent=80,
            on_mains=True,
            firmware_version="test",
        )
    )


def _trusting_our_ca(directory: Path, ca_pem: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.pem").write_bytes(ca_pem)
    return directory


async def _refused(stack: Stack, cert_dir: Path, ident: str) -> OSError:
    """Connect and expect a refusal (a failed handshake or a reset before CONNACK)."""
    client = client_for(stack, cert_dir, PeerIdentity(CertKind.PUMP, ident))
    try:
        await client.connect()
    except OSError as exc:
        return exc
    await client.close()
    raise AssertionError(f"the broker admitted {ident} with the credential in {cert_dir}")


def test_a_pump_without_a_certificate_is_refused(tmp_path: Path, database_url: str | None) -> None:
    async def scenario() -> str | None:
        async with running_stack(tmp_path / "data", database_url) as stack:
            no_cert = _trusting_our_ca(tmp_path / "no-cert", stack.ca.ca_pem)
            await _refused(stack, no_cert, "PUMP-0001")
            event = await wait_for_event(stack, PkiEvent.TLS_NO_CLIENT_CERT)
            assert stack.broker is not None and stack.broker.connected == {"pumpguard-ingest"}
            return event.peer

    assert run(scenario()) is not None


def test_a_certificate_from_another_ca_is_refused(tmp_path: Path, database_url: str | None) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path / "data", database_url) as stack:
            await provision(stack, "PUMP-0001")
            foreign = CertificateAuthority.init(tmp_path / "foreign-ca", generate_passphrase())
            creds = tmp_path / "foreign"
            foreign.issue(CertKind.PUMP, "PUMP-0001").write(creds)
            _trusting_our_ca(creds, stack.ca.ca_pem)  # it knows our broker all the same
            await _refused(stack, creds, "PUMP-0001")
            await wait_for_event(stack, PkiEvent.TLS_UNKNOWN_CA)
            assert stored_events(stack, "PUMP-0001") == 0
            assert "PG-TLS-001" in alert_analytics(stack)  # the monitor is wired in

    run(scenario())


def test_an_expired_certificate_is_refused(tmp_path: Path, database_url: str | None) -> None:
    async def scenario() -> None:
        async with running_stack(tmp_path / "data", database_url) as stack:
            await provision(stack, "PUMP-0009")
            creds = tmp_path / "expired"
            stack.ca.issue(
                CertKind.PUMP,
                "PUMP-0009",
                now=datetime.now(UTC) - timedelta(days=10),
                validity=timedelta(days=2),
            ).write(creds)
            await _refused(stack, creds, "PUMP-0009")
            await wait_for_event(stack, PkiEvent.TLS_CERT_EXPIRED)
            assert stored_events(stack, "PUMP-0009") == 0

    run(scenario())


def test_a_revoked_certificate_is_cut_off_and_refused_without_restart(
    tmp_path: Path, database_url: str | None
) -> None:
    async def scenario() -> list[str]:
        async with running_stack(tmp_path / "data", database_url) as stack:
            creds = await provision(stack, "PUMP-0007")
            thief = client_for(stack, creds)
            await thief.connect()
            topic = device_topic("PUMP-0007", Channel.TELEMETRY)
            assert await thief.publish(topic, _status("PUMP-0007")) is ReasonCode.SUCCESS
            ended = stack.revoke_device("PUMP-0007")
            await thief.wait_closed()
            assert thief.disconnect_reason is ReasonCode.ADMINISTRATIVE_ACTION
            await wait_for_event(stack, TransportEvent.SESSION_REVOKED, device_id="PUMP-0007")
            await _refused(stack, creds, "PUMP-0007")
            await wait_for_event(stack, PkiEvent.TLS_CERT_REVOKED)
            assert stored_events(stack, "PUMP-0007") == 1
            with stack.store.transaction() as session:
                entries = stack.store.ctx.audit(session).entries(limit=1000)
            revoked = [e for e in entries if e.action == "asset.certificate.revoked"]
            assert [e.subject for e in revoked] == ["asset:PUMP-0007"]
            return ended

    assert run(scenario()) == ["PUMP-0007"]


def test_a_revocation_made_by_another_process_reaches_the_broker(
    tmp_path: Path, database_url: str | None
) -> None:
    """``pumpguard pki revoke`` runs in its own process and only rewrites ``crl.pem``."""

    async def scenario() -> None:
        async with running_stack(tmp_path / "data", database_url) as stack:
            creds = await provision(stack, "PUMP-0003")
            pump = client_for(stack, creds)
            await pump.connect()
            pki = stack.ca.directory
            passphrase = (pki / "passphrase").read_bytes().strip()
            elsewhere = CertificateAuthority.open(pki, passphrase)
            elsewhere.revoke_ident("PUMP-0003", RevocationReason.KEY_COMPROMISE)
            await pump.wait_closed()  # the stack's CRL watcher applied the new file
            assert pump.disconnect_reason is ReasonCode.ADMINISTRATIVE_ACTION
            await _refused(stack, creds, "PUMP-0003")
            await wait_for_event(stack, PkiEvent.TLS_CERT_REVOKED)

    run(scenario())


def test_a_pump_cannot_publish_as_another_pump(tmp_path: Path, database_url: str | None) -> None:
    async def scenario() -> tuple[ReasonCode, ReasonCode]:
        async with running_stack(tmp_path / "data", database_url) as stack:
            own = await provision(stack, "PUMP-0001")
            await provision(stack, "PUMP-0002")
            pump = client_for(stack, own)
            await pump.connect()
            other_topic = device_topic("PUMP-0002", Channel.TELEMETRY)
            on_other_topic = await pump.publish(other_topic, _status("PUMP-0002"))
            await wait_for_event(stack, TransportEvent.ACL_PUBLISH_DENIED)
            if not pump.connected:  # the broker may end a session that broke the ACL
                await pump.connect()
            own_topic = device_topic("PUMP-0001", Channel.TELEMETRY)
            spoofed = await pump.publish(own_topic, _status("PUMP-0002"))
            await wait_for_event(stack, TransportEvent.PAYLOAD_SPOOFED)
            honest = await pump.publish(own_topic, _status("PUMP-0001"))
            assert honest is ReasonCode.SUCCESS
            await wait_stored(stack, "PUMP-0001", 1)
            assert stored_events(stack, "PUMP-0002") == 0
            assert "PG-MQTT-001" in alert_analytics(stack)
            await pump.close()
            return on_other_topic, spoofed

    on_other_topic, spoofed = run(scenario())
    assert on_other_topic is ReasonCode.NOT_AUTHORIZED
    assert spoofed.is_failure
