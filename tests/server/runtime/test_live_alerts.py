"""Live detection and alert export in the running server: pump events over real mTLS MQTT in,
alerts in the database, and out to a real TLS syslog collector, CEF and OCSF files and a
webhook; alerts and export positions survive a restart."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.server.runtime.support import (
    alert_analytics,
    client_for,
    provision,
    run,
    running_stack,
    wait_stored,
)

from pumpguard.devices.infusion import EventKind, PumpState
from pumpguard.monitor.live import LiveSettings
from pumpguard.server.alert_export import MonitoringConfig, SyslogTarget, WebhookTarget
from pumpguard.server.alert_store import AlertStore
from pumpguard.transport import (
    Channel,
    DeviceEvent,
    MqttClient,
    StatusMessage,
    device_topic,
    encode_message,
)

HOUR = 3_600_000
DAY = 24 * HOUR
MIDNIGHT = 1_795_000_000_000 - 1_795_000_000_000 % DAY  # a UTC midnight in 2026


class Collector:
    """A syslog-over-TLS collector (RFC 5425 octet counting) on a local port."""

    def __init__(self, directory: Path) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        self.ca_file = directory / "collector.pem"
        self.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file = directory / "collector-key.pem"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(self.ca_file, key_file)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            try:
                with self._tls.wrap_socket(conn, server_side=True) as tls:
                    data = b""
                    while chunk := tls.recv(65536):
                        data += chunk
            except (OSError, ssl.SSLError):
                continue
            while data:
                length, _, rest = data.partition(b" ")
                self.messages.append(rest[: int(length)].decode("utf-8"))
                data = rest[int(length) :]

    def received(self, count: int) -> list[str]:
        """The messages, once at least ``count`` arrived (the sender closed; parsing follows)."""
        for _ in range(200):
            if len(self.messages) >= count:
                break
            threading.Event().wait(0.05)
        return list(self.messages)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


class _Hook(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    found = Collector(tmp_path)
    yield found
    found.close()


@pytest.fixture
def webhook() -> Iterator[str]:
    _Hook.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    thread.join(5)


class Pump:
    """Publishes a pump's log entries and statuses as the firmware shell would."""

    def __init__(self, client: MqttClient, device_id: str) -> None:
        self.client = client
        self.device_id = device_id
        self.seq = 0

    async def event(self, kind: EventKind, at_ms: int, summary: str, **attributes: str) -> None:
        self.seq += 1
        message = DeviceEvent(
            device_id=self.device_id,
            seq=self.seq,
            sent_at_ms=at_ms,
            event=kind,
            log_seq=self.seq,
            occurred_at_ms=at_ms,
            summary=summary,
            attributes={"source": "keypad", "patient_id": "100001", **attributes},
        )
        await self.client.publish(
            device_topic(self.device_id, Channel.EVENTS), encode_message(message)
        )

    async def status(self, at_ms: int) -> None:
        self.seq += 1
        message = StatusMessage(
            device_id=self.device_id,
            seq=self.seq,
            sent_at_ms=at_ms,
            state=PumpState.INFUSING,
            battery_percent=80,
            on_mains=True,
            firmware_version="t",
        )
        await self.client.publish(
            device_topic(self.device_id, Channel.TELEMETRY), encode_message(message)
        )


async def normal_fortnight(pump: Pump) -> None:
    """Four days of a ward's day shift: programming 08-17 h, one PCA dose of 1 mg per 2 h."""
    for day in range(4):
        for hour in range(8, 18, 2):
            base = MIDNIGHT + day * DAY + hour * HOUR
            await pump.event(EventKind.PROGRAMMED, base, "morphine: within limits")
            await pump.event(EventKind.PCA_DOSE, base + HOUR, "demand 1 mg")
    await pump.event(EventKind.OVERRIDE, MIDNIGHT + 2 * DAY + 10 * HOUR, "soft limit; reason: x")


