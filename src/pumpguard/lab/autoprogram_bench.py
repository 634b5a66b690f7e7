"""``pumpguard bench autoprogram``: EHR orders through the running server to pump pre-fills.

What runs where (two processes, so that the EHR's HL7 work is not the server's CPU):

* the **stack** (``Stack`` with its EHR gateway: MLLP/TLS listener, order check, database,
  MQTT broker) and a **fleet** of M ``SimulatedPump`` firmwares over mutual-TLS MQTT, each
  sending telemetry; a quarter of them run the ward's own nurse (infusions started at the
  pump, as background traffic), every pump has the bedside nurse of ``up --demo`` who answers
  pre-filled orders after ``confirm_after_s``: all in this process, one asyncio loop;
* the **EHR** (``lab.ehr.SimulatedEhr``) in a child process,
  ``python -m pumpguard.lab.autoprogram_bench --ehr SPEC``: it builds each order, sends it over
  MLLP/TLS with an EHR certificate, reads the ``ACK^O15`` and listens for ``RRG^O16`` and IPEC.

How the latencies are measured (all on this machine's wall clock, shared by both processes):

* *sent*: stamped by the EHR just before it opens the connection for the order;
* *prefill*: the instant the pump firmware took the pre-filled programme, i.e. the time of its
  own ``programmed`` log entry (source ``auto-programme``), read here from the firmware of the
  pump in this process; not when the server sent the command nor when it heard back;
* *RRG*: stamped by the EHR when the ``RRG^O16`` frame was read on its listener. This server
  sends it once the clinician has answered at the pump, so it includes the nurse's delay
  (``confirm_after_s``, applied at the pump's 1 s tick); ``confirm_to_rrg`` is the machine's
  part: from the firmware's delivery-start (or change, or cancel) entry to the RRG^O16;
* *stages* (``STAGES``): each pre-filled order's time split at the server's own trail steps
  ``received`` and ``checked`` (``ehr_order_steps``, read from the stack's database after the
  run), so that a tail can be placed before, inside or after the server's check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pumpguard.clinical import PumpKind, load_library
from pumpguard.clock import SystemClock
from pumpguard.data import EXAMPLE_LIBRARY
from pumpguard.devices.infusion import CommandSource, EventKind
from pumpguard.interop import AckCode, Endpoint, build_accept_ack, parse_ack
from pumpguard.lab.ehr import (
    OrderFactory,
    SimulatedEhr,
    default_mix,
    percentile,
    run_orders,
)
from pumpguard.pki import CertKind, PeerIdentity
from pumpguard.server.bedside import bedside_nurse
from pumpguard.server.demo import WardBed, ward_workload
from pumpguard.server.device_runtime import SimulatedPump, mqtt_connector
from pumpguard.server.ehr_gateway import EhrSettings, NurseSettings
from pumpguard.server.heap import freeze_startup_heap
from pumpguard.server.orders import OrderService, OrderStep
from pumpguard.server.runtime import Stack, StackConfig, StackError

__all__ = [
    "DEFINITIONS",
    "STAGES",
    "TARGET_PREFILL_P99_MS",
    "AutoprogramBenchConfig",
    "AutoprogramBenchError",
    "AutoprogramBenchResult",
    "StageFigures",
    "run_autoprogram_bench",
]

TARGET_PREFILL_P99_MS = 250.0
_AREAS = ("ICU", "Med-Surg", "Oncology")
_PROBE_S = 0.01
_MAX_LINE = 1 << 28  # the child's result is one JSON line with every order's record
_DECIDED = {
    EventKind.DELIVERY_START,
    EventKind.DELIVERY_CHANGE,
    EventKind.PROGRAMME_CANCELLED,
}

Progress = Callable[[str], None]


class AutoprogramBenchError(Exception):
    """The bench could not run: the stack or the EHR process failed."""


@dataclass(frozen=True)
class AutoprogramBenchConfig:
    orders: int = 200
    pumps: int = 24
    rate_per_s: float = 5.0
    status_interval_s: float = 10.0
    confirm_after_s: float = 0.0
    reject_probability: float = 0.0
    settle_timeout_s: float = 120.0
    seed: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.orders < 1:
            problems.append("--orders must be at least 1")
        if self.pumps < 4:
            problems.append("--pumps must be at least 4 (order targets and background pumps)")
        if not self.rate_per_s > 0:
            problems.append("--rate must be a positive number of orders per second")
        if not self.status_interval_s > 0:
            problems.append("--status-interval must be positive")
        if self.confirm_after_s < 0:
            problems.append("--confirm-after cannot be negative")
        if not 0 <= self.reject_probability <= 1:
            problems.append("--reject-probability must be from 0 to 1")
        if problems:
            raise ValueError("; ".join(problems))


DEFINITIONS: dict[str, str] = {
    "prefill_p50_ms": (
        "median time from the EHR sending an order to the pump firmware holding the pre-filled "
        "programme (the time of its own log entry), over orders that reached a pump"
    ),
    "prefill_p99_ms": "99th percentile (nearest rank) of the same",
    "rrg_p50_ms": (
        "median time from sending an order to the EHR reading its RRG^O16, over orders that "
        "got one (refusals are answered at once; accepted orders after the nurse's answer)"
    ),
    "rrg_p99_ms": "99th percentile of the same",
    "ack_p50_ms": "median time from sending an order to reading its ACK^O15",
    "confirm_to_rrg_p50_ms": (
        "median time from the clinician's answer at the pump (firmware log) to the EHR "
        "reading the RRG^O16: the server's way back, without the nurse's delay"
    ),
    "prefill_unattributed": (
        "auto-programme pre-fills seen in a firmware log whose order could not be named "
        "(not in the figures; expected 0)"
    ),
    "accepted": "orders answered RRG^O16 AA",
    "refused": "orders by the answer that refused them: ACK^O15 CE/CR with ERR-3, RRG AE/AR "
    "with ERR-5",
    "as_expected": "orders whose ACK, RRG and ERR codes are the ones the order was built to get",
    "machine_idle_percent": "idle share of all cores during the order phase (/proc/stat)",
}

STAGES: tuple[tuple[str, str], ...] = (
    (
        "ehr_to_received",
        "EHR send -> the server's 'received' trail step: TCP and TLS handshake, MLLP frame, HL7 "
        "parse and validation (worker thread), then in the order's transaction the database "
        "write lock, the pump's installed library, the order row and its message-id claim",
    ),
    (
        "received_to_checked",
        "'received' -> 'checked' trail steps, the rest of that transaction: placer-number check, "
        "the pump's asset and status, check_order against the drug library",
    ),
    (
        "checked_to_prefill",
        "'checked' -> the pump firmware's pre-fill entry: commit, prefill-order command over MQTT "
        "through the broker, the firmware's own checks",
    ),
)
"""Where an order's pre-fill time goes, from the server's own trail (ehr_order_steps, wall
clock) between the EHR's send stamp and the firmware's entry; orders that reached a pump."""

NOT_MEASURED = (
    "PCA orders (the server does not pre-fill them yet), orders from several EHRs at once, "
    "pumps on other machines (all sockets are loopback), PostgreSQL (SQLite only)"
)


@dataclass(frozen=True)
class StageFigures:
    """One stage of the order-to-pre-fill path (see ``STAGES``)."""

    name: str
    definition: str
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    orders: int


@dataclass(frozen=True)
class AutoprogramBenchResult:
    orders: int
    pumps: int
    rate_per_s: float
    prefill_p50_ms: float | None
    prefill_p99_ms: float | None
    rrg_p50_ms: float | None
    rrg_p99_ms: float | None
    ack_p50_ms: float | None
    ack_p99_ms: float | None
    confirm_to_rrg_p50_ms: float | None
    confirm_to_rrg_p99_ms: float | None
    prefill_measured: int
    prefill_unattributed: int
    rrg_received: int
    accepted: int
    refused: dict[str, int]
    as_expected: int
    not_as_expected: int
    not_as_expected_by_kind: dict[str, int]
    not_as_expected_examples: list[str]
    by_kind: dict[str, int]
    no_ack: int
    rrg_missing: int
    order_phase_s: float
    stack_and_fleet_cpu_percent: float
    ehr_cpu_percent: float | None
    machine_idle_percent: float | None
    load_average_start: tuple[float, float, float]
    load_average_end: tuple[float, float, float]
    confirm_after_s: float
    reject_probability: float
    status_interval_s: float
    security_events: dict[str, int] = field(default_factory=dict)
    stages: tuple[StageFigures, ...] = ()

    @property
    def target_met(self) -> bool:
        return self.prefill_p99_ms is not None and self.prefill_p99_ms < TARGET_PREFILL_P99_MS

    def report(self) -> dict[str, object]:
        figures = {name: getattr(self, name) for name in self.__dataclass_fields__}
        figures["load_average_start"] = list(self.load_average_start)
        figures["load_average_end"] = list(self.load_average_end)
        figures["stages"] = {
            stage.name: {
                "p50_ms": stage.p50_ms,
                "p99_ms": stage.p99_ms,
                "max_ms": stage.max_ms,
                "orders": stage.orders,
                "definition": stage.definition,
            }
            for stage in self.stages
        }
        return {
            **figures,
            "target_prefill_p99_ms": TARGET_PREFILL_P99_MS,
            "target_met": self.target_met,
            "definitions": DEFINITIONS,
            "not_measured": NOT_MEASURED,
            "where": (
                "stack + fleet in the bench process (one asyncio loop), the EHR in a child "
                "process; SQLite in a temporary data directory; all on this machine"
            ),
        }


# -- the fleet ---------------------------------------------------------------------------------


def _beds(count: int) -> tuple[WardBed, ...]:
    """Every fourth pump has the ward's own nurse (background infusions); the rest take orders."""
    return tuple(
        WardBed(f"AP-{n:04d}", _AREAS[n % len(_AREAS)], f"3{n:05d}", n % 4 == 3)
        for n in range(1, count + 1)
    )


