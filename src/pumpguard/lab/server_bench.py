"""``pumpguard bench server``: N simulated pumps over real mutual-TLS MQTT against the stack.

What runs where (two processes, so that the figures of one side are not the other's CPU):

* the **stack** (``pumpguard.server.runtime.Stack``: the embedded broker and the ingest into
  the database) runs in a child process, ``python -m pumpguard.lab.server_bench --serve``;
* the **fleet** (N ``DeviceLink``s, each with its own certificate, ``MqttClient`` and
  ``Outbox``) runs in the bench process, in one asyncio loop.

The run has four phases: *ramp* (pumps connect at ``ramp_per_s``: 5,000 simultaneous TLS
handshakes would overrun the 10 s connect timeouts), *steady state* (``duration_s``: a status
every ``status_interval_s`` per pump, random phase, plus events as a Poisson process of
``event_interval_s`` mean per pump), *drain* (no new messages; wait until every outbox is
empty) and *count* (the stack stops; the bench reads the database).

Pump certificates cost 15-100 ms each to issue (the CA rewrites its index on every issue), so
they are issued once into a cache directory, under a directory named after the cache's own CA,
and reused by every later run; the stack's data directory is given a copy of that CA. Each pump
still has its own key, certificate and identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import heapq
import json
import logging
import math
import os
import random
import secrets
import shutil
import ssl
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, select, text
from sqlalchemy.exc import SQLAlchemyError

from pumpguard.clock import SystemClock
from pumpguard.devices.infusion import EventKind, PumpState
from pumpguard.pki import (
    CertificateAuthority,
    CertKind,
    PeerIdentity,
    client_tls_context,
    generate_passphrase,
    read_credential,
    resolve_passphrase,
    store_passphrase,
)
from pumpguard.security_events import SecurityEventLog
from pumpguard.server.assets import AssetKind, AssetService
from pumpguard.server.certificates import DeviceCredential
from pumpguard.server.config import normalise_database_url
from pumpguard.server.datadir import SECURITY_EVENTS_FILE
from pumpguard.server.db import make_engine
from pumpguard.server.lifecycle import AssetState
from pumpguard.server.models import PumpEventRow
from pumpguard.server.runtime import Stack, StackConfig
from pumpguard.server.store import Store
from pumpguard.transport import (
    AckOutcome,
    CommandMessage,
    CommandOutcome,
    Connector,
    DeviceEvent,
    DeviceLink,
    MessageHandler,
    MqttClient,
    Outbox,
    ProgrammeSummary,
    QoS,
    ReasonCode,
    Session,
    StatusMessage,
)

__all__ = [
    "DEFINITIONS",
    "CredentialCache",
    "ServerBenchConfig",
    "ServerBenchError",
    "ServerBenchResult",
    "default_cache_dir",
    "pump_ident",
    "run_server_bench",
]

_CA_DIR = "ca"
_CRED_FILES = ("cert.pem", "key.pem", "ca.pem")

Progress = Callable[[str], None]


def pump_ident(n: int) -> str:
    """The id of the ``n``-th simulated pump (upper case: the inventory's identifier rule)."""
    return f"BENCH-{n:05d}"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/pumpguard/bench-server`` (``~/.cache/...`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    root = Path(base) if base else Path.home() / ".cache"
    return root / "pumpguard" / "bench-server"


@dataclass(frozen=True)
class CredentialCache:
    """A bench-only CA and one credential directory per pump, issued once and reused.

    The CA's passphrase is generated and stored next to it (``pki`` does this for a lab CA):
    these certificates are for measurement on one machine, never for a real pump.
    """

    root: Path

    @property
    def ca_dir(self) -> Path:
        return self.root / _CA_DIR

    def pumps_dir(self) -> Path:
        """Credentials live under the CA's fingerprint: a new CA never reuses old ones."""
        root_pem = (self.ca_dir / "root-ca.pem").read_bytes()
        return self.root / f"pumps-{hashlib.sha256(root_pem).hexdigest()[:16]}"

    def pump_dir(self, ident: str) -> Path:
        return self.pumps_dir() / ident

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self.root / "lock").open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def ensure(self, count: int, progress: Progress | None = None) -> list[str]:
        """Make sure pumps ``0 .. count-1`` have credentials; return their ids.

        Issuing is serialised by a lock on the cache, so two benches share it safely.
        """
        with self._locked():
            if not CertificateAuthority.is_initialised(self.ca_dir):
                passphrase = generate_passphrase()
                CertificateAuthority.init(self.ca_dir, passphrase)
                store_passphrase(self.ca_dir, passphrase)
            idents = [pump_ident(n) for n in range(count)]
            missing = [i for i in idents if not self._complete(i)]
            if missing:
                ca = CertificateAuthority.open(self.ca_dir, self._passphrase())
                pumps = self.pumps_dir()
                pumps.mkdir(parents=True, exist_ok=True, mode=0o700)
                for done, ident in enumerate(missing, 1):
                    staging = Path(tempfile.mkdtemp(prefix=f".{ident}-", dir=pumps))
                    ca.issue(CertKind.PUMP, ident).write(staging)
                    target = pumps / ident
                    if target.exists():
                        shutil.rmtree(target)
                    staging.rename(target)
                    if progress is not None and (done % 250 == 0 or done == len(missing)):
                        progress(f"issued {done}/{len(missing)} pump certificates")
            return idents

    def _complete(self, ident: str) -> bool:
        directory = self.pump_dir(ident)
        return all((directory / name).is_file() for name in _CRED_FILES)

    def _passphrase(self) -> bytes:
        resolved = resolve_passphrase(self.ca_dir, None, env={})
        if resolved is None:
            raise FileNotFoundError(f"the bench CA in {self.ca_dir} has lost its passphrase")
        return resolved.value

    def copy_ca(self, target: Path) -> None:
        """Give a stack's data directory this CA (``target`` is its ``pki`` directory)."""
        shutil.copytree(self.ca_dir, target, dirs_exist_ok=False)


# -- configuration and result --------------------------------------------------------------


@dataclass(frozen=True)
class ServerBenchConfig:
    """One run. ``database_url`` names a PostgreSQL *server*: the bench creates a database of
    its own on it (``pumpguard_bench_<random>``) and drops it afterwards; ``None`` runs on
    SQLite in a temporary data directory, deleted afterwards too."""

    pumps: int
    duration_s: float = 60.0
    database_url: str | None = None
    status_interval_s: float = 10.0
    event_interval_s: float = 30.0
    ramp_per_s: float = 50.0
    drain_timeout_s: float = 60.0
    cache_dir: Path | None = None
    seed: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.pumps < 1:
            problems.append("pumps (--pumps) must be at least 1")
        if self.duration_s <= 0:
            problems.append("duration_s (--duration) must be positive")
        if self.status_interval_s <= 0:
            problems.append("status_interval_s (--status-interval) must be positive")
        if self.event_interval_s <= 0:
            problems.append("event_interval_s (--event-interval) must be positive")
        if self.ramp_per_s <= 0:
            problems.append("ramp_per_s (--ramp-rate) must be positive")
        if self.drain_timeout_s < 0:
            problems.append("drain_timeout_s (--drain-timeout) cannot be negative")
        if self.database_url is not None and not self.database_url.startswith(
            ("postgresql://", "postgresql+psycopg://", "postgres://")
        ):
            problems.append("--database must be a postgresql:// URL (SQLite is the default)")
        if problems:
            raise ValueError("; ".join(problems))


DEFINITIONS: dict[str, str] = {
    "connected": "pumps whose MQTT session was open at the end of the steady state",
    "connected_min": "fewest pumps connected at any 1 s sample of the steady state",
    "events_per_s": (
        "records (statuses and events) the stack stored per second of steady state: rows "
        "whose received_at_ms (stamped by the ingest transaction) falls inside the window"
    ),
    "offered_per_s": "messages the fleet created per second of steady state",
    "ingest_p50_ms": (
        "median time from a message's sent_at_ms (stamped when the pump queued it) to the "
        "PUBACK the pump received; the stack acknowledges only after the batch committed, so "
        "this is queueing at the pump + broker + batching + commit + the way back"
    ),
    "ingest_p99_ms": "99th percentile of the same",
    "db_p50_ms": (
        "median of received_at_ms - sent_at_ms in the database: queued at the pump to the "
        "start of the ingest transaction (the commit itself is not in it)"
    ),
    "lost_events": (
        "messages the fleet created (each a unique device/seq) that are not in the database "
        "after the drain; includes any still pending at the pumps (pending_at_end)"
    ),
    "lost_after_ack": (
        "messages a pump had a PUBACK 0x00 for that are not in the database: a real loss"
    ),
    "duplicate_events": (
        "rows stored more than once for one (device_id, seq): impossible by the unique key, "
        "counted in the database all the same"
    ),
    "resent": "publishes of a (device, seq) the pump had published before (lost PUBACKs)",
    "server_deduplicated": "records the stack's ingest dropped as already stored",
    "unexpected_stored": "rows in the database that no simulated pump created",
    "connect_p50_ms": (
        "from a pump's first connection attempt to its CONNACK, during the ramp (TLS "
        "handshake + MQTT CONNECT, queued behind other handshakes)"
    ),
    "stack_cpu_percent": (
        "CPU of the stack process (broker + ingest + database client), % of one core"
    ),
    "stack_loop_cpu_percent": (
        "CPU of the stack's event-loop thread alone: TLS, the MQTT broker, the ingest client's "
        "decoding and batching (the HTTPS server idles); the rest of the stack's CPU is its "
        "worker threads, where each batch is mapped, checked and committed (SQLAlchemy, the "
        "driver and, on SQLite, the database engine itself)"
    ),
    "fleet_cpu_percent": "CPU of the bench process (all simulated pumps), % of one core",
    "machine_idle_percent": (
        "idle share of all the machine's cores during the steady state (/proc/stat): near 0 "
        "means every process, ours and others', was waiting for CPU"
    ),
    "machine_cpu_pressure_avg60": (
        "/proc/pressure/cpu 'some avg60' at the end of the steady state: % of time runnable "
        "tasks were waiting for a CPU"
    ),
}

NOT_MEASURED = (
    "the HTTPS API under load, commands to pumps, Mosquitto, several ingest workers, "
    "reconnection storms (no broker restart during the run), pumps on other machines "
    "(all sockets are loopback, so no network latency)"
)

SUSTAINED_RULE = (
    "every pump connected through the steady state, 0 lost, 0 duplicated, ingest p99 under "
    "1,000 ms and the stored rate within 5 % of the offered rate"
)


@dataclass(frozen=True)
class ServerBenchResult:
    """What one run measured; ``report()`` is the ``--json`` document."""

    pumps: int
    database: str
    duration_s: float
    connected: int
    connected_min: int
    ramp_s: float
    connect_p50_ms: float | None
    connect_p99_ms: float | None
    reconnections: int
    offered_per_s: float
    events_per_s: float
    ingest_p50_ms: float | None
    ingest_p99_ms: float | None
    db_p50_ms: float | None
    db_p99_ms: float | None
    created: int
    stored: int
    lost_events: int
    lost_after_ack: int
    pending_at_end: int
    duplicate_events: int
    resent: int
    server_deduplicated: int
    server_refused: int
    unexpected_stored: int
    drain_s: float
    stack_cpu_percent_ramp: float | None
    stack_cpu_percent_steady: float | None
    stack_loop_cpu_percent_steady: float | None
    fleet_cpu_percent_ramp: float
    fleet_cpu_percent_steady: float
    machine_idle_percent: float | None
    machine_cpu_pressure_avg60: float | None
    load_average_start: tuple[float, float, float]
    load_average_end: tuple[float, float, float]
    security_events: dict[str, int]
    status_interval_s: float
    event_interval_s: float
    ramp_per_s: float

    @property
    def sustained(self) -> bool:
        return (
            self.connected_min == self.pumps
            and self.lost_events == 0
            and self.duplicate_events == 0
            and self.ingest_p99_ms is not None
            and self.ingest_p99_ms < 1000
            and self.events_per_s >= 0.95 * self.offered_per_s
        )

    def report(self) -> dict[str, object]:
        figures = {
            name: getattr(self, name)
            for name in self.__dataclass_fields__  # keep the declaration order
        }
        figures["load_average_start"] = list(self.load_average_start)
        figures["load_average_end"] = list(self.load_average_end)
        return {
            **figures,
            "sustained": self.sustained,
            "sustained_rule": SUSTAINED_RULE,
            "definitions": DEFINITIONS,
            "not_measured": NOT_MEASURED,
            "where": (
                "stack (broker + ingest + database client) in a child process, the fleet in "
                "the bench process, one asyncio loop each; database server (PostgreSQL) in "
                "its own processes; all on this machine"
            ),
        }


# -- the fleet -----------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class _TimedSession:
    """A pump's ``MqttClient`` that notes, per (device, seq), each publish and its PUBACK."""

    def __init__(self, client: MqttClient, fleet: _Fleet) -> None:
        self._client = client
        self._fleet = fleet

    @property
    def identity(self) -> PeerIdentity:
        return self._client.identity

    @property
    def connected(self) -> bool:
        return self._client.connected

    async def publish(self, topic: str, payload: bytes, qos: QoS = QoS.AT_LEAST_ONCE) -> ReasonCode:
        fields = json.loads(payload)
        key = (str(fields["device_id"]), int(fields["seq"]))
        sent_at_ms = int(fields["sent_at_ms"])
        fleet = self._fleet
        if key in fleet.published:
            fleet.resent += 1
        else:
            fleet.published.add(key)
        reason = await self._client.publish(topic, payload, qos)
        if reason is ReasonCode.SUCCESS:
            fleet.acked[key] = time.time() * 1000 - sent_at_ms
        else:
            fleet.refusals[reason.name] = fleet.refusals.get(reason.name, 0) + 1
        return reason

    async def subscribe(self, topic_filter: str, qos: QoS = QoS.AT_LEAST_ONCE) -> ReasonCode:
        return await self._client.subscribe(topic_filter, qos)

    async def unsubscribe(self, topic_filter: str) -> ReasonCode:
        return await self._client.unsubscribe(topic_filter)

    async def close(self) -> None:
        await self._client.close()

    async def wait_closed(self) -> ReasonCode | None:
        return await self._client.wait_closed()


async def _accept_command(command: CommandMessage) -> CommandOutcome:
    """The bench sends no commands; a simulated pump would accept one."""
    return CommandOutcome(AckOutcome.ACCEPTED)


class _Fleet:
    """N ``DeviceLink``s in this loop, each with its own certificate, plus their schedule."""

    def __init__(
        self,
        idents: list[str],
        cache: CredentialCache,
        port: int,
        config: ServerBenchConfig,
    ) -> None:
        self._cache = cache
        self._port = port
        self._config = config
        self.clock = SystemClock()
        self.events = SecurityEventLog()
        self.idents = idents
        self.first_attempt: dict[str, float] = {}
        self.connected_at: dict[str, float] = {}
        self.published: set[tuple[str, int]] = set()
        self.acked: dict[tuple[str, int], float] = {}
        self.created: dict[tuple[str, int], int] = {}
        self.refusals: dict[str, int] = {}
        self.resent = 0
        self._log_seq = [0] * len(idents)
        self.outboxes = [Outbox(ident, self.clock) for ident in idents]
        self.links = [
            DeviceLink(
                outbox,
                self._connector(outbox.device_id),
                _accept_command,
                clock=self.clock,
                events=self.events,
                retry_s=1.0,
                max_retry_s=10.0,
            )
            for outbox in self.outboxes
        ]
        self._tasks: list[asyncio.Task[None]] = []

    def _connector(self, ident: str) -> Connector:
        identity = PeerIdentity(CertKind.PUMP, ident)
        contexts: list[ssl.SSLContext] = []

        async def connect(handler: MessageHandler) -> Session:
            loop = asyncio.get_running_loop()
            self.first_attempt.setdefault(ident, loop.time())
            if not contexts:  # built on first use, so the cost is spread over the ramp
                contexts.append(client_tls_context(self._cache.pump_dir(ident)))
            client = MqttClient(
                "127.0.0.1",
                self._port,
                contexts[0],
                identity,
                on_message=handler,
                clock=self.clock,
            )
            await client.connect()
            self.connected_at.setdefault(ident, loop.time())
            return _TimedSession(client, self)

        return connect

    @property
    def connected(self) -> int:
        return sum(1 for link in self.links if link.connected)

    @property
    def pending(self) -> int:
        return sum(len(outbox.pending) for outbox in self.outboxes)

    @property
    def connections(self) -> int:
        return sum(link.connections for link in self.links)

    async def ramp(self, progress: Progress) -> None:
        """Start the links at ``ramp_per_s`` and wait until each has connected once."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        interval = 1.0 / self._config.ramp_per_s
        deadline = start + len(self.links) * interval + 60.0
        last_note = start
        for n, link in enumerate(self.links):
            delay = start + n * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._tasks.append(asyncio.ensure_future(link.run()))
            if loop.time() - last_note >= 5.0:
                last_note = loop.time()
                progress(f"ramp: {len(self.connected_at)}/{len(self.links)} connected")
        while len(self.connected_at) < len(self.links) and loop.time() < deadline:
            await asyncio.sleep(0.2)
            if loop.time() - last_note >= 5.0:
                last_note = loop.time()
                progress(f"ramp: {len(self.connected_at)}/{len(self.links)} connected")

    def _put_status(self, n: int, rng: random.Random) -> None:
        message = self.links[n].put(
            StatusMessage,
            state=PumpState.INFUSING,
            care_area="ICU",
            programme=ProgrammeSummary(
                drug="Heparin",
                rate_ml_h=Decimal("12.5"),
                volume_infused_ml=Decimal(rng.randint(0, 400)),
                vtbi_remaining_ml=Decimal(rng.randint(0, 400)),
            ),
            battery_percent=rng.randint(20, 100),
            on_mains=rng.random() < 0.8,
            firmware_version="2.1.0",
            library_version="2026.11",
        )
        self.created[(message.device_id, message.seq)] = message.sent_at_ms

    def _put_event(self, n: int, rng: random.Random) -> None:
        self._log_seq[n] += 1
        kind = rng.choice(_EVENT_KINDS)
        message = self.links[n].put(
            DeviceEvent,
            event=kind,
            log_seq=self._log_seq[n],
            occurred_at_ms=self.clock.now_ms(),
            summary=f"{kind.value} (simulated)",
        )
        self.created[(message.device_id, message.seq)] = message.sent_at_ms

    async def generate(self, duration_s: float, sample: Callable[[], None]) -> None:
        """Queue statuses (every ``status_interval_s`` +-10 %, random phase) and events
        (Poisson, ``event_interval_s`` mean) for ``duration_s``; ``sample`` runs each second."""
        config = self._config
        rng = random.Random(config.seed)
        loop = asyncio.get_running_loop()
        start = loop.time()
        until = start + duration_s
        due: list[tuple[float, int, bool]] = []
        for n in range(len(self.links)):
            heapq.heappush(due, (start + rng.uniform(0, config.status_interval_s), n, True))
            heapq.heappush(due, (start + rng.expovariate(1 / config.event_interval_s), n, False))
        next_sample = start + 1.0
        while (now := loop.time()) < until:
            while due and due[0][0] <= now:
                when, n, is_status = heapq.heappop(due)
                if is_status:
                    self._put_status(n, rng)
                    later = when + config.status_interval_s * rng.uniform(0.9, 1.1)
                else:
                    self._put_event(n, rng)
                    later = when + rng.expovariate(1 / config.event_interval_s)
                if later < until:
                    heapq.heappush(due, (later, n, is_status))
            if now >= next_sample:
                sample()
                next_sample += 1.0
            wake = min(due[0][0] if due else until, next_sample, until)
            await asyncio.sleep(max(0.001, min(wake - loop.time(), 0.25)))

    async def drain(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.pending and loop.time() < deadline:
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        await asyncio.gather(*(link.stop() for link in self.links), return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


_EVENT_KINDS = (
    EventKind.DELIVERY_CHANGE,
    EventKind.ALARM_ON,
    EventKind.ALARM_OFF,
    EventKind.SENSOR,
    EventKind.MAINS,
)


# -- the stack, in its own process ---------------------------------------------------------


class ServerBenchError(RuntimeError):
    """The bench could not run: the stack did not start, the database is unreachable..."""


class _CachedCertificates:
    """Onboarding hands out the cached credential instead of issuing one (the life cycle,
    the sealed secret and the audit entries are the real ones)."""

    def __init__(self, cache: CredentialCache) -> None:
        self._cache = cache

    def issue_pump(self, ident: str, now_ms: int) -> DeviceCredential:
        directory = self._cache.pump_dir(ident)
        own = read_credential(directory)
        return DeviceCredential(
            cert_pem=(directory / "cert.pem").read_text("ascii"),
            key_pem=(directory / "key.pem").read_text("ascii"),
            ca_pem=(directory / "ca.pem").read_text("ascii"),
            serial=own.serial,
            not_after_ms=int(own.not_after.timestamp() * 1000),
        )

    def revoke(self, serial: int, reason: str, now_ms: int) -> None:
        raise NotImplementedError("the bench never decommissions its pumps")


_ACTOR = "bench-server"
_REGISTER_CHUNK = 250


def _register(stack: Stack, cache: CredentialCache, idents: list[str]) -> None:
    """Put every simulated pump in service through the asset life cycle, 250 per transaction."""
    ctx = dataclasses.replace(stack.store.ctx, certificates=_CachedCertificates(cache))
    store = Store(stack.store.engine, ctx)
    for start in range(0, len(idents), _REGISTER_CHUNK):
        with store.transaction() as session:
            assets = AssetService(session, ctx)
            for ident in idents[start : start + _REGISTER_CHUNK]:
                assets.register(ident, AssetKind.LVP, "pumpguard", "bench", ident, _ACTOR, "ICU")
                assets.transition(ident, AssetState.ONBOARDED, _ACTOR, "bench")
                assets.collect_credential(ident, _ACTOR)
                assets.transition(ident, AssetState.IN_SERVICE, _ACTOR, "bench")


def _say(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _serve(spec: dict[str, Any]) -> None:
    """The child process: start the stack, put the pumps in service, wait for stdin to close."""
    config = StackConfig(
        data_dir=Path(spec["data_dir"]),
        http_port=0,
        mqtt_port=0,
        updates_port=0,
        database_url=str(spec["database_url"]),
    )
    cache = CredentialCache(Path(spec["cache_dir"]))
    idents = [pump_ident(n) for n in range(int(spec["pumps"]))]
    stack = await Stack.start(config)
    try:
        started = time.perf_counter()
        await asyncio.to_thread(_register, stack, cache, idents)
        _say({"ready": {"mqtt_port": stack.mqtt_port, "register_s": time.perf_counter() - started}})
        await asyncio.to_thread(sys.stdin.buffer.read)  # the bench closes it to stop us
    finally:
        await stack.stop()
    _say({"stopped": dataclasses.asdict(stack.ingest_counts)})


def serve_main(argv: list[str]) -> int:
    """``python -m pumpguard.lab.server_bench --serve SPEC_JSON``."""
    if len(argv) != 2 or argv[0] != "--serve":
        sys.stderr.write("usage: python -m pumpguard.lab.server_bench --serve SPEC_JSON\n")
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(_serve(json.loads(argv[1])))
    return 0


def _proc_cpu_s(stat: Path) -> float | None:
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_cpu() -> tuple[int, int] | None:
    """(idle, total) jiffies of all cores since boot, from ``/proc/stat``."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    return fields[3] + fields[4], sum(fields[:8])


def _idle_percent(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return 100 * (after[0] - before[0]) / (after[1] - before[1])


def _cpu_pressure() -> float | None:
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return float(some.split("avg60=")[1].split()[0])
    except (OSError, ValueError, IndexError):
        return None


class _StackProcess:
    """The bench's handle on the child: start, CPU used so far, stop and final counts."""

    _SCRUBBED = ("PUMPGUARD_DATABASE_URL", "PUMPGUARD_CA_PASSPHRASE", "PUMPGUARD_AUDIT_PASSPHRASE")

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self._proc = proc
        self._log = log
        self.mqtt_port = 0
        self.register_s = 0.0

    @classmethod
    async def start(
        cls, data_dir: Path, database_url: str, cache: CredentialCache, pumps: int, log: Path
    ) -> _StackProcess:
        spec = {
            "data_dir": str(data_dir),
            "database_url": database_url,
            "cache_dir": str(cache.root),
            "pumps": pumps,
        }
        env = {k: v for k, v in os.environ.items() if k not in cls._SCRUBBED}
        with log.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pumpguard.lab.server_bench",
                "--serve",
                json.dumps(spec),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=env,
            )
        stack = cls(proc, log)
        try:
            ready = await stack._read("ready", timeout_s=900)
        except BaseException:
            await stack.kill()
            raise
        stack.mqtt_port = int(ready["mqtt_port"])
        stack.register_s = float(ready["register_s"])
        return stack

    async def _read(self, key: str, timeout_s: float) -> dict[str, Any]:
        assert self._proc.stdout is not None
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    line = await self._proc.stdout.readline()
                    if not line:
                        break
                    with contextlib.suppress(ValueError):
                        message = json.loads(line)
                        if isinstance(message, dict) and key in message:
                            return dict(message[key])
        except TimeoutError:
            raise ServerBenchError(
                f"the stack did not report {key!r} within {timeout_s:g} s"
            ) from None
        raise ServerBenchError(f"the stack exited before {key!r}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self._log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def cpu_s(self) -> float | None:
        """User + system CPU seconds of the child (Linux ``/proc``); None elsewhere."""
        return _proc_cpu_s(Path(f"/proc/{self._proc.pid}/stat"))

    def loop_cpu_s(self) -> float | None:
        """The same for its main thread, the one running the event loop."""
        return _proc_cpu_s(Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/stat"))

    async def stop(self) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            counts = await self._read("stopped", timeout_s=120)
            async with asyncio.timeout(30):
                await self._proc.wait()
        except BaseException:
            await self.kill()
            raise
        return counts

    async def kill(self) -> None:
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()


# -- the database --------------------------------------------------------------------------


@contextlib.contextmanager
def _database(server_url: str | None, data_dir: Path) -> Iterator[tuple[str, str]]:
    """(URL for this run, label): SQLite in ``data_dir``, or a fresh PostgreSQL database
    ``pumpguard_bench_<random>`` on ``server_url``'s server, dropped on the way out."""
    if server_url is None:
        yield f"sqlite:///{(data_dir / 'pumpguard.db').resolve()}", "sqlite"
        return
    url = make_url(normalise_database_url(server_url))
    name = f"pumpguard_bench_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        try:
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        except SQLAlchemyError as exc:
            raise ServerBenchError(
                f"cannot create a database on {url.render_as_string(hide_password=True)}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        try:
            yield url.set(database=name).render_as_string(hide_password=False), "postgresql"
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@dataclass(frozen=True)
class _Stored:
    keys: Counter[tuple[str, int]]
    received: list[tuple[int, int]]  # (sent_at_ms, received_at_ms)


def _read_stored(url: str) -> _Stored:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    PumpEventRow.device_id,
                    PumpEventRow.seq,
                    PumpEventRow.sent_at_ms,
                    PumpEventRow.received_at_ms,
                )
            ).all()
    finally:
        engine.dispose()
    keys: Counter[tuple[str, int]] = Counter((str(r[0]), int(r[1])) for r in rows)
    return _Stored(keys, [(int(r[2]), int(r[3])) for r in rows])


def _security_events(data_dir: Path) -> dict[str, int]:
    """Security events the stack recorded during the run, by code (certificate issuance of
    the stack's own listener and ingest credentials excluded)."""
    counts: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for line in (data_dir / SECURITY_EVENTS_FILE).read_text().splitlines():
            with contextlib.suppress(ValueError, AttributeError):
                code = str(json.loads(line).get("code"))
                if code != "pki.cert.issued":
                    counts[code] += 1
    return dict(counts)


# -- one run -------------------------------------------------------------------------------


def run_server_bench(
    config: ServerBenchConfig, progress: Progress | None = None
) -> ServerBenchResult:
    """Run the stack and the fleet as described in the module docstring and count."""
    note: Progress = progress if progress is not None else (lambda _text: None)
    return asyncio.run(_run(config, note))


def _cpu_percent(before: float | None, after: float | None, wall_s: float) -> float | None:
    if before is None or after is None or wall_s <= 0:
        return None
    return 100 * (after - before) / wall_s


async def _run(config: ServerBenchConfig, note: Progress) -> ServerBenchResult:
    cache = CredentialCache(config.cache_dir or default_cache_dir())
    note(f"credentials: {config.pumps} pump certificates from the cache in {cache.root}")
    idents = await asyncio.to_thread(cache.ensure, config.pumps, note)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pumpguard-bench-server-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir(mode=0o700)
        cache.copy_ca(data_dir / "pki")
        with _database(config.database_url, data_dir) as (url, label):
            note(f"stack: starting on {label}, putting {config.pumps} pumps in service")
            stack = await _StackProcess.start(
                data_dir, url, cache, config.pumps, Path(tmp) / "stack.log"
            )
            note(f"stack: ready on port {stack.mqtt_port} ({stack.register_s:.1f} s to register)")
            fleet = _Fleet(idents, cache, stack.mqtt_port, config)
            try:
                run = await _drive(fleet, stack, config, note)
            finally:
                await fleet.stop()
                try:
                    counts = await stack.stop()
                except ServerBenchError:
                    note(f"stack log:\n{stack.log_tail()}")
                    raise
            note("counting what the database holds")
            stored = await asyncio.to_thread(_read_stored, url)
        security = _security_events(data_dir)
    return _result(config, label, fleet, run, stored, counts, security, load_start)


@dataclass(frozen=True)
class _Phases:
    ramp_s: float
    steady_start_ms: int
    steady_end_ms: int
    drain_s: float
    connected: int
    connected_min: int
    stack_cpu_ramp: float | None
    stack_cpu_steady: float | None
    stack_loop_cpu_steady: float | None
    machine_idle: float | None
    cpu_pressure: float | None
    fleet_cpu_ramp: float
    fleet_cpu_steady: float


async def _drive(
    fleet: _Fleet, stack: _StackProcess, config: ServerBenchConfig, note: Progress
) -> _Phases:
    loop = asyncio.get_running_loop()
    note(f"ramp: connecting {config.pumps} pumps at {config.ramp_per_s:g}/s")
    ramp_start, cpu0, stack0 = loop.time(), time.process_time(), stack.cpu_s()
    await fleet.ramp(note)
    ramp_end, cpu1, stack1 = loop.time(), time.process_time(), stack.cpu_s()
    loop1, machine1 = stack.loop_cpu_s(), _machine_cpu()
    note(
        f"ramp: {len(fleet.connected_at)}/{config.pumps} connected in "
        f"{ramp_end - ramp_start:.1f} s; steady state for {config.duration_s:g} s"
    )
    lowest = [fleet.connected]

    def sample() -> None:
        lowest[0] = min(lowest[0], fleet.connected)
        elapsed = loop.time() - steady_start
        if int(elapsed) % 10 == 0:
            note(
                f"steady: {elapsed:.0f} s, {fleet.connected} connected, "
                f"{len(fleet.created)} created, {len(fleet.acked)} acknowledged"
            )

    steady_start = loop.time()
    start_ms = int(time.time() * 1000)
    await fleet.generate(config.duration_s, sample)
    end_ms = int(time.time() * 1000)
    steady_end, cpu2, stack2 = loop.time(), time.process_time(), stack.cpu_s()
    loop2, machine2, pressure = stack.loop_cpu_s(), _machine_cpu(), _cpu_pressure()
    connected = fleet.connected
    lowest[0] = min(lowest[0], connected)
    note(f"drain: waiting for {fleet.pending} pending messages")
    await fleet.drain(config.drain_timeout_s)
    drain_s = loop.time() - steady_end
    first = min(fleet.first_attempt.values(), default=ramp_start)
    last = max(fleet.connected_at.values(), default=ramp_end)
    return _Phases(
        ramp_s=last - first,
        steady_start_ms=start_ms,
        steady_end_ms=end_ms,
        drain_s=drain_s,
        connected=connected,
        connected_min=lowest[0],
        stack_cpu_ramp=_cpu_percent(stack0, stack1, ramp_end - ramp_start),
        stack_cpu_steady=_cpu_percent(stack1, stack2, steady_end - steady_start),
        stack_loop_cpu_steady=_cpu_percent(loop1, loop2, steady_end - steady_start),
        machine_idle=_idle_percent(machine1, machine2),
        cpu_pressure=pressure,
        fleet_cpu_ramp=100 * (cpu1 - cpu0) / max(ramp_end - ramp_start, 1e-9),
        fleet_cpu_steady=100 * (cpu2 - cpu1) / max(steady_end - steady_start, 1e-9),
    )


def _result(
    config: ServerBenchConfig,
    label: str,
    fleet: _Fleet,
    run: _Phases,
    stored: _Stored,
    counts: dict[str, Any],
    security: dict[str, int],
    load_start: tuple[float, float, float],
) -> ServerBenchResult:
    created = set(fleet.created)
    present = set(stored.keys)
    window_s = (run.steady_end_ms - run.steady_start_ms) / 1000
    in_window = sum(
        1 for _, received in stored.received if run.steady_start_ms <= received < run.steady_end_ms
    )
    connect_ms = [
        1000 * (fleet.connected_at[i] - fleet.first_attempt[i]) for i in fleet.connected_at
    ]
    ingest_ms = list(fleet.acked.values())
    db_ms = [float(received - sent) for sent, received in stored.received]
    return ServerBenchResult(
        pumps=config.pumps,
        database=label,
        duration_s=round(window_s, 3),
        connected=run.connected,
        connected_min=run.connected_min,
        ramp_s=round(run.ramp_s, 3),
        connect_p50_ms=_round(_percentile(connect_ms, 50)),
        connect_p99_ms=_round(_percentile(connect_ms, 99)),
        reconnections=fleet.connections - len(fleet.connected_at),
        offered_per_s=round(len(created) / window_s, 1),
        events_per_s=round(in_window / window_s, 1),
        ingest_p50_ms=_round(_percentile(ingest_ms, 50)),
        ingest_p99_ms=_round(_percentile(ingest_ms, 99)),
        db_p50_ms=_round(_percentile(db_ms, 50)),
        db_p99_ms=_round(_percentile(db_ms, 99)),
        created=len(created),
        stored=len(present),
        lost_events=len(created - present),
        lost_after_ack=len(set(fleet.acked) - present),
        pending_at_end=fleet.pending,
        duplicate_events=sum(n - 1 for n in stored.keys.values() if n > 1),
        resent=fleet.resent,
        server_deduplicated=int(counts.get("duplicates", 0)),
        server_refused=int(counts.get("refused", 0)),
        unexpected_stored=len(present - created),
        drain_s=round(run.drain_s, 3),
        stack_cpu_percent_ramp=_round(run.stack_cpu_ramp),
        stack_cpu_percent_steady=_round(run.stack_cpu_steady),
        stack_loop_cpu_percent_steady=_round(run.stack_loop_cpu_steady),
        fleet_cpu_percent_ramp=round(run.fleet_cpu_ramp, 1),
        fleet_cpu_percent_steady=round(run.fleet_cpu_steady, 1),
        machine_idle_percent=_round(run.machine_idle),
        machine_cpu_pressure_avg60=run.cpu_pressure,
        load_average_start=load_start,
        load_average_end=os.getloadavg(),
        security_events=security,
        status_interval_s=config.status_interval_s,
        event_interval_s=config.event_interval_s,
        ramp_per_s=config.ramp_per_s,
    )


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


if __name__ == "__main__":
    sys.exit(serve_main(sys.argv[1:]))
