"""``pumpguard bench faults``: the pump server under a fleet load while its parts fail.

The real stack (``server.runtime.Stack``: embedded broker over mutual TLS, ingest, database,
HTTPS API) runs in this process with a fleet of ``SimulatedPump`` firmwares, each behind its
own ``DeviceLink`` and ``Outbox``. Every pump reports a status every ``status_interval_s`` and
has mains power plugged and unplugged at random (a logged firmware event, ``event_interval_s``
mean); every second pump runs a saline infusion at 100 mL/h started at its own keypad. Then,
one after another, each held for ``fault_s`` and followed by a recovery wait:

1. *broker*: ``Stack.stop_broker`` (every session ends, connections are refused), then
   ``start_broker`` on the same port;
2. *database*: PostgreSQL: the bench's own database refuses connections
   (``ALLOW_CONNECTIONS false``) and every server connection is ended with
   ``pg_terminate_backend``; SQLite: another connection holds the file's write lock
   (``BEGIN EXCLUSIVE``), so every server transaction waits (and fails past the 30 s busy
   timeout);
3. *server*: ``Stack.stop`` and ``Stack.start`` again on the same data directory and port;
4. *partition*: a subset of pumps reaches the broker through a TCP relay that aborts their
   connections (RST) and refuses new ones, then lets them through again;
5. *clock skew*: a pump whose clock is ``skew_hours`` off is switched on and starts its
   infusion. A pumpguard ``SystemClock`` reads the wall clock once, at boot, and counts
   monotonic time after that, so a wall-clock step during a run never reaches the firmware:
   boot is where a skewed clock enters. A ``request-status`` command goes to it and to a pump
   with a true clock, and their acknowledgements are reported.

What is judged is counted where it ends: the database rows (``pump_events``) against what the
pumps generated, and the firmwares' own delivery. Recovery is from the end of a fault to the
instant every pump is connected again and every message it had generated before that end is
acknowledged (PUBACK 0x00 comes only after the ingest committed) and present in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import secrets
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, make_url, select, text
from sqlalchemy.exc import SQLAlchemyError

from pumpguard.clinical import PumpKind, load_library
from pumpguard.clock import MS_PER_HOUR, Clock, SystemClock
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.devices.infusion import (
    Confirm,
    ContinuousProgramme,
    Program,
    PumpState,
    SetMains,
)
from pumpguard.pki import CertKind, PeerIdentity
from pumpguard.security_events import SecurityEventLog
from pumpguard.server.config import normalise_database_url
from pumpguard.server.datadir import SECURITY_EVENTS_FILE
from pumpguard.server.db import make_engine
from pumpguard.server.device_runtime import SimulatedPump, mqtt_connector
from pumpguard.server.ingest import STATUS_KIND
from pumpguard.server.models import PumpEventRow
from pumpguard.server.mqtt_ingest import COMMAND_ACK_KIND, SECURITY_EVENT_KIND
from pumpguard.server.runtime import IngestCounts, Stack, StackConfig, StackError
from pumpguard.transport import CommandAction, NotConnectedError

__all__ = [
    "DEFINITIONS",
    "FaultBenchConfig",
    "FaultBenchError",
    "FaultBenchResult",
    "FaultKind",
    "FaultWindow",
    "Generated",
    "StoreCount",
    "count_stored",
    "run_fault_bench",
]

Progress = Callable[[str], None]

_CARE_AREA = "Med-Surg"
_FLUID = "Sodium Chloride 0.9%"
_RATE_ML_H = Decimal(100)
_VTBI_ML = Decimal(1000)
_SAMPLE_S = 0.25
_POLL_S = 0.05
_CONNECT_TIMEOUT_S = 120.0
_NOT_EVENTS = frozenset({STATUS_KIND, COMMAND_ACK_KIND, SECURITY_EVENT_KIND})


class FaultBenchError(RuntimeError):
    """The bench could not run: the stack did not start, the database is unreachable..."""


class FaultKind(StrEnum):
    BROKER = "broker"
    DATABASE = "database"
    SERVER = "server"
    PARTITION = "partition"
    CLOCK_SKEW = "clock-skew"


@dataclass(frozen=True)
class FaultBenchConfig:
    """One run. ``duration_s`` is the time under load, split into one equal slot per fault:
    the fault is held for ``fault_s`` (default 40 % of a slot), then the bench waits for
    recovery and lets the load run on until the slot ends. ``postgres_url`` names a
    PostgreSQL *server* (with ``database="postgresql"``): the bench creates a database of its
    own on it and drops it afterwards."""

    pumps: int = 50
    duration_s: float = 60.0
    database: str = "sqlite"
    postgres_url: str | None = None
    fault_s: float | None = None
    status_interval_s: float = 2.0
    event_interval_s: float = 5.0
    partition_share: float = 0.2
    skew_hours: float = 3.0
    recovery_timeout_s: float = 120.0
    seed: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.pumps < 3:
            problems.append(
                "pumps (--pumps) must be at least 3: one partitioned, one skewed, one neither"
            )
        if self.duration_s < 5:
            problems.append("duration_s (--seconds) must be at least 5 (one second per fault)")
        if self.database not in ("sqlite", "postgresql"):
            problems.append("database (--database) must be sqlite or postgresql")
        if self.database == "postgresql" and not self.postgres_url:
            problems.append(
                "--database postgresql needs a server: give --postgres-url or set "
                "PUMPGUARD_DATABASE_URL"
            )
        if self.postgres_url and not self.postgres_url.startswith(
            ("postgresql://", "postgresql+psycopg://", "postgres://")
        ):
            problems.append("--postgres-url must be a postgresql:// URL")
        if self.fault_s is not None and self.fault_s <= 0:
            problems.append("fault_s (--fault-seconds) must be positive")
        if self.status_interval_s <= 0 or self.event_interval_s <= 0:
            problems.append("status and event intervals must be positive")
        if not 0 < self.partition_share < 1:
            problems.append("partition_share must be between 0 and 1")
        if self.skew_hours == 0:
            problems.append("skew_hours (--skew-hours) must not be 0")
        if self.recovery_timeout_s <= 0:
            problems.append("recovery_timeout_s must be positive")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def slot_s(self) -> float:
        return self.duration_s / len(FaultKind)

    @property
    def held_s(self) -> float:
        return self.fault_s if self.fault_s is not None else max(1.0, 0.4 * self.slot_s)

    @property
    def partitioned(self) -> int:
        return max(1, min(self.pumps - 2, round(self.pumps * self.partition_share)))


# -- accounting ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Generated:
    """What one pump produced: outbox sequence numbers ``first_seq .. next_seq - 1`` (every
    status, event and acknowledgement it stamped) and firmware log entries ``1 .. log_last``."""

    first_seq: int
    next_seq: int
    log_last: int


@dataclass(frozen=True)
class StoreCount:
    """The database against what the pumps generated; see ``DEFINITIONS``."""

    generated: int
    stored: int
    events_lost: int
    events_duplicated: int
    log_entries: int
    log_entries_lost: int
    unexpected_stored: int
    command_outcomes: dict[str, str] = field(default_factory=dict)
    skew_observed_s: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Row:
    device_id: str
    seq: int
    sent_at_ms: int
    received_at_ms: int
    kind: str
    body: str


def _read_rows(engine: Engine, devices: Iterable[str]) -> list[_Row]:
    wanted = sorted(set(devices))
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                PumpEventRow.device_id,
                PumpEventRow.seq,
                PumpEventRow.sent_at_ms,
                PumpEventRow.received_at_ms,
                PumpEventRow.kind,
                PumpEventRow.body,
            ).where(PumpEventRow.device_id.in_(wanted))
        ).all()
    return [_Row(str(r[0]), int(r[1]), int(r[2]), int(r[3]), str(r[4]), str(r[5])) for r in rows]


def _log_seq(row: _Row) -> int | None:
    if row.kind in _NOT_EVENTS:
        return None
    try:
        value = json.loads(row.body).get("log_seq")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def _account(rows: list[_Row], generated: Mapping[str, Generated]) -> StoreCount:
    by_key: Counter[tuple[str, int]] = Counter((r.device_id, r.seq) for r in rows)
    seqs_of_entry: dict[tuple[str, int], set[int]] = {}
    for row in rows:
        log_seq = _log_seq(row)
        if log_seq is not None:
            seqs_of_entry.setdefault((row.device_id, log_seq), set()).add(row.seq)
    expected = {(d, s) for d, g in generated.items() for s in range(g.first_seq, g.next_seq)}
    entries = {(d, n) for d, g in generated.items() for n in range(1, g.log_last + 1)}
    present = set(by_key)
    duplicated = sum(n - 1 for n in by_key.values()) + sum(
        len(seqs) - 1 for seqs in seqs_of_entry.values()
    )
    return StoreCount(
        generated=len(expected),
        stored=len(present & expected),
        events_lost=len(expected - present),
        events_duplicated=duplicated,
        log_entries=len(entries),
        log_entries_lost=len(entries - set(seqs_of_entry)),
        unexpected_stored=len(present - expected),
    )


def count_stored(url: str, generated: Mapping[str, Generated]) -> StoreCount:
    """Read the pumps' rows from the database at ``url`` and account for them."""
    engine = make_engine(url)
    try:
        return _account(_read_rows(engine, generated), generated)
    finally:
        engine.dispose()


