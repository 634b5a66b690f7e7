"""Alerts on the wire for a SIEM: syslog (RFC 5424 over TLS, RFC 5425), CEF, OCSF JSON lines.

Formatting is pure and separate from sending, so every byte a SIEM will parse is tested without
a socket. Senders are deliberately small: a SIEM outage must never stop detection, so a sender
reports failure to its caller (who keeps the alert in the book) rather than raising into the
monitor.

Facts used: RFC 5424 section 6 (header ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG``,
PRI = facility x 8 + severity, SD-PARAM values escape ``"``, ``\\`` and ``]``, NILVALUE ``-``,
private SD-IDs are ``name@PEN``; 32473 is the PEN reserved for documentation by RFC 5612);
RFC 5425 section 4.3 (octet-counting framing ``LEN SP MSG``); ArcSight CEF rev. 25
(``CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|Extension``, ``|`` and ``\\`` escaped
in the header, ``=`` and ``\\`` in extension values, newlines as ``\\n``, severity 0-10).
"""

from __future__ import annotations

import json
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum

from pumpguard import __version__
from pumpguard.monitor.alerts import Alert
from pumpguard.monitor.ocsf import alert_to_ocsf
from pumpguard.security_events import Severity

__all__ = [
    "ExportError",
    "SyslogFacility",
    "SyslogTlsSender",
    "WebhookSender",
    "alert_to_cef",
    "alert_to_ocsf_line",
    "alert_to_syslog",
    "frame_octet_counted",
]

SD_ID = "pumpguard@32473"
APP_NAME = "pumpguard"

_SYSLOG_SEVERITY = {
    Severity.CRITICAL: 2,
    Severity.HIGH: 3,
    Severity.MEDIUM: 4,
    Severity.LOW: 5,
    Severity.INFORMATIONAL: 6,
}
_CEF_SEVERITY = {
    Severity.CRITICAL: 10,
    Severity.HIGH: 8,
    Severity.MEDIUM: 5,
    Severity.LOW: 3,
    Severity.INFORMATIONAL: 1,
}


class ExportError(Exception):
    """An alert could not be delivered to its destination; the alert itself is kept."""


class SyslogFacility(IntEnum):
    SECURITY = 4
    AUTHPRIV = 10
    LOG_AUDIT = 13
    LOCAL0 = 16


def _timestamp(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _sd_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _header_token(value: str, limit: int) -> str:
    token = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return token or "-"


def alert_to_syslog(
    alert: Alert, *, hostname: str, facility: SyslogFacility = SyslogFacility.LOG_AUDIT
) -> str:
    """One RFC 5424 message for the alert's current state."""
    pri = int(facility) * 8 + _SYSLOG_SEVERITY[alert.severity]
    params = {
        "alert": alert.alert_id,
        "analytic": alert.analytic_id,
        "state": str(alert.state),
        "count": str(alert.count),
        "incident": alert.incident_id,
        "severity": str(int(alert.severity)),
    }
    if alert.device_id is not None:
        params["device"] = alert.device_id
    if alert.peer is not None:
        params["peer"] = alert.peer
    if alert.technique is not None:
        params["technique"] = alert.technique
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params.items()) + "]"
    message = " ".join(f"{alert.title}: {alert.message}".split())
    return (
        f"<{pri}>1 {_timestamp(alert.history[-1].time_ms)} {_header_token(hostname, 255)} "
        f"{APP_NAME} - {_header_token(alert.analytic_id, 32)} {sd} {message}"
    )


def frame_octet_counted(message: str) -> bytes:
    """RFC 5425 framing: the byte length, a space, the message."""
    payload = message.encode("utf-8")
    return str(len(payload)).encode("ascii") + b" " + payload


def _cef_header(value: str) -> str:
    return " ".join(value.replace("\\", "\\\\").replace("|", "\\|").split())


def _cef_value(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("=", "\\=")
    return escaped.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


def alert_to_cef(alert: Alert) -> str:
    """One CEF:0 line for the alert's current state."""
    extension = {
        "rt": str(alert.history[-1].time_ms),
        "start": str(alert.first_ms),
        "end": str(alert.last_ms),
        "cnt": str(alert.count),
        "msg": alert.message,
        "externalId": alert.alert_id,
        "cs1Label": "incident",
        "cs1": alert.incident_id,
        "cs2Label": "state",
        "cs2": str(alert.state),
    }
    if alert.device_id is not None:
        extension["deviceExternalId"] = alert.device_id
    if alert.peer is not None:
        extension["shost"] = alert.peer
    if alert.technique is not None:
        extension["cs3Label"] = "attack_ics_technique"
        extension["cs3"] = alert.technique
    header = "|".join(
        [
            "CEF:0",
            "pumpguard",
            "pumpguard",
            _cef_header(__version__),
            _cef_header(alert.analytic_id),
            _cef_header(alert.title),
            str(_CEF_SEVERITY[alert.severity]),
        ]
    )
    return header + "|" + " ".join(f"{k}={_cef_value(v)}" for k, v in extension.items())


def alert_to_ocsf_line(alert: Alert) -> str:
    """One line of OCSF JSON (no embedded newline, keys sorted for stable diffs)."""
    return json.dumps(alert_to_ocsf(alert), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class SyslogTlsSender:
    """Sends RFC 5424 messages over TLS (RFC 5425) to a collector whose certificate we verify.

    One connection per batch keeps the sender stateless; a SIEM receiving a few alerts a minute
    does not need a pooled connection, and a dead collector costs one failed connect per batch.
    """

    host: str
    port: int
    context: ssl.SSLContext
    hostname: str = "pumpguard"
    timeout_s: float = 5.0

    def send(self, alerts: list[Alert]) -> None:
        if not alerts:
            return
        payload = b"".join(
            frame_octet_counted(alert_to_syslog(a, hostname=self.hostname)) for a in alerts
        )
        try:
            with (
                socket.create_connection((self.host, self.port), timeout=self.timeout_s) as raw,
                self.context.wrap_socket(raw, server_hostname=self.host) as tls,
            ):
                tls.sendall(payload)
        except (OSError, ssl.SSLError) as exc:
            raise ExportError(f"syslog collector {self.host}:{self.port}: {exc}") from None


@dataclass(frozen=True, slots=True)
class WebhookSender:
    """POSTs each alert as OCSF JSON to an HTTPS endpoint (chat-ops, ticketing, SOAR)."""

    url: str
    context: ssl.SSLContext | None = None
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.url.startswith("https://") and self.context is not None:
            raise ExportError("a TLS context was given for a webhook URL that is not https")
        if not self.url.startswith(("https://", "http://")):
            raise ExportError(f"webhook URL must be http(s), got {self.url!r}")

    def send(self, alert: Alert) -> None:
        body = alert_to_ocsf_line(alert).encode("utf-8")
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": f"pumpguard/{__version__}"},
        )
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout_s, context=self.context
            ) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            raise ExportError(f"webhook {self.url} answered {exc.code}") from None
        except (OSError, ssl.SSLError) as exc:
            raise ExportError(f"webhook {self.url}: {exc}") from None
        if not 200 <= status < 300:
            raise ExportError(f"webhook {self.url} answered {status}")