class _PrefillProbe:
    """Reads the firmware logs of the pumps in this process: when each pump took a pre-filled
    order (its ``programmed`` entry from ``auto-programme``) and when the clinician answered."""

    def __init__(self, pumps: list[SimulatedPump]) -> None:
        self._pumps = pumps
        self._seen = {p.ident: p.firmware.log.last_seq for p in pumps}
        self._last: dict[str, str] = {}
        self.prefilled: dict[str, int] = {}
        self.decided: dict[str, int] = {}
        self.unattributed = 0

    def scan(self) -> None:
        for pump in self._pumps:
            entries = pump.firmware.log.since(self._seen[pump.ident])
            if not entries:
                continue
            self._seen[pump.ident] = entries[-1].seq
            for entry in entries:
                if entry.kind is EventKind.PROGRAMMED:
                    if entry.source is CommandSource.AUTO_PROGRAMME:
                        order = pump.pending_order or self._confirmed(pump)
                        if order is None:
                            self.unattributed += 1
                            continue
                        self.prefilled.setdefault(order, entry.time_ms)
                        self._last[pump.ident] = order
                elif entry.kind in _DECIDED and pump.ident in self._last:
                    if entry.kind is EventKind.PROGRAMME_CANCELLED and entry.detail == "replaced":
                        continue
                    self.decided.setdefault(self._last.pop(pump.ident), entry.time_ms)

    def _confirmed(self, pump: SimulatedPump) -> str | None:
        """The pump already cleared its pending order (the nurse confirmed it between two
        scans): the running programme still names the order."""
        return next(
            (
                r.programme.order_id
                for r in pump.firmware.running_programmes()
                if r.programme.order_id and r.programme.order_id not in self.prefilled
            ),
            None,
        )

    async def run(self) -> None:
        while True:
            self.scan()
            await asyncio.sleep(_PROBE_S)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _machine_cpu() -> tuple[int, int] | None:
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    return fields[3] + fields[4], sum(fields[:8])