DEFINITIONS: dict[str, str] = {
    "events_lost": (
        "messages the pumps generated (every (device, seq) an outbox stamped: statuses, "
        "firmware events, command acknowledgements) that are not in pump_events at the end"
    ),
    "events_duplicated": (
        "rows stored more than once for one (device, seq), plus firmware log entries "
        "(device, log_seq) stored under more than one seq: a resend the unique key could "
        "not recognise"
    ),
    "log_entries_lost": "firmware log entries with no stored event row",
    "infusions_interrupted": (
        "infusing pumps whose firmware was seen in any state but infusing (sampled every "
        f"{_SAMPLE_S:g} s), or whose delivered volume at the end is less than rate x time "
        "since the infusion started"
    ),
    "recovery_s": (
        "from the end of a fault until every pump is connected again and every message each "
        "pump had generated before that end is acknowledged with PUBACK 0x00 (sent only "
        "after the ingest committed) and present in pump_events; null when not within "
        "recovery_timeout_s"
    ),
    "connected_min": "fewest pumps with an open MQTT session at any sample during the fault",
    "resent_dropped_by_server": "copies the ingest dropped as already stored (all stacks)",
    "server_errors_logged": "warnings and errors the server logged during the run, by message",
}


# -- the fleet -----------------------------------------------------------------------------


