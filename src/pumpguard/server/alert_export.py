"""Where the running server sends its alerts: syslog over TLS, CEF and OCSF files, webhooks.

Destinations come from ``DATA_DIR/monitoring.toml`` and from flags of ``pumpguard up``. The
forwarder reads "alerts changed since N" from the store (``AlertStore.changed_since``), so an
alert acknowledged through the API or the CLI reaches the SIEM like a new one, and each
destination keeps its own position, saved in ``DATA_DIR/alert-export.json``: a collector that
is down gets everything it missed when it comes back (at least once; SIEMs de-duplicate on
the alert id and its state), and one dead destination never holds back the others.

``monitoring.toml``::

    [live]
    utc_offset_min = 60            # the hospital's hours of the day, for off-hours programming

    [[syslog]]                     # RFC 5424 over TLS (RFC 5425 framing)
    host = "siem.example.org"
    port = 6514
    ca_file = "siem-ca.pem"        # trust for the collector (default: the system's)

    [cef]
    file = "alerts.cef"            # one CEF line per alert change

    [ocsf]
    file = "alerts.ocsf.jsonl"     # one OCSF Detection Finding per line

    [[webhook]]
    url = "https://hooks.example.org/pumpguard"
    ca_file = "hooks-ca.pem"

Relative paths are relative to the data directory.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pumpguard.monitor.alerts import Alert
from pumpguard.monitor.export import (
    ExportError,
    SyslogTlsSender,
    WebhookSender,
    alert_to_cef,
    alert_to_ocsf_line,
)
from pumpguard.monitor.live import LiveSettings
from pumpguard.server.alert_store import AlertStore
from pumpguard.server.store import Store

__all__ = [
    "CURSOR_FILE",
    "MONITORING_FILE",
    "AlertForwarder",
    "ExportConfigError",
    "MonitoringConfig",
    "SyslogTarget",
    "WebhookTarget",
    "parse_syslog",
    "parse_webhook",
]

MONITORING_FILE = "monitoring.toml"
CURSOR_FILE = "alert-export.json"
_BATCH = 200
_log = logging.getLogger(__name__)


class ExportConfigError(ValueError):
    """A monitoring setting that cannot be used, with the file and key that hold it."""


@dataclass(frozen=True, slots=True)
class SyslogTarget:
    host: str
    port: int
    ca_file: Path | None = None

    @property
    def key(self) -> str:
        return f"syslog:{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    url: str
    ca_file: Path | None = None

    @property
    def key(self) -> str:
        return f"webhook:{self.url}"


@dataclass(frozen=True, slots=True)
class MonitoringConfig:
    """Export destinations and live-detection settings of one server."""

    syslog: tuple[SyslogTarget, ...] = ()
    cef_file: Path | None = None
    ocsf_file: Path | None = None
    webhooks: tuple[WebhookTarget, ...] = ()
    live: LiveSettings = field(default_factory=LiveSettings)

    @property
    def destinations(self) -> int:
        return (
            len(self.syslog)
            + len(self.webhooks)
            + (self.cef_file is not None)
            + (self.ocsf_file is not None)
        )

    @classmethod
    def load(cls, path: Path, base: Path) -> MonitoringConfig:
        """Read ``path`` (absent: the defaults); relative paths are taken from ``base``."""
        if not path.exists():
            return cls()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ExportConfigError(f"{path}: {exc}") from None
        unknown = set(data) - {"live", "syslog", "cef", "ocsf", "webhook"}
        if unknown:
            raise ExportConfigError(f"{path}: unknown sections {', '.join(sorted(unknown))}")
        where = str(path)
        syslog = tuple(
            parse_syslog(
                f"{_text(t, 'host', where)}:{_integer(t, 'port', where)}",
                _path(t.get("ca_file"), base, where),
            )
            for t in _tables(data, "syslog", where)
        )
        webhooks = tuple(
            parse_webhook(_text(t, "url", where), _path(t.get("ca_file"), base, where))
            for t in _tables(data, "webhook", where)
        )
        cef = _section(data, "cef", where)
        ocsf = _section(data, "ocsf", where)
        live = _section(data, "live", where)
        try:
            settings = LiveSettings(
                **{str(k): _int_value(v, f"{where} [live] {k}") for k, v in live.items()}
            )
        except TypeError as exc:
            raise ExportConfigError(f"{where} [live]: {exc}") from None
        except ValueError as exc:
            raise ExportConfigError(f"{where} [live]: {exc}") from None
        return cls(
            syslog=syslog,
            cef_file=_path(cef.get("file"), base, where) if cef else None,
            ocsf_file=_path(ocsf.get("file"), base, where) if ocsf else None,
            webhooks=webhooks,
            live=settings,
        )

    def with_flags(
        self,
        *,
        syslog: tuple[SyslogTarget, ...] = (),
        webhooks: tuple[WebhookTarget, ...] = (),
        cef_file: Path | None = None,
        ocsf_file: Path | None = None,
    ) -> MonitoringConfig:
        """Flags add destinations; a file given as a flag replaces the settings file's."""
        return replace(
            self,
            syslog=self.syslog + syslog,
            webhooks=self.webhooks + webhooks,
            cef_file=cef_file or self.cef_file,
            ocsf_file=ocsf_file or self.ocsf_file,
        )