async def attack(pump: Pump) -> None:
    night = MIDNIGHT + 4 * DAY + 3 * HOUR
    await pump.event(EventKind.PROGRAMMED, night, "morphine: above soft limit")
    for minute in (1, 2, 3):
        await pump.event(EventKind.OVERRIDE, night + minute * 60_000, "soft limit; reason: x")
    await pump.event(EventKind.PCA_DOSE, night + 5 * 60_000, "demand 10 mg")
    for gap in range(4):  # statuses 5 minutes apart: the pump keeps dropping off the network
        await pump.status(night + (10 + 5 * gap) * 60_000)


def test_live_ingest_raises_dosing_hours_and_loss_alerts_and_exports_them(
    tmp_path: Path, collector: Collector, webhook: str
) -> None:
    monitoring = MonitoringConfig(
        syslog=(SyslogTarget("localhost", collector.port, collector.ca_file),),
        cef_file=tmp_path / "alerts.cef",
        ocsf_file=tmp_path / "alerts.ocsf.jsonl",
        webhooks=(WebhookTarget(webhook),),
        live=LiveSettings(),
    )

    async def scenario() -> list[str]:
        async with running_stack(tmp_path / "data", None, monitoring=monitoring) as stack:
            pump = Pump(client_for(stack, await provision(stack, "PUMP-0001")), "PUMP-0001")
            await pump.client.connect()
            await normal_fortnight(pump)
            await wait_stored(stack, "PUMP-0001", pump.seq)
            quiet = alert_analytics(stack)
            await attack(pump)
            await wait_stored(stack, "PUMP-0001", pump.seq)
            found = alert_analytics(stack)
            await pump.client.close()
            assert stack.forward_alerts() >= 0
            assert [a for a in quiet if a.startswith(("PG-DOSE", "PG-NET"))] == []
            return found

    found = run(scenario())
    assert {"PG-DOSE-001", "PG-DOSE-002", "PG-DOSE-003", "PG-NET-001"} <= set(found)

    by_rule = {m.split(" ")[5]: m for m in collector.received(4)}
    assert {"PG-DOSE-001", "PG-DOSE-002", "PG-DOSE-003", "PG-NET-001"} <= set(by_rule)
    assert re.search(r'device="PUMP-0001"', by_rule["PG-DOSE-001"])
    assert "10.00 mg against a median of 1.00 mg" in by_rule["PG-DOSE-001"]
    cef = (tmp_path / "alerts.cef").read_text().splitlines()
    assert any("|PG-DOSE-003|" in line for line in cef)
    ocsf = [json.loads(line) for line in (tmp_path / "alerts.ocsf.jsonl").read_text().splitlines()]
    assert {r["finding_info"]["analytic"]["uid"] for r in ocsf} >= {"PG-NET-001"}
    assert {b["finding_info"]["analytic"]["uid"] for b in _Hook.bodies} >= {"PG-DOSE-002"}


def test_alerts_and_export_positions_survive_a_restart(
    tmp_path: Path, collector: Collector, database_url: str | None
) -> None:
    monitoring = MonitoringConfig(
        syslog=(SyslogTarget("localhost", collector.port, collector.ca_file),)
    )
    data = tmp_path / "data"

    async def first_run() -> str:
        async with running_stack(data, database_url, monitoring=monitoring) as stack:
            pump = Pump(client_for(stack, await provision(stack, "PUMP-0001")), "PUMP-0001")
            await pump.client.connect()
            for gap in range(4):
                await pump.status(MIDNIGHT + gap * 5 * 60_000)
            await wait_stored(stack, "PUMP-0001", pump.seq)
            await pump.client.close()
            assert alert_analytics(stack) == ["PG-NET-001"]
            return stack.describe()["alerts"]

    where = run(first_run())
    assert f"syslog:localhost:{collector.port}" in where
    sent_before = len(collector.received(1))
    assert sent_before == 1 and "PG-NET-001" in collector.messages[0]

    async def second_run() -> None:
        async with running_stack(data, database_url, monitoring=monitoring) as stack:
            assert alert_analytics(stack) == ["PG-NET-001"]
            with stack.store.transaction() as session:
                AlertStore(session, stack.store.ctx).acknowledge("ALR-000001", "ana", "checking")
            await asyncio.to_thread(stack.forward_alerts)

    run(second_run())
    assert len(collector.received(sent_before + 1)) == sent_before + 1  # nothing resent
    assert 'state="acknowledged"' in collector.messages[-1]