def run_autoprogram_bench(
    config: AutoprogramBenchConfig, progress: Progress | None = None
) -> AutoprogramBenchResult:
    """Run the stack, the fleet and the EHR as the module docstring says, and measure."""
    note: Progress = progress if progress is not None else (lambda _text: None)
    return asyncio.run(_run(config, note))


async def _run(config: AutoprogramBenchConfig, note: Progress) -> AutoprogramBenchResult:
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pumpguard-bench-autoprogram-") as tmp:
        data_dir = Path(tmp) / "data"
        ehr_port = _free_port()
        nurse = NurseSettings(
            confirm_after_s=config.confirm_after_s,
            reject_probability=config.reject_probability,
            edit_probability=0.0,
            seed=config.seed,
        )
        stack_config = StackConfig(
            data_dir,
            http_port=0,
            mqtt_port=0,
            updates_port=0,
            ehr=EhrSettings(mllp_port=0, ehr_endpoint=f"mllps://127.0.0.1:{ehr_port}", nurse=nurse),
        )
        note("stack: starting (SQLite, embedded broker, EHR gateway)")
        try:
            stack = await Stack.start(stack_config)
        except StackError as exc:
            raise AutoprogramBenchError(f"the stack did not start: {exc}") from None
        try:
            return await _with_stack(stack, config, Path(tmp), ehr_port, nurse, note, load_start)
        finally:
            await stack.stop()