def parse_syslog(text: str, ca_file: Path | None = None) -> SyslogTarget:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) of a syslog-over-TLS collector."""
    host, sep, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65_535:
        raise ExportConfigError(f"syslog destination must be HOST:PORT, got {text!r}")
    if ca_file is not None and not ca_file.is_file():
        raise ExportConfigError(f"syslog CA file {ca_file} does not exist")
    return SyslogTarget(host, int(port), ca_file)


def parse_webhook(url: str, ca_file: Path | None = None) -> WebhookTarget:
    try:
        WebhookSender(url, _context(ca_file) if url.startswith("https://") else None)
    except ExportError as exc:
        raise ExportConfigError(str(exc)) from None
    return WebhookTarget(url, ca_file)


def _context(ca_file: Path | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ExportConfigError(f"cannot load the CA file {ca_file}: {exc}") from None


def _tables(data: Mapping[str, Any], name: str, where: str) -> list[Mapping[str, Any]]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ExportConfigError(f"{where}: [[{name}]] must be a list of tables")
    return value


def _section(data: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ExportConfigError(f"{where}: [{name}] must be a table")
    return value


def _text(table: Mapping[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ExportConfigError(f"{where}: {key} must be a non-empty string")
    return value.strip()


def _integer(table: Mapping[str, Any], key: str, where: str) -> int:
    return _int_value(table.get(key), f"{where}: {key}")


def _int_value(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ExportConfigError(f"{what} must be an integer")
    return value


def _path(value: object, base: Path, where: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ExportConfigError(f"{where}: a file must be a non-empty string")
    path = Path(value.strip())
    return path if path.is_absolute() else base / path


Send = Callable[[list[Alert]], None]


class AlertForwarder:
    """Sends every alert change to every destination, each from its own saved position."""

    def __init__(self, config: MonitoringConfig, cursor_file: Path, *, hostname: str) -> None:
        self._cursor_file = cursor_file
        self._senders: dict[str, Send] = {}
        for target in config.syslog:
            sender = SyslogTlsSender(
                target.host, target.port, _context(target.ca_file), hostname=hostname
            )
            self._senders[target.key] = sender.send
        for hook in config.webhooks:
            webhook = WebhookSender(
                hook.url, _context(hook.ca_file) if hook.url.startswith("https://") else None
            )
            self._senders[hook.key] = _each(webhook.send)
        if config.cef_file is not None:
            self._senders[f"cef:{config.cef_file}"] = _lines(config.cef_file, alert_to_cef)
        if config.ocsf_file is not None:
            self._senders[f"ocsf:{config.ocsf_file}"] = _lines(config.ocsf_file, alert_to_ocsf_line)
        self._cursors = self._load()
        self.failures: dict[str, str] = {}

    @property
    def destinations(self) -> tuple[str, ...]:
        return tuple(self._senders)

    def start_at(self, change_seq: int) -> None:
        """Destinations never served start at ``change_seq`` (the present), not at the past."""
        for key in self._senders:
            self._cursors.setdefault(key, change_seq)
        self._save()

    def forward(self, store: Store) -> int:
        """One pass over every destination; returns how many alert states were delivered."""
        delivered = 0
        for key, send in self._senders.items():
            position = self._cursors.get(key, 0)
            with store.transaction() as session:
                changed = AlertStore(session, store.ctx).changed_since(position, _BATCH)
            if not changed:
                continue
            try:
                send([c.alert for c in changed])
            except (ExportError, OSError) as exc:
                if self.failures.get(key) != str(exc):
                    _log.warning("alert export to %s failed: %s", key, exc)
                self.failures[key] = str(exc)
                continue
            self.failures.pop(key, None)
            self._cursors[key] = changed[-1].change_seq
            delivered += len(changed)
            self._save()
        return delivered

    def _load(self) -> dict[str, int]:
        try:
            raw = json.loads(self._cursor_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            _log.warning("ignoring unreadable %s", self._cursor_file)
            return {}
        if not isinstance(raw, dict):
            return {}
        return {str(k): v for k, v in raw.items() if isinstance(v, int) and k in self._senders}

    def _save(self) -> None:
        temporary = self._cursor_file.with_name(self._cursor_file.name + ".tmp")
        temporary.write_text(json.dumps(self._cursors, sort_keys=True), encoding="utf-8")
        os.replace(temporary, self._cursor_file)


def _each(send_one: Callable[[Alert], None]) -> Send:
    def send(alerts: list[Alert]) -> None:
        for alert in alerts:
            send_one(alert)

    return send


def _lines(path: Path, render: Callable[[Alert], str]) -> Send:
    def send(alerts: list[Alert]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write("".join(render(a) + "\n" for a in alerts))

    return send