class _OffsetClock:
    """A pump's clock off by a constant: a ``SystemClock`` anchored on a wrong wall clock."""

    def __init__(self, base: Clock, offset_ms: int) -> None:
        self._base = base
        self._offset_ms = offset_ms

    def now_ms(self) -> int:
        return self._base.now_ms() + self._offset_ms


def _mains_toggler(event_interval_s: float, rng: random.Random) -> Callable[[SimulatedPump], None]:
    """Unplug and plug back the mains at random: a logged event that never stops delivery."""
    chance = min(1.0, 1.0 / event_interval_s)

    def act(pump: SimulatedPump) -> None:
        if rng.random() < chance:
            firmware = pump.firmware
            firmware.handle(SetMains(not firmware.battery.mains))

    return act


@dataclass
class _Member:
    pump: SimulatedPump
    infusing: bool
    partitioned: bool
    started_ms: int | None = None  # firmware time the infusion started
    interrupted: str | None = None
    ticker: asyncio.Task[None] | None = None
    link: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)


async def _tick(member: _Member, phase_s: float) -> None:
    """What ``SimulatedPump.run`` does each second, but with the link left running after the
    firmware's reporting stops, so the last messages drain before the count."""
    await asyncio.sleep(phase_s)
    while not member.stop.is_set():
        member.pump.step()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(member.stop.wait(), 1.0)


def _start_infusion(pump: SimulatedPump) -> int:
    firmware = pump.firmware
    before = firmware.log.last_seq
    programme = ContinuousProgramme(_FLUID, _RATE_ML_H, "mL/h", _VTBI_ML)
    for command in (Program(programme), Confirm()):
        result = firmware.handle(command)
        if not result.accepted:
            raise FaultBenchError(f"{pump.ident} refused the saline infusion: {result.message}")
    started = firmware.log.since(before)
    return started[-1].time_ms


