"""The running pump server: PKI, database, embedded MQTT broker, ingest loop and HTTPS API in
one asyncio loop, over one data directory.

``Stack.start`` initialises what a first run lacks (CA, server certificates, schema, audit key)
and opens what a restart finds, so stopping and starting again keeps every user, asset and
event. Security events of the broker, the server services and the CA all go to one sink, the
data directory's ``security-events.jsonl``, and through the monitor's default rules, whose
alerts are kept in the database (``AlertStore``) and forwarded to the destinations of
``monitoring.toml`` and ``up``'s flags; pump records stored for the first time also pass the
monitor's live detection (``LiveDetection``).

The pump server reaches the broker as an MQTT client with its own certificate (a server
certificate issued with clientAuth), so the broker enforces the same ACL on it as on pumps.
Messages are stored in batches and a pump's PUBLISH is acknowledged only after its batch
committed (``transport.ServerLink``), so an outage never loses what a pump still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import queue
import re
import secrets
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from cryptography import x509
from fastapi import FastAPI

from pumpguard.clock import SystemClock
from pumpguard.monitor import Detection, RuleEngine
from pumpguard.monitor.ruleset import DEFAULT_RULES
from pumpguard.pki import (
    CRL_FILE,
    CertificateAuthority,
    CertKind,
    PeerIdentity,
    PkiError,
    RevocationReason,
    client_tls_context,
    generate_passphrase,
    read_credential,
    resolve_passphrase,
    server_tls_context,
    store_passphrase,
)
from pumpguard.security_events import JsonLinesEventFile, SecurityEvent, SecurityEventSink
from pumpguard.server.alert_export import (
    CURSOR_FILE,
    MONITORING_FILE,
    AlertForwarder,
    ExportConfigError,
    MonitoringConfig,
)
from pumpguard.server.alert_store import AlertStore
from pumpguard.server.api import create_app
from pumpguard.server.assets import AssetKind, AssetService
from pumpguard.server.audit import AuditAction
from pumpguard.server.config import ServerSettings, normalise_database_url
from pumpguard.server.config import database_url as default_database_url
from pumpguard.server.context import ServerContext
from pumpguard.server.datadir import (
    SECURITY_EVENTS_FILE,
    open_audit_key,
    pki_dir,
)
from pumpguard.server.demo import DemoWard, start_demo_ward
from pumpguard.server.ehr_gateway import ORDERS_CLIENT_ID, EhrGateway, EhrSettings
from pumpguard.server.errors import AlreadyExists, NotFound
from pumpguard.server.heap import freeze_startup_heap
from pumpguard.server.ingest import IngestService
from pumpguard.server.library_distribution import (
    DistributionError,
    LibraryDistribution,
    start_distribution,
)
from pumpguard.server.lifecycle import ADMITTED_STATES, AssetState
from pumpguard.server.live_detection import LiveDetection
from pumpguard.server.mqtt_ingest import records_from_messages
from pumpguard.server.pki_adapter import PkiDeviceCertificates
from pumpguard.server.store import Store
from pumpguard.server.update_agent import UPDATE_ROOT_FILE
from pumpguard.transport import (
    Broker,
    CommandAction,
    CommandMessage,
    DeviceMessage,
    MessageHandler,
    MqttClient,
    NotConnectedError,
    ReasonCode,
    ServerLink,
    Session,
)

__all__ = [
    "INGEST_CLIENT_ID",
    "LISTENER_ID",
    "IngestCounts",
    "Stack",
    "StackConfig",
    "StackError",
    "parse_broker_url",
]

LISTENER_ID = "pumpguard-server"
INGEST_CLIENT_ID = "pumpguard-ingest"
_SERVER_DIR = "server"
_PROVISIONED_DIR = "devices"
_RENEW_BEFORE = timedelta(days=30)
_CRL_REFRESH = timedelta(days=1)
_CRL_POLL_S = 2.0
_ALERT_POLL_S = 0.25
_ACTOR = "pumpguard-up"
_log = logging.getLogger(__name__)


class StackError(Exception):
    """The stack cannot start: a port in use, an unreadable CA or key, a bad database URL."""


@dataclass(frozen=True)
class StackConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    http_port: int = 8443  # 0 = pick a free port
    mqtt_port: int = 8883  # 0 = pick a free port
    updates_port: int = 8444  # 0 = pick a free port; pumps fetch updates here with mTLS
    updates_passphrase_file: Path | None = None
    database_url: str | None = None  # None -> PUMPGUARD_DATABASE_URL, else sqlite in data_dir
    demo: bool = False
    ca_passphrase_file: Path | None = None
    audit_passphrase_file: Path | None = None
    settings: ServerSettings = field(default_factory=ServerSettings)
    ehr: EhrSettings | None = None  # the MLLP/TLS order listener and EHR endpoint
    monitoring: MonitoringConfig | None = None  # None -> DATA_DIR/monitoring.toml
    broker_url: str | None = None
    """An external MQTT 5 broker (Mosquitto, a cluster) as ``mqtts://HOST:PORT``, configured
    with ``pumpguard pki mosquitto``; None runs the embedded broker on ``mqtt_port``."""
    app_hooks: tuple[Callable[[FastAPI], None], ...] = ()
    """Called with the HTTPS app before it serves: how a higher layer (the dashboard) adds
    its routes without this layer importing it."""
    live_attacks: bool = False
    """Let the dashboard launch live attacks (``lab.live_attacks``) at this stack's own
    listeners: ``up --demo`` only, never production (they lock accounts and raise alerts)."""


@dataclass(frozen=True, slots=True)
class IngestCounts:
    """Running totals of the ingest loop since start: records stored for the first time,
    resent copies dropped as duplicates, records refused (malformed, unknown pump...)."""

    stored: int = 0
    duplicates: int = 0
    refused: int = 0
    batches: int = 0


class _FanOut:
    """One sink for every component; a failing consumer never silences the others.

    Events come from the event loop (broker, API) and from the ingest worker thread; the lock
    keeps the journal's lines whole and the rule engine's windows consistent."""

    def __init__(self, sinks: Sequence[SecurityEventSink]) -> None:
        self._sinks = tuple(sinks)
        self._lock = threading.RLock()

    def emit(self, event: SecurityEvent) -> None:
        with self._lock:
            for sink in self._sinks:
                try:
                    sink.emit(event)
                except Exception:
                    _log.exception("a security event consumer failed on %s", event.code)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the stack's owner decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _open_ca(
    directory: Path, passphrase_file: Path | None, events: SecurityEventSink
) -> tuple[CertificateAuthority, list[str]]:
    notices: list[str] = []
    try:
        resolved = resolve_passphrase(directory, passphrase_file)
        if CertificateAuthority.is_initialised(directory):
            if resolved is None:
                raise StackError(
                    f"the CA in {directory} needs its passphrase: give --ca-passphrase-file or "
                    "set PUMPGUARD_CA_PASSPHRASE"
                )
            return CertificateAuthority.open(directory, resolved.value, events=events), notices
        if resolved is None:
            passphrase = generate_passphrase()
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            stored = store_passphrase(directory, passphrase)
            notices.append(
                f"generated the CA passphrase and stored it in {stored}: fine for a lab, but "
                "anyone who can read the data directory can use the CA"
            )
        else:
            passphrase = resolved.value
        return CertificateAuthority.init(directory, passphrase, events=events), notices
    except PkiError as exc:
        raise StackError(f"cannot open the CA in {directory}: {exc}") from None


def _listener_names(host: str) -> list[str]:
    names = ["localhost", "127.0.0.1"]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        names.append(host)
    else:
        if not address.is_unspecified:
            names.append(str(address))
        else:
            hostname = socket.gethostname()
            if re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", hostname):
                names.append(hostname)
    unique: list[str] = []
    for name in names:
        if name and name not in unique:
            unique.append(name)
    return unique


def _certificate_names(cert_path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    names = set(sans.get_values_for_type(x509.DNSName))
    names.update(str(ip) for ip in sans.get_values_for_type(x509.IPAddress))
    return names


def _credential_usable(directory: Path, ca: CertificateAuthority, names: Sequence[str]) -> bool:
    """Whether a credential written earlier can be used again: same CA, not about to expire,
    not revoked, and naming every host it will be reached by."""
    try:
        own = read_credential(directory)
        record = ca.certificate(own.serial)
        if (directory / "ca.pem").read_bytes() != ca.ca_pem:
            return False
        if names and not set(names) <= _certificate_names(directory / "cert.pem"):
            return False
    except (PkiError, OSError, ValueError):
        return False
    return not record.revoked and own.not_after - datetime.now(UTC) > _RENEW_BEFORE


def _ensure_credential(
    ca: CertificateAuthority,
    directory: Path,
    ident: str,
    names: Sequence[str] = (),
    *,
    also_client: bool = False,
) -> None:
    if _credential_usable(directory, ca, names):
        return
    try:
        issued = ca.issue(CertKind.SERVER, ident, sans=tuple(names), also_client=also_client)
    except PkiError as exc:
        raise StackError(f"the CA cannot certify {ident}: {exc}") from None
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    issued.write(directory)


def _crl_expires_soon(crl: Path) -> bool:
    try:
        parsed = x509.load_pem_x509_crl(crl.read_bytes())
    except (OSError, ValueError):
        return True
    next_update = parsed.next_update_utc
    return next_update is None or next_update - datetime.now(UTC) < timedelta(days=6)


def _bind(host: str, port: int, what: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StackError(f"cannot listen for {what} on {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def parse_broker_url(url: str) -> tuple[str, int]:
    """``mqtts://HOST:PORT`` -> (HOST, PORT). Only TLS: a pump server never talks plain MQTT."""
    parts = urlsplit(url)
    if parts.scheme != "mqtts":
        raise StackError(f"the broker URL must be mqtts://HOST:PORT, got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise StackError(f"the broker URL {url!r} has no valid port") from None
    if not parts.hostname or port is None or parts.path not in ("", "/") or parts.query:
        raise StackError(f"the broker URL must be mqtts://HOST:PORT, got {url!r}")
    return parts.hostname, port


def _local_address(host: str) -> str:
    try:
        if ipaddress.ip_address(host).is_unspecified:
            return "127.0.0.1"
    except ValueError:
        pass
    return host


class Stack:
    """One running pump server; see the module docstring. Build with ``await Stack.start``."""

    def __init__(
        self,
        config: StackConfig,
        ca: CertificateAuthority,
        store: Store,
        events: SecurityEventSink,
        notices: list[str],
    ) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self.ca = ca
        self.store = store
        self.events = events
        self.notices = notices
        self.http_port = 0
        self.mqtt_port = 0
        self.mqtt_host = _local_address(config.host)
        self.broker: Broker | None = None
        self.server_link: ServerLink | None = None
        self._http: _Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._counts = IngestCounts()
        self._crl_mtime = 0.0
        self._stopped = False
        self._on_stop: list[Callable[[], Any]] = []
        self.demo: DemoWard | None = None
        self.ehr: EhrGateway | None = None
        self.tls_contexts: dict[str, ssl.SSLContext] = {}
        self.distribution: LibraryDistribution | None = None
        self.updates_port = 0
        self._detections: queue.SimpleQueue[Detection] = queue.SimpleQueue()
        self._alerts_lock = threading.Lock()
        self._live: LiveDetection | None = None
        self.forwarder: AlertForwarder | None = None

    @property
    def local_address(self) -> str:
        """Where a client on this machine reaches the listeners."""
        return _local_address(self.config.host)

    # -- start and stop ---------------------------------------------------------------

    @classmethod
    async def start(cls, config: StackConfig) -> Stack:
        """Initialise on first run, open otherwise, and start every listener."""
        data_dir = config.data_dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StackError(f"cannot create the data directory {data_dir}: {exc}") from None
        try:
            monitoring = config.monitoring or MonitoringConfig.load(
                data_dir / MONITORING_FILE, data_dir
            )
        except ExportConfigError as exc:
            raise StackError(str(exc)) from None
        events_file = JsonLinesEventFile(data_dir / SECURITY_EVENTS_FILE)
        detections: queue.SimpleQueue[Detection] = queue.SimpleQueue()
        events = _FanOut([events_file, RuleEngine(DEFAULT_RULES, detections.put)])
        stack = await asyncio.to_thread(cls._open, config, events)
        stack._detections = detections
        stack._live = LiveDetection(events, monitoring.live)
        stack.forwarder = AlertForwarder(
            monitoring, data_dir / CURSOR_FILE, hostname=socket.gethostname()
        )
        try:
            await stack._start_services()
        except BaseException:
            await stack.stop()
            raise
        if config.demo:
            try:
                await start_demo_ward(stack)
            except BaseException:
                await stack.stop()
                raise
        freeze_startup_heap()  # full GC pauses stalled the event loop (server/heap.py)
        return stack

    @classmethod
    def _open(cls, config: StackConfig, events: SecurityEventSink) -> Stack:
        data_dir = config.data_dir
        ca, notices = _open_ca(pki_dir(data_dir), config.ca_passphrase_file, events)
        try:
            key, stored = open_audit_key(data_dir, config.audit_passphrase_file, create=True)
        except Exception as exc:
            raise StackError(f"cannot open the audit key: {exc}") from None
        if stored is not None:
            notices.append(
                f"generated the audit key passphrase and stored it in {stored}: fine for a lab only"
            )
        url = (
            normalise_database_url(config.database_url)
            if config.database_url
            else default_database_url(data_dir)
        )
        ctx = ServerContext(
            clock=SystemClock(),
            events=events,
            settings=config.settings,
            audit_key=key,
            certificates=PkiDeviceCertificates(ca),
        )
        try:
            store = Store.open(url, ctx)
        except Exception as exc:
            first_line = (str(exc).splitlines() or [""])[0]
            raise StackError(
                f"cannot open the database: {type(exc).__name__}: {first_line}"
            ) from None
        try:
            names = _listener_names(config.host)
            server_dir = data_dir / _SERVER_DIR
            _ensure_credential(ca, server_dir / "listener", LISTENER_ID, names)
            _ensure_credential(ca, server_dir / "ingest", INGEST_CLIENT_ID, also_client=True)
            if config.ehr is not None:
                _ensure_credential(ca, server_dir / "orders", ORDERS_CLIENT_ID, also_client=True)
            if _crl_expires_soon(ca.directory / CRL_FILE):
                ca.publish_crl()
        except PkiError as exc:
            store.close()
            raise StackError(f"cannot publish the CRL: {exc}") from None
        except BaseException:
            store.close()
            raise
        return cls(config, ca, store, events, notices)

    async def _start_services(self) -> None:
        config = self.config
        listener = self.data_dir / _SERVER_DIR / "listener"
        crl = self.ca.directory / CRL_FILE
        self._crl_mtime = crl.stat().st_mtime
        external = config.broker_url is not None
        if config.broker_url is not None:
            self.mqtt_host, self.mqtt_port = parse_broker_url(config.broker_url)
        else:
            broker_tls = server_tls_context(listener, crl=crl)
            self.tls_contexts["mqtt"] = broker_tls
            self.broker = Broker(broker_tls, self.events, host=config.host, port=config.mqtt_port)
            try:
                await self.broker.start()
            except OSError as exc:
                self.broker = None
                raise StackError(
                    f"cannot listen for MQTT on {config.host}:{config.mqtt_port}: {exc.strerror}"
                ) from None
            self.mqtt_port = self.broker.port

        ingest_dir = self.data_dir / _SERVER_DIR / "ingest"
        ingest_tls = client_tls_context(ingest_dir)
        identity = PeerIdentity(CertKind.SERVER, INGEST_CLIENT_ID)
        address = self.mqtt_host
        port = self.mqtt_port

        async def connect(handler: MessageHandler) -> Session:
            client = MqttClient(
                address,
                port,
                ingest_tls,
                identity,
                on_message=handler,
                events=self.events,
            )
            await client.connect()
            return client

        self.server_link = ServerLink(
            connect,
            self._store_batch,
            clock=SystemClock(),
            events=self.events,
            check_payloads=external,
            retry_s=0.5,
        )
        self._spawn(self.server_link.run(), "ingest")
        try:
            await asyncio.wait_for(self.server_link.wait_ready(), 30)
        except TimeoutError:
            raise StackError(
                f"the ingest link could not log in to the broker at {address}:{port} within 30 s "
                "(see the security events for why)"
            ) from None

        try:
            self.distribution = await start_distribution(self, listener, crl)
        except DistributionError as exc:
            raise StackError(str(exc)) from None
        self.updates_port = self.distribution.listener.port

        https_tls = server_tls_context(listener, require_client_cert=False)
        self.tls_contexts["https"] = https_tls
        sock = _bind(config.host, config.http_port, "HTTPS")
        self.http_port = int(sock.getsockname()[1])
        app = create_app(self.store)
        app.state.distribution = self.distribution
        app.state.stack = self  # the dashboard's live attacks aim at this stack
        for hook in config.app_hooks:
            hook(app)
        http_config = uvicorn.Config(
            app,
            ssl_context_factory=lambda _config, _default: https_tls,
            log_config=None,
            access_log=False,
            server_header=False,
            lifespan="off",
        )
        self._http = _Server(http_config)
        self._spawn(self._http.serve(sockets=[sock]), "https")
        while not self._http.started:
            if self._tasks[-1].done():
                self._tasks[-1].result()
                raise StackError("the HTTPS server stopped while starting")
            await asyncio.sleep(0.02)
        self._spawn(self._watch_crl(), "crl")
        await asyncio.to_thread(self._start_monitoring)
        self._spawn(self._keep_alerts(), "alerts")
        if config.ehr is not None:
            self.ehr = EhrGateway(self, config.ehr, self.data_dir / _SERVER_DIR / "orders")
            try:
                await self.ehr.start(config.host, listener, crl)
            except OSError as exc:
                raise StackError(
                    f"cannot listen for MLLP on {config.host}:{config.ehr.mllp_port}: "
                    f"{exc.strerror}"
                ) from None

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.ensure_future(coro))
        self._tasks[-1].set_name(f"pumpguard-{name}")

    def on_stop(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` (a coroutine function or plain function) first when stopping: the
        demo's pumps stop before the broker they talk to."""
        self._on_stop.append(callback)

    async def stop_broker(self) -> None:
        """Stop the MQTT broker alone: every session ends (pumps and the ingest link) and new
        connections are refused while the rest of the server runs on. Fault injection
        (``pumpguard bench faults``); ``start_broker`` brings it back."""
        if self.config.broker_url is not None:
            raise StackError("the broker is external: stop it where it runs")
        broker, self.broker = self.broker, None
        if broker is not None:
            await broker.stop()

    async def start_broker(self) -> None:
        """Start a fresh broker on the port the stopped one had; pumps and the ingest link
        reconnect on their own."""
        if self.broker is not None or self.config.broker_url is not None:
            return
        broker = Broker(
            self.tls_contexts["mqtt"], self.events, host=self.config.host, port=self.mqtt_port
        )
        try:
            await broker.start()
        except OSError as exc:
            raise StackError(
                f"cannot listen for MQTT on {self.config.host}:{self.mqtt_port}: {exc.strerror}"
            ) from None
        self.broker = broker

    async def stop(self) -> None:
        """Stop the pumps of the demo, the HTTPS server, the ingest loop (after its last
        batch is stored), the broker; close the database. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for callback in reversed(self._on_stop):
            result = callback()
            if asyncio.iscoroutine(result):
                with contextlib.suppress(Exception):
                    await result
        if self.ehr is not None:
            await self.ehr.stop()
        if self._http is not None:
            self._http.should_exit = True
        if self.server_link is not None:
            await self.server_link.stop()
        if self.broker is not None:
            await self.broker.stop()
        for task in self._tasks:
            if task.get_name() != "pumpguard-https":
                task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await asyncio.to_thread(self._final_alerts)
        await asyncio.to_thread(self._close_store)

    # -- alerts ---------------------------------------------------------------------------

    def _start_monitoring(self) -> None:
        if self._live is not None:
            self._live.warm_up(self.store, self.store.ctx.clock.now_ms())
        if self.forwarder is not None:
            with self.store.transaction() as session:
                self.forwarder.start_at(AlertStore(session, self.store.ctx).last_change())

    def flush_alerts(self) -> int:
        """Store the detections made since the last call as alerts (de-duplicated and correlated
        by ``AlertStore``); returns how many. Rules run inside whatever emitted the event, often
        inside a transaction, so detections are queued and stored here, in their own."""
        with self._alerts_lock:
            pending: list[Detection] = []
            while True:
                try:
                    pending.append(self._detections.get_nowait())
                except queue.Empty:
                    break
            if pending:
                with self.store.transaction() as session:
                    alerts = AlertStore(session, self.store.ctx)
                    for detection in pending:
                        alerts.record(detection)
            return len(pending)

    def forward_alerts(self) -> int:
        """One export pass (see ``AlertForwarder``); returns the alert states delivered."""
        if self.forwarder is None:
            return 0
        return self.forwarder.forward(self.store)

    async def _keep_alerts(self) -> None:
        while True:
            await asyncio.sleep(_ALERT_POLL_S)
            try:
                await asyncio.to_thread(self.flush_alerts)
                await asyncio.to_thread(self.forward_alerts)
            except Exception:
                _log.exception("could not store or forward alerts")

    def _final_alerts(self) -> None:
        try:
            self.flush_alerts()
            self.forward_alerts()
        except Exception:
            _log.exception("could not store or forward the last alerts")

    def _close_store(self) -> None:
        """Sign the audit head so that a later ``audit verify`` anchors this run's entries."""
        try:
            with self.store.transaction() as session:
                self.store.ctx.audit(session).checkpoint()
        except Exception:
            _log.exception("could not sign the audit log head at shutdown")
        self.store.close()

    async def __aenter__(self) -> Stack:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- ingest ---------------------------------------------------------------------------

    @property
    def ingest_counts(self) -> IngestCounts:
        return self._counts

    async def _store_batch(self, messages: Sequence[DeviceMessage]) -> None:
        records = records_from_messages(messages)

        def commit() -> tuple[int, int, int]:
            with self.store.transaction() as session:
                result = IngestService(session, self.store.ctx).ingest(records)
            if self._live is not None and result.stored:
                self._live.observe(result.stored, self.store.ctx.clock.now_ms())
            return result.accepted, result.duplicates, len(result.rejected)

        stored, duplicates, refused = await asyncio.to_thread(commit)
        if self.ehr is not None:
            self.ehr.on_batch(messages)
        if self.distribution is not None:
            self.distribution.observe(messages)
        counts = self._counts
        self._counts = IngestCounts(
            stored=counts.stored + stored,
            duplicates=counts.duplicates + duplicates,
            refused=counts.refused + refused,
            batches=counts.batches + 1,
        )

    # -- devices and revocation -----------------------------------------------------------

    def provision_device(
        self,
        ident: str,
        kind: str = "lvp",
        out_dir: Path | None = None,
        *,
        location: str = "",
    ) -> Path:
        """Register, onboard and put ``ident`` in service, and write its ``cert.pem``,
        ``key.pem`` and ``ca.pem`` to ``out_dir`` (default ``DATA_DIR/devices/IDENT``).

        Blocking (database and CA work, ~50 ms): from a coroutine, run it in a thread."""
        target = out_dir if out_dir is not None else self.data_dir / _PROVISIONED_DIR / ident
        asset_kind = AssetKind(kind)
        if self._reusable(target, ident):
            return target
        with self.store.transaction() as session:
            assets = AssetService(session, self.store.ctx)
            with contextlib.suppress(AlreadyExists):
                assets.register(
                    ident, asset_kind, "pumpguard", f"{kind} pump", ident, _ACTOR, location
                )
        with self.store.transaction() as session:
            assets = AssetService(session, self.store.ctx)
            if assets.get(ident).state is AssetState.PROCURED:
                assets.transition(ident, AssetState.ONBOARDED, _ACTOR, "provisioned")
            if AssetService(session, self.store.ctx).secret_names(ident):
                credential = assets.collect_credential(ident, _ACTOR)
            else:
                credential = None
            if assets.get(ident).state is AssetState.ONBOARDED:
                assets.transition(ident, AssetState.IN_SERVICE, _ACTOR, "provisioned")
        if credential is None:
            raise StackError(
                f"{ident} was provisioned before and its credential was already collected; "
                "decommission it or issue a new certificate with `pumpguard pki issue`"
            )
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, text, mode in (
            ("cert.pem", credential.cert_pem, 0o644),
            ("key.pem", credential.key_pem, 0o600),
            ("ca.pem", credential.ca_pem, 0o644),
        ):
            path = target / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(text)
            os.chmod(path, mode)
        if self.distribution is not None:
            root = self.distribution.repository.trusted_root()
            (target / UPDATE_ROOT_FILE).write_bytes(root)
        return target

    def _reusable(self, directory: Path, ident: str) -> bool:
        """A pump provisioned on an earlier run keeps its credential: same CA, same id, valid,
        not revoked, and the asset still admitted."""
        if not (directory / "cert.pem").exists() or not _credential_usable(directory, self.ca, ()):
            return False
        if read_credential(directory).identity != PeerIdentity(CertKind.PUMP, ident):
            return False
        with self.store.transaction() as session:
            try:
                state = AssetService(session, self.store.ctx).get(ident).state
            except NotFound:
                return False
        return state in ADMITTED_STATES

    async def send_command(
        self,
        device_id: str,
        action: CommandAction,
        parameters: Mapping[str, str] | None = None,
        *,
        expires_in_s: float = 300.0,
    ) -> str:
        """Publish a command to a connected pump; return its ``command_id``. The pump's
        ``command-ack`` arrives later as an event of the pump. Raises ``NotConnectedError`` when
        the ingest link is down and ``StackError`` when the pump did not take the PUBLISH."""
        if self.server_link is None:
            raise NotConnectedError("the stack is not running")
        now = SystemClock().now_ms()
        command = CommandMessage(
            device_id=device_id,
            command_id=f"cmd-{secrets.token_hex(8)}",
            action=action,
            parameters=dict(parameters or {}),
            sent_at_ms=now,
            expires_at_ms=now + int(expires_in_s * 1000),
        )
        reason = await self.server_link.send_command(command)
        if reason.is_failure or reason is ReasonCode.NO_MATCHING_SUBSCRIBERS:
            raise StackError(f"{device_id} did not take the command: {reason.name}")
        return command.command_id

    def revoke_device(
        self,
        ident: str,
        reason: RevocationReason = RevocationReason.KEY_COMPROMISE,
        *,
        actor: str = _ACTOR,
    ) -> list[str]:
        """Revoke every certificate of ``ident`` now (a stolen or compromised pump), without
        changing its asset state, record it in the audit log, and apply the new CRL to the live
        broker: the next handshake fails and an open session ends at once. Returns the ids
        whose sessions were ended."""
        serials = self.ca.revoke_ident(ident, reason)
        with self.store.transaction() as session:
            audit = self.store.ctx.audit(session)
            for serial in serials:
                audit.append(
                    AuditAction.CERTIFICATE_REVOKED,
                    actor,
                    f"asset:{ident}",
                    {"serial": str(serial), "reason": str(reason)},
                )
        return self.apply_crl()

    def apply_crl(self) -> list[str]:
        """Load the CA's current CRL into the broker (also done every few seconds when
        ``crl.pem`` changes, e.g. after ``pumpguard pki revoke`` in another process)."""
        crl = self.ca.directory / CRL_FILE
        self._crl_mtime = crl.stat().st_mtime
        if self.ehr is not None:
            self.ehr.apply_crl(crl)
        if self.broker is None:
            return []
        return self.broker.apply_crl(crl)

    async def _watch_crl(self) -> None:
        crl = self.ca.directory / CRL_FILE
        published = datetime.now(UTC)
        while True:
            await asyncio.sleep(_CRL_POLL_S)
            try:
                if datetime.now(UTC) - published > _CRL_REFRESH:
                    await asyncio.to_thread(self.ca.publish_crl)
                    published = datetime.now(UTC)
                if crl.stat().st_mtime != self._crl_mtime:
                    ended = self.apply_crl()
                    if ended:
                        _log.warning("revoked sessions ended: %s", ", ".join(ended))
            except (OSError, PkiError):
                _log.exception("could not refresh the CRL")

    # -- description ----------------------------------------------------------------------

    def describe(self) -> dict[str, str]:
        """Where everything is, for the operator."""
        host = self.config.host
        shown = f"[{host}]" if ":" in host else host
        url = str(self.store.engine.url.render_as_string(hide_password=True))
        return {
            "https": f"https://{shown}:{self.http_port}/api/v1/docs",
            "mqtt": self.config.broker_url or f"mqtts://{shown}:{self.mqtt_port}",
            "updates": f"https://{shown}:{self.updates_port}/",
            "data": str(self.data_dir.resolve()),
            "database": url,
            "ca": str(self.ca.directory.resolve() / "ca.pem"),
            "security_events": str((self.data_dir / SECURITY_EVENTS_FILE).resolve()),
            "alerts": "`pumpguard alerts list`, GET /api/v1/alerts; exported to "
            + (", ".join(self.forwarder.destinations if self.forwarder else ()) or "nowhere"),
        }

    def counts_dict(self) -> dict[str, int]:
        return asdict(self._counts)