async def _with_stack(
    stack: Stack,
    config: AutoprogramBenchConfig,
    tmp: Path,
    ehr_port: int,
    nurse: NurseSettings,
    note: Progress,
    load_start: tuple[float, float, float],
) -> AutoprogramBenchResult:
    gateway = stack.ehr
    assert gateway is not None
    ehr_dir = tmp / "ehr"
    issued = await asyncio.to_thread(
        stack.ca.issue, CertKind.EHR, "ehr-bench", sans=("localhost", "127.0.0.1")
    )
    issued.write(ehr_dir)
    beds = _beds(config.pumps)
    spec = {
        "server": f"mllps://localhost:{gateway.port}",
        "cert_dir": str(ehr_dir),
        "listen_port": ehr_port,
        "idle": [_bed_dict(b) for b in beds if not b.busy],
        "busy": [_bed_dict(b) for b in beds if b.busy],
        "orders": config.orders,
        "rate_per_s": config.rate_per_s,
        "seed": config.seed,
        "settle_timeout_s": config.settle_timeout_s,
    }
    ehr = await _EhrProcess.start(spec, tmp / "ehr.log")
    try:
        return await _with_ehr(stack, config, beds, ehr, nurse, note, load_start)
    finally:
        await ehr.kill()


async def _with_ehr(
    stack: Stack,
    config: AutoprogramBenchConfig,
    beds: tuple[WardBed, ...],
    ehr: _EhrProcess,
    nurse: NurseSettings,
    note: Progress,
    load_start: tuple[float, float, float],
) -> AutoprogramBenchResult:
    gateway = stack.ehr
    assert gateway is not None
    note(f"fleet: putting {len(beds)} pumps in service")
    library = load_library(EXAMPLE_LIBRARY)
    pumps: list[SimulatedPump] = []
    clock = SystemClock()
    for bed in beds:
        directory = await asyncio.to_thread(
            stack.provision_device, bed.pump, "lvp", location=bed.care_area
        )
        gateway.associate(bed.pump, bed.mrn)
        pumps.append(
            SimulatedPump(
                bed.pump,
                PumpKind.LVP,
                mqtt_connector(
                    stack.local_address,
                    stack.mqtt_port,
                    directory,
                    PeerIdentity(CertKind.PUMP, bed.pump),
                    events=stack.events,
                ),
                clock=clock,
                events=stack.events,
                library=library,
                care_area=bed.care_area,
                status_every_s=config.status_interval_s,
                workload=bedside_nurse(nurse, ward_workload(bed) if bed.busy else None),
            )
        )
    tasks = [asyncio.ensure_future(p.run()) for p in pumps]
    probe = _PrefillProbe(pumps)
    probe_task = asyncio.ensure_future(probe.run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not all(p.link.connected for p in pumps) and loop.time() < deadline:
            await asyncio.sleep(0.2)
        connected = sum(1 for p in pumps if p.link.connected)
        if connected < len(pumps):
            raise AutoprogramBenchError(f"only {connected}/{len(pumps)} pumps connected in 60 s")
        await asyncio.sleep(2.0)  # every pump's first status reaches the gateway
        note(
            f"ehr: sending {config.orders} orders at {config.rate_per_s:g}/s to "
            f"{stack.local_address}:{gateway.port}"
        )
        cpu0, machine0, wall0 = time.process_time(), _machine_cpu(), loop.time()
        ehr_cpu0 = ehr.cpu_s()
        done = await ehr.run(config.settle_timeout_s + 600, note)
        cpu1, machine1, wall1 = time.process_time(), _machine_cpu(), loop.time()
        ehr_cpu1 = ehr.cpu_s()
        probe.scan()
    finally:
        probe_task.cancel()
        for pump in pumps:
            await pump.stop()
        await asyncio.gather(*tasks, probe_task, return_exceptions=True)
    trail = await asyncio.to_thread(_server_trail, stack)
    ehr_cpu = None if ehr_cpu0 is None or ehr_cpu1 is None else ehr_cpu1 - ehr_cpu0
    security = Counter(c for c in _read_events(stack.data_dir) if not c.startswith("pki.cert"))
    return _result(
        config,
        done,
        probe,
        phase=(wall1 - wall0, cpu1 - cpu0, ehr_cpu),
        machine=(machine0, machine1),
        load_start=load_start,
        security=dict(security),
        trail=trail,
    )


@dataclass(frozen=True, slots=True)
class _Trail:
    """When the server recorded an order as received and as checked (its trail steps)."""

    received_ms: int | None
    checked_ms: int | None


def _server_trail(stack: Stack) -> dict[str, _Trail]:
    """Each order's ``received`` and ``checked`` steps, by placer order number."""
    trail: dict[str, _Trail] = {}
    with stack.store.transaction() as session:
        service = OrderService(session, stack.store.ctx)
        after = 0
        while batch := service.list_orders(after_id=after, limit=500):
            for row in batch:
                steps = {s.step: s.at_ms for s in service.get(row.id).trail}
                trail.setdefault(
                    row.placer_order_number,
                    _Trail(steps.get(OrderStep.RECEIVED), steps.get(OrderStep.CHECKED)),
                )
            after = batch[-1].id
    return trail


def _stages(spans: dict[str, list[float]]) -> tuple[StageFigures, ...]:
    return tuple(
        StageFigures(
            name,
            definition,
            _round(percentile(spans[name], 50)),
            _round(percentile(spans[name], 99)),
            _round(max(spans[name], default=None)),
            len(spans[name]),
        )
        for name, definition in STAGES
    )


def _bed_dict(bed: WardBed) -> dict[str, object]:
    return {"pump": bed.pump, "care_area": bed.care_area, "mrn": bed.mrn, "busy": bed.busy}


def _read_events(data_dir: Path) -> list[str]:
    codes: list[str] = []
    with contextlib.suppress(OSError):
        for line in (data_dir / "security-events.jsonl").read_text().splitlines():
            with contextlib.suppress(ValueError, AttributeError):
                codes.append(str(json.loads(line).get("code")))
    return codes


class _EhrProcess:
    """The EHR child: started (listening) before the fleet, told to send when it is ready."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self._proc = proc
        self._log = log

    @classmethod
    async def start(cls, spec: dict[str, object], log: Path) -> _EhrProcess:
        with log.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "pumpguard.lab.autoprogram_bench",
                "--ehr",
                json.dumps(spec),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                limit=_MAX_LINE,
            )
        child = cls(proc, log)
        try:
            await child._read("listening", 120, None)
        except BaseException:
            await child.kill()
            raise
        return child

    def cpu_s(self) -> float | None:
        return _cpu_s(self._proc.pid)

    async def _read(self, key: str, timeout_s: float, note: Progress | None) -> Any:
        assert self._proc.stdout is not None
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    line = await self._proc.stdout.readline()
                    if not line:
                        break
                    with contextlib.suppress(ValueError):
                        message = json.loads(line)
                        if isinstance(message, dict) and "progress" in message and note:
                            note(f"ehr: {message['progress']}")
                        if isinstance(message, dict) and key in message:
                            return message[key]
        except TimeoutError:
            raise AutoprogramBenchError(f"the EHR process sent no {key!r} in time") from None
        tail = "\n".join(self._log.read_text(errors="replace").splitlines()[-15:])
        raise AutoprogramBenchError(f"the EHR process ended before {key!r}:\n{tail}")

    async def run(self, timeout_s: float, note: Progress) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(b"go\n")
        await self._proc.stdin.drain()
        return dict(await self._read("done", timeout_s, note))

    async def kill(self) -> None:
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _result(
    config: AutoprogramBenchConfig,
    done: dict[str, Any],
    probe: _PrefillProbe,
    *,
    phase: tuple[float, float, float | None],
    machine: tuple[tuple[int, int] | None, tuple[int, int] | None],
    load_start: tuple[float, float, float],
    security: dict[str, int],
    trail: dict[str, _Trail],
) -> AutoprogramBenchResult:
    records: list[dict[str, Any]] = list(done["orders"])
    summary: dict[str, Any] = dict(done["summary"])
    prefill, rrg, ack, back = [], [], [], []
    spans: dict[str, list[float]] = {name: [] for name, _ in STAGES}
    wrong: Counter[str] = Counter()
    examples: list[str] = []
    for record in records:
        sent = float(record["sent_at_ms"])
        at = probe.prefilled.get(str(record["placer"]))
        if at is not None:
            prefill.append(at - sent)
            steps = trail.get(str(record["placer"]))
            if steps is not None and steps.received_ms is not None and steps.checked_ms is not None:
                spans["ehr_to_received"].append(steps.received_ms - sent)
                spans["received_to_checked"].append(float(steps.checked_ms - steps.received_ms))
                spans["checked_to_prefill"].append(float(at - steps.checked_ms))
        if record["rrg_at_ms"] is not None:
            rrg.append(float(record["rrg_at_ms"]) - sent)
            decided = probe.decided.get(str(record["placer"]))
            if decided is not None and record["rrg"] == "AA":
                back.append(float(record["rrg_at_ms"]) - decided)
        if record["ack_at_ms"] is not None:
            ack.append(float(record["ack_at_ms"]) - sent)
        if not record["matches"]:
            wrong[f"{record['kind']} {record['orc1']}: {record['outcome']}"] += 1
            if len(examples) < 10:
                examples.append(
                    f"{record['kind']} {record['orc1']} to {record['pump']}: expected "
                    f"{record['expected']}, got {record['outcome']} ({record['reason']})"
                )
    wall_s, cpu_s, ehr_cpu = phase
    before, after = machine
    idle = None
    if before is not None and after is not None and after[1] > before[1]:
        idle = 100 * (after[0] - before[0]) / (after[1] - before[1])
    return AutoprogramBenchResult(
        orders=len(records),
        pumps=config.pumps,
        rate_per_s=config.rate_per_s,
        prefill_p50_ms=_round(percentile(prefill, 50)),
        prefill_p99_ms=_round(percentile(prefill, 99)),
        rrg_p50_ms=_round(percentile(rrg, 50)),
        rrg_p99_ms=_round(percentile(rrg, 99)),
        ack_p50_ms=_round(percentile(ack, 50)),
        ack_p99_ms=_round(percentile(ack, 99)),
        confirm_to_rrg_p50_ms=_round(percentile(back, 50)),
        confirm_to_rrg_p99_ms=_round(percentile(back, 99)),
        prefill_measured=len(prefill),
        prefill_unattributed=probe.unattributed,
        rrg_received=len(rrg),
        accepted=int(summary["accepted"]),
        refused=dict(summary["refused"]),
        as_expected=int(summary["as_expected"]),
        not_as_expected=int(summary["not_as_expected"]),
        not_as_expected_by_kind=dict(sorted(wrong.items())),
        not_as_expected_examples=examples,
        by_kind=dict(summary["by_kind"]),
        no_ack=int(summary["no_ack"]),
        rrg_missing=int(summary["rrg_missing"]),
        order_phase_s=round(wall_s, 1),
        stack_and_fleet_cpu_percent=round(100 * cpu_s / max(wall_s, 1e-9), 1),
        ehr_cpu_percent=None if ehr_cpu is None else round(100 * ehr_cpu / max(wall_s, 1e-9), 1),
        machine_idle_percent=_round(idle),
        load_average_start=load_start,
        load_average_end=os.getloadavg(),
        confirm_after_s=config.confirm_after_s,
        reject_probability=config.reject_probability,
        status_interval_s=config.status_interval_s,
        security_events=security,
        stages=_stages(spans),
    )


# -- the EHR child process ---------------------------------------------------------------------


def _bed(raw: dict[str, Any]) -> WardBed:
    return WardBed(str(raw["pump"]), str(raw["care_area"]), str(raw["mrn"]), bool(raw["busy"]))


async def _serve_ehr(spec: dict[str, Any]) -> dict[str, Any]:
    idle = [_bed(b) for b in spec["idle"]]
    busy = [_bed(b) for b in spec["busy"]]
    library = load_library(EXAMPLE_LIBRARY)
    factory = OrderFactory(library, [*idle, *busy], seed=int(spec["seed"]))
    ehr = SimulatedEhr(
        Endpoint.parse(str(spec["server"])),
        Path(str(spec["cert_dir"])),
        listen_port=int(spec["listen_port"]),
    )
    mix = default_mix()
    sent = [0]

    def on_sent(_record: object) -> None:
        sent[0] += 1
        if sent[0] % 50 == 0:
            print(json.dumps({"progress": f"{sent[0]} orders sent"}), flush=True)

    async with ehr:
        await asyncio.to_thread(_warm_up_hl7)
        freeze_startup_heap()  # as the server does: no full GC pause in the EHR's stamps
        print(json.dumps({"listening": ehr.listen_port}), flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        run = await run_orders(
            ehr,
            factory,
            int(spec["orders"]),
            rate_per_s=float(spec["rate_per_s"]),
            mix=mix,
            idle_beds=idle,
            busy_beds=busy,
            settle_timeout_s=float(spec["settle_timeout_s"]),
            on_sent=on_sent,
            seed=int(spec["seed"]),
        )
    return {"summary": run.summary(), "orders": [r.as_dict() for r in run.records]}


def _warm_up_hl7() -> None:
    """hl7apy loads its v2.6 structures on first use (over a second): before the first order,
    not inside its latency."""
    parse_ack(build_accept_ack(AckCode.CA, "WARM-UP", control_id="WARM-UP", now=datetime.now(UTC)))


def serve_main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--ehr":
        print("usage: python -m pumpguard.lab.autoprogram_bench --ehr SPEC", file=sys.stderr)
        return 2
    done = asyncio.run(_serve_ehr(json.loads(argv[1])))
    print(json.dumps({"done": done}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(serve_main(sys.argv[1:]))