class _Relay:
    """A TCP relay between some pumps and the broker that can partition them: abort every
    connection (an RST both ways) and refuse new ones, then let them through again."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = 0

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def cut(self) -> int:
        """Partition: returns how many pump connections were aborted."""
        if self._server is not None:
            self._server.close()
            self._server = None
        aborted = len(self._writers) // 2
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        return aborted

    async def close(self) -> None:
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream)
            except OSError:
                writer.transport.abort()
                return
            self._writers.update((writer, up_writer))
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                for end in (writer, up_writer):
                    self._writers.discard(end)
                    end.transport.abort()
        finally:
            if task is not None:
                self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65_536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.transport.abort()


# -- the database and its outage -----------------------------------------------------------


@dataclass
class _Database:
    url: str
    label: str
    sqlite_path: Path | None = None
    admin: Engine | None = None
    name: str | None = None

    async def outage(self, hold_s: float) -> str:
        """Make the database unavailable for ``hold_s``; says what was done."""
        if self.sqlite_path is not None:
            return await _lock_sqlite(self.sqlite_path, hold_s)
        assert self.admin is not None and self.name is not None
        admin, name = self.admin, self.name

        def block() -> int:
            with admin.connect() as connection:
                connection.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
                return int(
                    connection.execute(
                        text(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = :name AND pid <> pg_backend_pid()"
                        ),
                        {"name": name},
                    ).scalar_one()
                )

        def allow() -> None:
            with admin.connect() as connection:
                connection.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))

        terminated = await asyncio.to_thread(block)
        try:
            await asyncio.sleep(hold_s)
        finally:
            await asyncio.to_thread(allow)
        return (
            f"database {name} refused connections; {terminated} server connections "
            "terminated with pg_terminate_backend"
        )


async def _lock_sqlite(path: Path, hold_s: float) -> str:
    acquired, release = threading.Event(), threading.Event()
    failure: list[str] = []

    def hold() -> None:
        try:
            connection = sqlite3.connect(path, timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            failure.append(str(exc))
            acquired.set()
            return
        try:
            connection.execute("BEGIN EXCLUSIVE")
            acquired.set()
            release.wait()
            connection.execute("ROLLBACK")
        except sqlite3.Error as exc:
            failure.append(str(exc))
            acquired.set()
        finally:
            connection.close()

    thread = threading.Thread(target=hold, name="pumpguard-fault-sqlite-lock", daemon=True)
    thread.start()
    while not acquired.is_set():
        await asyncio.sleep(_POLL_S)
    if failure:
        raise FaultBenchError(f"could not lock {path}: {failure[0]}")
    try:
        await asyncio.sleep(hold_s)
    finally:
        release.set()
        while thread.is_alive():
            await asyncio.sleep(_POLL_S)
    return (
        "another connection held the SQLite write lock (BEGIN EXCLUSIVE); server "
        "transactions waited (busy timeout 30 s)"
    )


@contextlib.contextmanager
def _database(config: FaultBenchConfig, data_dir: Path) -> Iterator[_Database]:
    if config.database == "sqlite":
        path = (data_dir / "pumpguard.db").resolve()
        yield _Database(f"sqlite:///{path}", "sqlite", sqlite_path=path)
        return
    assert config.postgres_url is not None
    url = make_url(normalise_database_url(config.postgres_url))
    name = f"pumpguard_faults_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        try:
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        except SQLAlchemyError as exc:
            raise FaultBenchError(
                f"cannot create a database on {url.render_as_string(hide_password=True)}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        try:
            yield _Database(
                url.set(database=name).render_as_string(hide_password=False),
                "postgresql",
                admin=admin,
                name=name,
            )
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# -- result --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultWindow:
    fault: FaultKind
    started_at_s: float  # since the first fault began
    held_s: float
    recovery_s: float | None
    connected_min: int
    detail: str


@dataclass(frozen=True)
class FaultBenchResult:
    config: FaultBenchConfig
    database: str
    wall_time_s: float
    infusing: int
    infusions_interrupted: int
    interruptions: dict[str, str]
    store: StoreCount
    faults: tuple[FaultWindow, ...]
    resent_dropped_by_server: int
    server_errors_logged: dict[str, int]
    security_events: dict[str, int]
    pump_security_events: dict[str, int]
    load_average_start: tuple[float, float, float]
    load_average_end: tuple[float, float, float]

    @property
    def all_zero(self) -> bool:
        store = self.store
        return (
            store.events_lost == 0
            and store.events_duplicated == 0
            and store.log_entries_lost == 0
            and store.unexpected_stored == 0
            and self.infusions_interrupted == 0
            and all(f.recovery_s is not None for f in self.faults)
        )

    def configuration(self) -> dict[str, object]:
        config = self.config
        return {
            "pumps": config.pumps,
            "seconds": config.duration_s,
            "database": self.database,
            "fault_held_s": round(config.held_s, 2),
            "slot_s": round(config.slot_s, 2),
            "status_interval_s": config.status_interval_s,
            "event_interval_s": config.event_interval_s,
            "infusing": self.infusing,
            "partitioned": config.partitioned,
            "skew_hours": config.skew_hours,
            "recovery_timeout_s": config.recovery_timeout_s,
            "seed": config.seed,
        }

    def report(self) -> dict[str, object]:
        store = self.store
        return {
            "events_lost": store.events_lost,
            "events_duplicated": store.events_duplicated,
            "infusions_interrupted": self.infusions_interrupted,
            "all_zero": self.all_zero,
            "faults": [{**asdict(f), "fault": f.fault.value} for f in self.faults],
            "wall_time_s": round(self.wall_time_s, 1),
            "configuration": self.configuration(),
            "generated": store.generated,
            "stored": store.stored,
            "log_entries": store.log_entries,
            "log_entries_lost": store.log_entries_lost,
            "unexpected_stored": store.unexpected_stored,
            "interruptions": self.interruptions,
            "resent_dropped_by_server": self.resent_dropped_by_server,
            "command_outcomes": store.command_outcomes,
            "skew_observed_s": store.skew_observed_s,
            "server_errors_logged": self.server_errors_logged,
            "security_events": self.security_events,
            "pump_security_events": self.pump_security_events,
            "load_average_start": list(self.load_average_start),
            "load_average_end": list(self.load_average_end),
            "definitions": DEFINITIONS,
            "method": (
                "stack, fleet and relay in one process and one asyncio loop, over loopback; "
                "the broker and the server are stopped and started in-process (Stack.stop_broker"
                "/start_broker, Stack.stop/start), not killed with a signal; the SQLite outage "
                "is a held write lock, the PostgreSQL outage refused and terminated connections"
            ),
        }


# -- the run -------------------------------------------------------------------------------


class _LogCounter(logging.Handler):
    """Counts what the server logs during the run instead of printing tracebacks."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = (record.msg if isinstance(record.msg, str) else str(record.msg)).splitlines()
        first = message[0] if message else ""
        self.counts[f"{record.name}: {first.split('(<')[0]}"] += 1


