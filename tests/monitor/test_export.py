from __future__ import annotations

import datetime as dt
import http.server
import json
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pumpguard.monitor import (
    Alert,
    AlertBook,
    Detection,
    ExportError,
    SyslogTlsSender,
    WebhookSender,
    alert_to_cef,
    alert_to_ocsf_line,
    alert_to_syslog,
    event_to_ocsf,
    frame_octet_counted,
)
from pumpguard.security_events import Component, SecurityEvent, Severity

_RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<host>\S+) "
    r"(?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) (?P<sd>\[(?:[^\]\\]|\\.)*\]) (?P<msg>.*)$"
)


def _alert(message: str = 'frames "replayed"] \\ again', peer: str | None = "radio=7") -> Alert:
    book = AlertBook()
    return book.record(
        Detection(
            analytic_id="PG-LINK-001",
            title="Replay | on the link",
            time_ms=1_763_700_000_123,
            severity=Severity.HIGH,
            message=message,
            device_id="PUMP-0001",
            peer=peer,
            technique="T0855",
        )
    )


def test_syslog_message_follows_rfc5424() -> None:
    line = alert_to_syslog(_alert(), hostname="pump server")
    m = _RFC5424.match(line)
    assert m is not None, line
    assert int(m["pri"]) == 13 * 8 + 3
    assert m["ts"] == "2025-11-21T04:40:00.123Z"
    assert m["host"] == "pumpserver"
    assert m["msgid"] == "PG-LINK-001"
    assert '[pumpguard@32473 alert="ALR-000001"' in m["sd"]
    assert r'technique="T0855"' in m["sd"]
    assert m["msg"].startswith("Replay | on the link: frames")


def test_syslog_structured_data_escapes_quote_backslash_and_bracket() -> None:
    alert = _alert(peer='a"b]c\\d')
    line = alert_to_syslog(alert, hostname="h")
    assert r'peer="a\"b\]c\\d"' in line


def test_octet_counting_counts_bytes_not_characters() -> None:
    assert frame_octet_counted("µ") == b"2 \xc2\xb5"


def test_cef_escapes_header_and_extension() -> None:
    line = alert_to_cef(_alert(message="a=b\nc\\d"))
    header, _, extension = line.partition("|PG-LINK-001|")
    assert header.startswith("CEF:0|pumpguard|pumpguard|")
    assert extension.startswith("Replay \\| on the link|8|")
    assert "msg=a\\=b\\nc\\\\d" in extension
    assert "shost=radio\\=7" in extension
    assert "\n" not in line


def test_ocsf_alert_is_a_detection_finding_on_one_line() -> None:
    alert = _alert()
    line = alert_to_ocsf_line(alert)
    assert "\n" not in line
    record = json.loads(line)
    assert record["class_uid"] == 2004
    assert record["type_uid"] == 200401
    assert record["finding_info"]["uid"] == alert.alert_id
    assert record["finding_info"]["attacks"] == [{"technique": {"uid": "T0855"}}]
    assert record["metadata"]["correlation_uid"] == alert.incident_id


@pytest.mark.parametrize(
    ("component", "code", "class_uid", "type_uid"),
    [
        (Component.LINK, "link.replay", 4001, 400105),
        (Component.TRANSPORT, "transport.tls.unknown_ca", 4001, 400105),
        (Component.SERVER, "server.auth.bad_password", 3002, 300201),
        (Component.SERVER, "server.authz.forbidden", 3002, 300201),
        (Component.SERVER, "server.api.bad_body", 6003, 600399),
        (Component.UPDATES, "updates.rollback", 0, 99),
    ],
)
def test_events_map_to_ocsf_classes(
    component: Component, code: str, class_uid: int, type_uid: int
) -> None:
    event = SecurityEvent(
        time_ms=5,
        component=component,
        code=code,
        severity=Severity.MEDIUM,
        message="m",
        device_id="PUMP-0001",
        attributes={"counter": "9"},
    )
    record = event_to_ocsf(event)
    assert (record["class_uid"], record["type_uid"]) == (class_uid, type_uid)
    assert record["category_uid"] == class_uid // 1000
    assert record["metadata"]["event_code"] == code
    assert record["unmapped"] == {"counter": "9"}


@pytest.fixture
def tls_pair(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
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
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    client = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
    return server, client


def _collector(server_ctx: ssl.SSLContext) -> tuple[int, threading.Thread, list[bytes]]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        with listener:
            listener.settimeout(10)
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    chunks = []
                    while chunk := tls.recv(65536):
                        chunks.append(chunk)
                    received.append(b"".join(chunks))
            except ssl.SSLError:
                received.append(b"")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread, received


def _split_frames(data: bytes) -> Iterator[bytes]:
    while data:
        length, _, rest = data.partition(b" ")
        n = int(length)
        yield rest[:n]
        data = rest[n:]


def test_syslog_over_tls_delivers_framed_messages(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = tls_pair
    port, thread, received = _collector(server_ctx)
    alerts = [_alert(), _alert(message="second")]
    SyslogTlsSender("localhost", port, client_ctx).send(alerts)
    thread.join(10)
    frames = list(_split_frames(received[0]))
    assert len(frames) == 2
    assert all(_RFC5424.match(f.decode()) for f in frames)


def test_syslog_sender_refuses_an_unverified_collector(
    tls_pair: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, _ = tls_pair
    port, thread, _ = _collector(server_ctx)
    with pytest.raises(ExportError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        SyslogTlsSender("localhost", port, ssl.create_default_context()).send([_alert()])
    thread.join(10)


class _Hook(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []
    status: ClassVar[int] = 204

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).bodies.append(self.rfile.read(length))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_webhook_posts_ocsf_and_reports_http_errors() -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/alerts"
        WebhookSender(url).send(_alert())
        assert json.loads(_Hook.bodies[-1])["class_uid"] == 2004
        _Hook.status = 500
        with pytest.raises(ExportError, match="answered 500"):
            WebhookSender(url).send(_alert())
    finally:
        server.shutdown()
    with pytest.raises(ExportError, match="http"):
        WebhookSender("ftp://x/")