@contextlib.contextmanager
def _counting_logs() -> Iterator[_LogCounter]:
    """The server's loggers and asyncio's (which reports a stream handler task cancelled by
    ``Broker.stop`` as an exception in a callback, on Python 3.11)."""
    counter = _LogCounter()
    loggers = [logging.getLogger(name) for name in ("pumpguard", "asyncio")]
    propagate = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.addHandler(counter)
        logger.propagate = False
    try:
        yield counter
    finally:
        for logger, before in zip(loggers, propagate, strict=True):
            logger.removeHandler(counter)
            logger.propagate = before


def run_fault_bench(config: FaultBenchConfig, progress: Progress | None = None) -> FaultBenchResult:
    """Run the stack, the fleet and the faults as the module docstring says, and count."""
    note: Progress = progress if progress is not None else (lambda _text: None)
    with _counting_logs() as logs:
        return asyncio.run(_run(config, note, logs))


async def _run(config: FaultBenchConfig, note: Progress, logs: _LogCounter) -> FaultBenchResult:
    started = time.perf_counter()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pumpguard-bench-faults-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir(mode=0o700)
        with _database(config, data_dir) as database:
            bench = _Bench(config, database, data_dir, note)
            try:
                await bench.run()
            finally:
                await bench.close()
            note("counting what the database holds")
            store = await asyncio.to_thread(bench.count)
        security = _security_events(data_dir)
    return FaultBenchResult(
        config=config,
        database=database.label,
        wall_time_s=time.perf_counter() - started,
        infusing=sum(1 for m in bench.members if m.infusing),
        infusions_interrupted=sum(1 for m in bench.members if m.interrupted is not None),
        interruptions={
            m.pump.ident: m.interrupted for m in bench.members if m.interrupted is not None
        },
        store=store,
        faults=tuple(bench.windows),
        resent_dropped_by_server=sum(c.duplicates for c in bench.ingest_counts()),
        server_errors_logged=dict(logs.counts),
        security_events=security,
        pump_security_events=dict(Counter(str(e.code) for e in bench.pump_events)),
        load_average_start=load_start,
        load_average_end=os.getloadavg(),
    )


def _security_events(data_dir: Path) -> dict[str, int]:
    counts: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for line in (data_dir / SECURITY_EVENTS_FILE).read_text().splitlines():
            with contextlib.suppress(ValueError, AttributeError):
                code = str(json.loads(line).get("code"))
                if not code.startswith("pki.cert"):
                    counts[code] += 1
    return dict(counts)


class _Bench:
    def __init__(
        self, config: FaultBenchConfig, database: _Database, data_dir: Path, note: Progress
    ) -> None:
        self.config = config
        self.database = database
        self.data_dir = data_dir
        self.note = note
        self.rng = random.Random(config.seed)
        self.clock = SystemClock()
        self.pump_events = SecurityEventLog()
        self.members: list[_Member] = []
        self.windows: list[FaultWindow] = []
        self.stacks: list[Stack] = []
        self.stack: Stack | None = None
        self.relay: _Relay | None = None
        self.reader: Engine | None = None
        self.commands: dict[str, str] = {}  # command_id -> "pump (clock)"
        self.skewed: _Member | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._generated: dict[str, Generated] = {}
        self._t0 = 0.0

    def ingest_counts(self) -> list[IngestCounts]:
        return [s.ingest_counts for s in self.stacks]

    def _stack_config(self, mqtt_port: int) -> StackConfig:
        return StackConfig(
            data_dir=self.data_dir,
            http_port=0,
            mqtt_port=mqtt_port,
            updates_port=0,
            database_url=self.database.url,
        )

    async def _start_stack(self, mqtt_port: int) -> Stack:
        try:
            stack = await Stack.start(self._stack_config(mqtt_port))
        except StackError as exc:
            raise FaultBenchError(f"the stack did not start: {exc}") from None
        self.stacks.append(stack)
        self.stack = stack
        return stack

    # -- setting up ---------------------------------------------------------------------

    async def run(self) -> None:
        config = self.config
        self.note(f"stack: starting on {self.database.label}")
        stack = await self._start_stack(0)
        self.reader = make_engine(self.database.url)
        self.relay = _Relay(stack.mqtt_port)
        await self.relay.open()
        self.note(f"fleet: putting {config.pumps} pumps in service")
        await self._build_fleet(stack)
        loop = asyncio.get_running_loop()
        for member in self.members:
            if member is not self.skewed:
                self._boot(member)
        self._sampler = asyncio.ensure_future(self._watch_infusions())
        await self._wait_connected(_CONNECT_TIMEOUT_S)
        await asyncio.sleep(config.status_interval_s)
        self._t0 = loop.time()
        for kind in FaultKind:
            slot_end = loop.time() + config.slot_s
            self.note(f"fault: {kind.value} for {config.held_s:.1f} s")
            window = await self._inject(kind)
            self.windows.append(window)
            shown = "not recovered" if window.recovery_s is None else f"{window.recovery_s:.2f} s"
            self.note(f"fault: {kind.value} recovered in {shown}")
            await asyncio.sleep(max(0.0, slot_end - loop.time()))
        self.note("drain: the pumps stop reporting; waiting for their outboxes")
        for member in self.members:
            member.stop.set()
        await asyncio.gather(*(m.ticker for m in self.members if m.ticker), return_exceptions=True)
        deadline = loop.time() + config.recovery_timeout_s
        while any(m.pump.outbox.pending for m in self.members) and loop.time() < deadline:
            await asyncio.sleep(_POLL_S)
        self._final_delivery_check()

    async def _build_fleet(self, stack: Stack) -> None:
        config = self.config
        library = load_library(EXAMPLE_LIBRARY)
        idents = [f"FAULT-{n:05d}" for n in range(config.pumps)]
        skewed_ident = idents[-1]
        partitioned = set(idents[-1 - config.partitioned : -1])
        skew_ms = round(config.skew_hours * MS_PER_HOUR)
        assert self.relay is not None
        for n, ident in enumerate(idents):
            directory = await asyncio.to_thread(
                stack.provision_device, ident, "lvp", location=_CARE_AREA
            )
            port = self.relay.port if ident in partitioned else stack.mqtt_port
            clock: Clock = (
                _OffsetClock(self.clock, skew_ms) if ident == skewed_ident else self.clock
            )
            pump = SimulatedPump(
                ident,
                PumpKind.LVP,
                mqtt_connector(
                    "127.0.0.1",
                    port,
                    directory,
                    PeerIdentity(CertKind.PUMP, ident),
                    events=self.pump_events,
                ),
                clock=clock,
                events=self.pump_events,
                library=library,
                care_area=_CARE_AREA,
                status_every_s=config.status_interval_s,
                workload=_mains_toggler(
                    config.event_interval_s, random.Random(f"{config.seed}-{ident}")
                ),
                rng=random.Random(ident),
            )
            member = _Member(
                pump,
                infusing=n % 2 == 0 or ident == skewed_ident,
                partitioned=ident in partitioned,
            )
            self.members.append(member)
            if ident == skewed_ident:
                self.skewed = member

    def _boot(self, member: _Member) -> None:
        """Switch on at the bedside, start the infusion at the keypad, then run."""
        member.pump.power_on()
        if member.infusing:
            member.started_ms = _start_infusion(member.pump)
        member.ticker = asyncio.ensure_future(_tick(member, self.rng.uniform(0, 1)))
        member.link = asyncio.ensure_future(member.pump.link.run())

    async def _wait_connected(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        running = [m for m in self.members if m.link is not None]
        while not all(m.pump.link.connected for m in running):
            if loop.time() > deadline:
                connected = sum(1 for m in running if m.pump.link.connected)
                raise FaultBenchError(
                    f"only {connected}/{len(running)} pumps connected in {timeout_s:g} s"
                )
            await asyncio.sleep(0.2)

    # -- faults -------------------------------------------------------------------------

    async def _inject(self, kind: FaultKind) -> FaultWindow:
        loop = asyncio.get_running_loop()
        begun = loop.time()
        lowest = [self._connected()]
        watcher = asyncio.ensure_future(self._watch_connected(lowest))
        try:
            detail = await self._hold(kind)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        ended = loop.time()
        recovery = await self._recovery()
        return FaultWindow(
            fault=kind,
            started_at_s=round(begun - self._t0, 2),
            held_s=round(ended - begun, 2),
            recovery_s=None if recovery is None else round(recovery, 3),
            connected_min=lowest[0],
            detail=detail,
        )

    async def _hold(self, kind: FaultKind) -> str:
        held = self.config.held_s
        stack = self.stack
        assert stack is not None and self.relay is not None
        if kind is FaultKind.BROKER:
            await stack.stop_broker()
            await asyncio.sleep(held)
            await stack.start_broker()
            return "Stack.stop_broker, then start_broker on the same port"
        if kind is FaultKind.DATABASE:
            return await self.database.outage(held)
        if kind is FaultKind.SERVER:
            port = stack.mqtt_port
            await stack.stop()
            await asyncio.sleep(held)
            await self._start_stack(port)
            return "Stack.stop, then Stack.start on the same data directory and MQTT port"
        if kind is FaultKind.PARTITION:
            aborted = self.relay.cut()
            await asyncio.sleep(held)
            await self.relay.open()
            return (
                f"{self.config.partitioned} pumps cut off: {aborted} connections aborted, new "
                "ones refused"
            )
        return await self._skew(held)

    async def _skew(self, held: float) -> str:
        member = self.skewed
        stack = self.stack
        assert member is not None and stack is not None
        loop = asyncio.get_running_loop()
        until = loop.time() + held
        first_seq = member.pump.outbox.next_seq
        self._boot(member)
        control = self.members[0]
        sent = []
        # commanded once it has reported (stored, so acknowledged): the server learns a
        # pump's clock from its messages, and one that has said nothing yet gets server time
        outbox = member.pump.outbox
        while loop.time() < until and (
            not member.pump.link.connected or outbox.next_seq == first_seq or outbox.pending
        ):
            await asyncio.sleep(_POLL_S)
        for target, label in ((member, "skewed"), (control, "true")):
            try:
                command_id = await stack.send_command(
                    target.pump.ident, CommandAction.REQUEST_STATUS
                )
            except (NotConnectedError, StackError) as exc:
                sent.append(f"{label}: not sent ({exc})")
                continue
            self.commands[command_id] = f"{target.pump.ident} ({label} clock)"
        await asyncio.sleep(max(0.0, until - loop.time()))
        direction = "ahead" if self.config.skew_hours > 0 else "behind"
        return (
            f"{member.pump.ident} booted with its clock {abs(self.config.skew_hours):g} h "
            f"{direction}, infusing; request-status sent to it and to {control.pump.ident}"
            + (f"; {'; '.join(sent)}" if sent else "")
        )

    def _connected(self) -> int:
        return sum(1 for m in self.members if m.link is not None and m.pump.link.connected)

    async def _watch_connected(self, lowest: list[int]) -> None:
        while True:
            await asyncio.sleep(_SAMPLE_S)
            lowest[0] = min(lowest[0], self._connected())

    async def _recovery(self) -> float | None:
        """Seconds until every pump is connected again and every message generated before
        now is acknowledged and stored."""
        loop = asyncio.get_running_loop()
        ended = loop.time()
        running = [m.pump for m in self.members if m.link]
        marks = {pump.ident: pump.outbox.next_seq for pump in running}
        while loop.time() - ended < self.config.recovery_timeout_s:
            acknowledged = all(
                pump.link.connected
                and (not pump.outbox.pending or pump.outbox.pending[0].seq >= marks[pump.ident])
                for pump in running
            )
            if acknowledged:
                at = loop.time()
                if await asyncio.to_thread(self._stored_up_to, marks):
                    return at - ended
            await asyncio.sleep(_POLL_S)
        return None

    def _stored_up_to(self, marks: Mapping[str, int]) -> bool:
        assert self.reader is not None
        try:
            rows = _read_rows(self.reader, marks)
        except SQLAlchemyError:
            return False
        present = {(r.device_id, r.seq) for r in rows}
        return all((d, s) in present for d, mark in marks.items() for s in range(1, mark))

    # -- the patients' side -------------------------------------------------------------

    async def _watch_infusions(self) -> None:
        while True:
            await asyncio.sleep(_SAMPLE_S)
            for member in self.members:
                if member.started_ms is None or member.interrupted is not None:
                    continue
                state = member.pump.firmware.state
                if state is not PumpState.INFUSING:
                    member.interrupted = f"seen {state.value} during the run"

    def _final_delivery_check(self) -> None:
        for member in self.members:
            if member.started_ms is None or member.interrupted is not None:
                continue
            firmware = member.pump.firmware
            now = member.pump.clock.now_ms()
            delivered = firmware.volume_infused_ml
            due = _RATE_ML_H * Decimal(max(0, now - member.started_ms)) / Decimal(MS_PER_HOUR)
            # the firmware caught up to at most `now`; one clock read later may be 1 ms on
            if delivered + _RATE_ML_H * 2 / Decimal(MS_PER_HOUR) < due:
                member.interrupted = f"delivered {delivered:.4f} mL of {due:.4f} mL due"
            elif firmware.state is not PumpState.INFUSING:
                member.interrupted = f"{firmware.state.value} at the end"

    # -- ending -------------------------------------------------------------------------

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        for member in self.members:
            member.stop.set()
        await asyncio.gather(
            *(m.pump.link.stop() for m in self.members if m.link), return_exceptions=True
        )
        tasks = [t for m in self.members for t in (m.ticker, m.link) if t is not None]
        if self._sampler is not None:
            tasks.append(self._sampler)
        await asyncio.gather(*tasks, return_exceptions=True)
        self._generated = {
            m.pump.ident: Generated(1, m.pump.outbox.next_seq, m.pump.firmware.log.last_seq)
            for m in self.members
            if m.link is not None
        }
        if self.relay is not None:
            await self.relay.close()
        if self.stack is not None:
            await self.stack.stop()
        if self.reader is not None:
            self.reader.dispose()

    def count(self) -> StoreCount:
        engine = make_engine(self.database.url)
        try:
            rows = _read_rows(engine, self._generated)
        finally:
            engine.dispose()
        store = _account(rows, self._generated)
        outcomes = {}
        skew: dict[str, float] = {}
        for row in rows:
            if row.kind == COMMAND_ACK_KIND:
                body = json.loads(row.body)
                label = self.commands.get(str(body.get("command_id")))
                if label is not None:
                    outcomes[label] = str(body.get("outcome"))
        for member in (self.skewed, self.members[0]):
            if member is None:
                continue
            offsets = sorted(
                r.sent_at_ms - r.received_at_ms for r in rows if r.device_id == member.pump.ident
            )
            if offsets:
                skew[member.pump.ident] = round(offsets[len(offsets) // 2] / 1000, 1)
        for label in self.commands.values():
            outcomes.setdefault(label, "no acknowledgement stored")
        return dataclasses.replace(store, command_outcomes=outcomes, skew_observed_s=skew)
