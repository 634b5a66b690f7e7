"""``pumpguard bench``: measured performance figures.

``physiology`` runs our vectorised simulator and simglucose's ``T1DPatient`` side by side in
one run, on the same cohort and the same inputs, and reports patient-days per second for both,
their ratio and the largest glucose difference between them. How it stays honest:

* the same patients (the 30 virtual patients, cycled for larger cohorts) and the same inputs
  (seeded random meals, each patient's basal plus a carb-ratio bolus), handed to both sides;
* only simulation is timed on both sides: building the cohort, generating inputs and starting
  simglucose's interpreter are left out; simglucose's side is timed inside its own process,
  around its stepping loop, one patient after another, as it is normally used;
* our figure is the mean time of whole-cohort runs made in ``--repeats`` sampling windows
  (each at least ``ROUND_SECONDS``), interleaved with simglucose's patients run in as many
  rounds: both sides are then measured over the same stretch of time, and both are averages,
  on a machine whose load may change (a shared machine can slow either side by half);
* for cohorts larger than ``--simglucose-sample`` patients simglucose runs on the first ones
  only (serial cost per patient-day does not depend on cohort size), and the output says that
  its figure is extrapolated; the glucose difference is taken over the patients both ran.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import typer
from rich.table import Table

from pumpguard.cli.common import err, fail, out
from pumpguard.cli.reference import (
    ENV_VAR,
    SimglucoseResult,
    SimglucoseUnavailable,
    run_simglucose,
    simglucose_python,
)
from pumpguard.link.bench import LinkBench, measure_link
from pumpguard.physiology import (
    MINUTES_PER_DAY,
    Cohort,
    RandomMealScenario,
    patient_names,
    standard_therapy,
)

app = typer.Typer(no_args_is_help=True, help="Measure performance against references.")

FloatArray = npt.NDArray[np.float64]

ROUND_SECONDS = 1.0
"""Shortest sampling window of our simulator between two rounds of simglucose."""


@dataclass(frozen=True)
class BenchRow:
    """Figures for one cohort size."""

    patients: int
    days: int
    ours_seconds: float
    ours_patient_days_per_s: float
    simglucose_patients: int
    simglucose_seconds: float | None
    simglucose_patient_days_per_s: float | None
    simglucose_extrapolated: bool
    speedup: float | None
    max_abs_diff_mgdl: float | None


def cohort_inputs(patients: int, days: int, seed: int) -> tuple[list[str], FloatArray, FloatArray]:
    """The benchmark cohort: the 30 patients cycled, seeded random meals, basal + bolus."""
    all_names = patient_names()
    names = [all_names[i % len(all_names)] for i in range(patients)]
    carbs = RandomMealScenario(seed).carbs(patients, days * MINUTES_PER_DAY)
    insulin = standard_therapy(names, carbs)
    return names, carbs, insulin


def _timed_run(cohort: Cohort, carbs: FloatArray, insulin: FloatArray) -> tuple[float, FloatArray]:
    """Wall seconds of one ``Cohort.run`` from the initial state, and the glucose it gave."""
    cohort.reset()
    start = time.perf_counter()
    bg = cohort.run(carbs, insulin)
    return time.perf_counter() - start, bg


def _row(
    patients: int,
    days: int,
    ours_s: float,
    bg: FloatArray,
    sg: SimglucoseResult | None,
) -> BenchRow:
    pd = patients * days
    if sg is None:
        return BenchRow(patients, days, ours_s, pd / ours_s, 0, None, None, False, None, None)
    n = sg.bg.shape[0]
    sg_s = float(sg.seconds.sum())
    sg_rate = n * days / sg_s
    ours_rate = pd / ours_s
    diff = float(np.max(np.abs(bg[:n] - sg.bg)))
    return BenchRow(
        patients, days, ours_s, ours_rate, n, sg_s, sg_rate, n < patients, ours_rate / sg_rate, diff
    )


def _figure_table(title: str, report: dict[str, Any], keys: tuple[str, ...]) -> Table:
    """A bench report's figures as a two-column table (``-`` where the run had none)."""
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in keys:
        value = report[key]
        table.add_row(key, "-" if value is None else f"{value:,}")
    return table


@app.command()
def physiology(
    patients: Annotated[int, typer.Option("--patients", min=1, help="Cohort size.")] = 30,
    days: Annotated[int, typer.Option("--days", min=1, help="Simulated days.")] = 1,
    scale: Annotated[
        str,
        typer.Option(
            "--scale",
            help="Extra cohort sizes to report scaling for (comma-separated; '' for none).",
        ),
    ] = "1000,10000",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random meals.")] = 1,
    repeats: Annotated[
        int,
        typer.Option(
            "--repeats",
            min=1,
            help=(
                "Sampling windows of our simulator, interleaved with as many rounds of "
                "simglucose; each window repeats whole runs for at least 1 s."
            ),
        ),
    ] = 5,
    simglucose_sample: Annotated[
        int,
        typer.Option(
            "--simglucose-sample",
            min=1,
            help="Most patients simglucose runs; larger cohorts are extrapolated from these.",
        ),
    ] = 30,
    simglucose_python_path: Annotated[
        str | None,
        typer.Option(
            "--simglucose-python", help=f"Python with simglucose installed (else ${ENV_VAR})."
        ),
    ] = None,
    ours_only: Annotated[
        bool, typer.Option("--ours-only", help="Skip simglucose; report our figures alone.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Patient-days per second of our simulator and of simglucose, on the same inputs."""
    try:
        sizes = sorted({int(s) for s in scale.split(",") if s.strip()} - {patients})
    except ValueError:
        raise fail(f"--scale must be comma-separated whole numbers, got {scale!r}", 2) from None
    if any(s < 1 for s in sizes):
        raise fail("--scale sizes must be at least 1", 2)
    python: str | None = None
    if not ours_only:
        try:
            python = simglucose_python_path or simglucose_python()
        except SimglucoseUnavailable as exc:
            raise fail(f"{exc}\n(or pass --ours-only to measure our simulator alone)") from None

    names, carbs, insulin = cohort_inputs(patients, days, seed)
    cohort = Cohort(names)
    _timed_run(cohort, carbs[:, :60], insulin[:, :60])  # warm-up, not counted
    n = 0 if python is None else min(patients, simglucose_sample)
    # Our runs are interleaved with simglucose's (split into as many rounds), so both sides are
    # measured under the same machine conditions over the same stretch of time.
    rounds = list(np.array_split(np.arange(n), min(repeats, n))) if n else []
    err.print(
        f"ours: {patients} patients x {days} day(s), {repeats} sampling window(s)"
        + (
            f"; simglucose: {n} patients with {python}, in {len(rounds)} rounds "
            f"(about {8 * n * days} s at ~8 s per patient-day)"
            if n
            else ""
        ),
        highlight=False,
    )
    ours_runs: list[float] = []
    bg = np.empty(0)
    parts: list[SimglucoseResult] = []
    for i in range(repeats):
        # A sampling window: whole runs until it lasts at least ROUND_SECONDS, so that our
        # figure, like simglucose's, averages over the machine's changing load.
        window = 0.0
        while window < ROUND_SECONDS or not ours_runs:
            seconds, bg = _timed_run(cohort, carbs, insulin)
            ours_runs.append(seconds)
            window += seconds
        if python is not None and i < len(rounds):
            chunk = rounds[i]
            try:
                parts.append(
                    run_simglucose(python, [names[j] for j in chunk], carbs[chunk], insulin[chunk])
                )
            except SimglucoseUnavailable as exc:
                raise fail(str(exc)) from None
    sg: SimglucoseResult | None = None
    if parts:
        sg = SimglucoseResult(
            np.concatenate([p.bg for p in parts]),
            np.concatenate([p.seconds for p in parts]),
            parts[0].version,
            parts[0].python,
        )
    main = _row(patients, days, statistics.fmean(ours_runs), bg, sg)
    rows = [main]
    for size in sizes:
        err.print(f"ours: {size} patients x {days} day(s), 1 run", highlight=False)
        s_names, s_carbs, s_insulin = cohort_inputs(size, days, seed)
        s_seconds, s_bg = _timed_run(Cohort(s_names), s_carbs, s_insulin)
        sub = None
        if sg is not None:
            k = min(size, sg.bg.shape[0])
            sub = SimglucoseResult(sg.bg[:k], sg.seconds[:k], sg.version, sg.python)
        rows.append(_row(size, days, s_seconds, s_bg, sub))

    report: dict[str, Any] = {
        "ours_patient_days_per_s": main.ours_patient_days_per_s,
        "simglucose_patient_days_per_s": main.simglucose_patient_days_per_s,
        "speedup": main.speedup,
        "max_abs_diff_mgdl": main.max_abs_diff_mgdl,
        "patients": patients,
        "days": days,
        "seed": seed,
        "ours_seconds_mean": main.ours_seconds,
        "ours_seconds_min": min(ours_runs),
        "ours_seconds_median": statistics.median(ours_runs),
        "ours_runs": len(ours_runs),
        "ours_sampling_windows": repeats,
        "simglucose_seconds": main.simglucose_seconds,
        "simglucose_patients_run": main.simglucose_patients,
        "simglucose_extrapolated": main.simglucose_extrapolated,
        "simglucose_version": None if sg is None else sg.version,
        "simglucose_python": None if sg is None else sg.python,
        "timing": (
            "wall time of simulation loops only, both sides; simglucose serial in its own "
            "process; our runs in windows interleaved with simglucose's rounds, mean kept"
        ),
        "scaling": [asdict(r) for r in rows[1:]],
    }
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    _print(rows, sg)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _print(rows: list[BenchRow], sg: SimglucoseResult | None) -> None:
    table = Table(
        title="physiology: patient-days per second (pd/s); sg = simglucose T1DPatient",
        caption="* simglucose extrapolated from the patients it ran",
    )
    for column in ("patients", "days", "ours s", "ours pd/s", "sg s", "sg pd/s", "speedup"):
        table.add_column(column, justify="right")
    table.add_column("max |dBG|", justify="right")
    for r in rows:
        mark = "*" if r.simglucose_extrapolated else ""
        table.add_row(
            str(r.patients),
            str(r.days),
            f"{r.ours_seconds:.3f}",
            f"{r.ours_patient_days_per_s:,.1f}",
            _fmt(r.simglucose_seconds, ".1f") + mark,
            _fmt(r.simglucose_patient_days_per_s, ".4f") + mark,
            _fmt(r.speedup, ",.0f") + mark,
            _fmt(r.max_abs_diff_mgdl, ".2g") + ("" if r.max_abs_diff_mgdl is None else " mg/dL"),
        )
    out.print(table)
    if sg is None:
        out.print("simglucose skipped (--ours-only).")
        return
    out.print(
        f"simglucose {sg.version} ran with {sg.python}, one patient at a time; only the "
        "stepping loops are timed on both sides (wall clock); ours (first row) is the mean of "
        "runs made between simglucose's rounds; larger cohorts are one run each.",
        highlight=False,
    )
    if any(r.simglucose_extrapolated for r in rows):
        out.print(
            f"* simglucose ran on the first {sg.bg.shape[0]} patients only; its patient-days "
            "per second there is extrapolated to the whole cohort (its cost per patient-day "
            "does not depend on cohort size), and the glucose difference is over those "
            "patients.",
            highlight=False,
        )


_LINK_TARGETS = {
    "overhead_bytes_max": 16,
    "battery_cost_percent_max": 5.0,
    "flood_kept_percent_min": 90.0,
}


@app.command()
def link(
    hours: Annotated[
        int, typer.Option("--hours", min=1, max=24 * 30, help="Hours of normal use.")
    ] = 24,
    flood_rate: Annotated[
        int,
        typer.Option(
            "--flood-rate", min=1, max=2000, help="Adversary frames per second in the flood hour."
        ),
    ] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the medium and the keys.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Insulin link: frame overhead, pairing cost, battery life legacy vs secure, under a flood."""
    err.print(
        f"link: {hours} h of normal use and 1 h under a {flood_rate}/s wake-up flood, per profile "
        "(virtual time)",
        highlight=False,
    )
    bench = measure_link(hours=hours, flood_rate_per_s=flood_rate, seed=seed)
    report = _link_report(bench)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title="insulin link: legacy vs secure (pump side)")
    for column in (
        "profile",
        "link mA normal",
        "battery days",
        "link mA flood",
        "days flood",
        "kept",
    ):
        table.add_column(column, justify="right")
    for f in (bench.legacy, bench.secure):
        table.add_row(
            str(f.profile),
            f"{f.link_ma_normal:.4f}",
            f"{f.battery_days_normal:.2f}",
            f"{f.link_ma_flood:.4f}",
            f"{f.battery_days_flood:.2f}",
            f"{f.flood_kept_percent:.1f} %",
        )
    out.print(table)
    out.print(
        f"overhead {bench.overhead_bytes} bytes/frame (target <= 16); secure battery cost "
        f"{bench.battery_cost_percent:.4f} % vs legacy (target <= 5 %; the radio alone "
        f"{bench.radio_cost_percent:+.2f} %); pairing "
        f"{bench.pairing_mj_pump:.3f} mJ at the pump, session {bench.session_mj_pump:.4f} mJ; "
        f"targets met: {report['targets']['met']}",
        highlight=False,
    )


def _link_report(bench: LinkBench) -> dict[str, Any]:
    met = (
        bench.overhead_bytes <= _LINK_TARGETS["overhead_bytes_max"]
        and bench.battery_cost_percent <= _LINK_TARGETS["battery_cost_percent_max"]
        and bench.secure.flood_kept_percent >= _LINK_TARGETS["flood_kept_percent_min"]
    )
    profiles = {
        f.profile.value: {**asdict(f), "profile": f.profile.value}
        for f in (bench.legacy, bench.secure)
    }
    return {
        "overhead_bytes": bench.overhead_bytes,
        "overhead_by_message": bench.overhead_by_message,
        "pairing_mj_pump": bench.pairing_mj_pump,
        "pairing_mj_controller": bench.pairing_mj_controller,
        "session_mj_pump": bench.session_mj_pump,
        "battery_days_legacy": bench.legacy.battery_days_normal,
        "battery_days_secure": bench.secure.battery_days_normal,
        "battery_cost_percent": bench.battery_cost_percent,
        "radio_cost_percent": bench.radio_cost_percent,
        "battery_days_flood_legacy": bench.legacy.battery_days_flood,
        "battery_days_flood_secure": bench.secure.battery_days_flood,
        "flood_kept_percent_legacy": bench.legacy.flood_kept_percent,
        "flood_kept_percent_secure": bench.secure.flood_kept_percent,
        "flood_rate_per_s": bench.flood_rate_per_s,
        "hours_normal": bench.hours_normal,
        "device_class": bench.device_class,
        "battery_mah": bench.battery_mah,
        "pump_draw_ma": bench.pump_draw_ma,
        "profiles": profiles,
        "targets": {**_LINK_TARGETS, "met": met},
    }


@app.command()
def rollout(
    pumps: Annotated[
        int, typer.Option("--pumps", min=1, max=1_000_000, help="Pumps in the fleet.")
    ] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fleet simulation.")] = 1,
    canary_share: Annotated[
        float, typer.Option("--canary-share", help="Share of the fleet in the canary wave.")
    ] = 0.05,
    share_infusing: Annotated[
        float, typer.Option("--share-infusing", help="Share of pumps infusing at any time.")
    ] = 0.40,
    share_offline: Annotated[
        float, typer.Option("--share-offline", help="Share of pumps offline at any time.")
    ] = 0.10,
    verify_sample: Annotated[
        int,
        typer.Option(
            "--verify-sample",
            min=1,
            help="Pumps verified with the real TUF client; larger fleets are extrapolated.",
        ),
    ] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Drug-library roll-out: time until 50/95/99 % of online pumps run it, signing and
    verification cost (real TUF), fleet in virtual time."""
    from rich.progress import Progress

    from pumpguard.data import EXAMPLE_LIBRARY
    from pumpguard.lab.rollout import FleetModel, RolloutBench, bench_rollout
    from pumpguard.updates import RolloutPlan, RolloutPlanError

    try:
        plan = RolloutPlan((canary_share,))
    except RolloutPlanError as exc:
        raise fail(f"--canary-share: {exc}", 2) from None
    try:
        model = FleetModel(share_infusing=share_infusing, share_offline=share_offline)
    except ValueError as exc:
        raise fail(f"--share-infusing/--share-offline: {exc}", 2) from None
    err.print(
        f"rollout: {pumps} pumps, canary {canary_share:g}; signing and verifying with the real "
        f"TUF repository and client ({min(verify_sample, pumps)} pumps), then the fleet in "
        "virtual time",
        highlight=False,
    )
    with Progress(console=err, transient=True, disable=pumps < 1000) as progress:
        verifying = progress.add_task("verifying", total=min(verify_sample, pumps))
        applying = progress.add_task("pumps on the new library", total=pumps)
        bench: RolloutBench = bench_rollout(
            pumps,
            library=EXAMPLE_LIBRARY.read_bytes(),
            seed=seed,
            plan=plan,
            model=model,
            verify_sample=verify_sample,
            on_verified=lambda done, _total: progress.update(verifying, completed=done),
            on_applied=lambda done, _total: progress.update(applying, completed=done),
        )
    report = bench.report()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title=f"drug-library roll-out to {pumps} pumps (virtual time)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("t50_s", "t95_s", "t99_s", "t95_all_pumps_s"):
        value = report[key]
        table.add_row(key, "not reached" if value is None else f"{value:,.0f} s")
    table.add_row(
        "online / infusing at publication",
        f"{bench.fleet.online_at_publish} / {bench.fleet.infusing_at_publish}",
    )
    table.add_row("signing (2 of 3 pharmacists)", f"{bench.cost.signing_wall_s:.3f} s")
    extrapolated = report["verification_extrapolated_from"]
    table.add_row(
        "verification, whole fleet",
        f"{bench.cost.fleet_verification_wall_s(pumps):.1f} s"
        + ("" if extrapolated is None else f" (extrapolated from {extrapolated})"),
    )
    out.print(table)
    out.print(
        f"{report['t_definition']}. Target t95 <= {report['target_t95_s']} s: "
        f"{'met' if report['target_met'] else 'missed'}. Apply rule: {report['apply_rule']}.",
        highlight=False,
    )


@app.command()
def server(
    pumps: Annotated[
        int, typer.Option("--pumps", min=1, max=20_000, help="Simulated pumps, one TLS each.")
    ] = 500,
    duration: Annotated[
        float, typer.Option("--duration", min=1, help="Seconds of steady state, after the ramp.")
    ] = 60.0,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            help=(
                "A PostgreSQL server URL: a database pumpguard_bench_<random> is created on "
                "it for the run and dropped after. Default: SQLite in a temporary directory."
            ),
        ),
    ] = None,
    ramp_rate: Annotated[
        float, typer.Option("--ramp-rate", help="Pumps starting to connect per second.")
    ] = 50.0,
    status_interval: Annotated[
        float, typer.Option("--status-interval", help="Seconds between a pump's statuses.")
    ] = 10.0,
    event_interval: Annotated[
        float, typer.Option("--event-interval", help="Mean seconds between a pump's events.")
    ] = 30.0,
    drain_timeout: Annotated[
        float, typer.Option("--drain-timeout", help="Longest wait for the pumps' outboxes.")
    ] = 60.0,
    cert_cache: Annotated[
        str | None,
        typer.Option(
            "--cert-cache",
            help="Where pump certificates are issued once and reused "
            "(default ~/.cache/pumpguard/bench-server).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the message schedule.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """The stack and N simulated pumps over real mutual-TLS MQTT: connected pumps, stored
    records per second, ingest latency, lost and duplicated messages."""
    from pathlib import Path

    from pumpguard.lab.server_bench import (
        ServerBenchConfig,
        ServerBenchError,
        run_server_bench,
    )

    try:
        config = ServerBenchConfig(
            pumps=pumps,
            duration_s=duration,
            database_url=database,
            status_interval_s=status_interval,
            event_interval_s=event_interval,
            ramp_per_s=ramp_rate,
            drain_timeout_s=drain_timeout,
            cache_dir=None if cert_cache is None else Path(cert_cache),
            seed=seed,
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    try:
        result = run_server_bench(config, lambda text: err.print(text, highlight=False))
    except ServerBenchError as exc:
        raise fail(str(exc)) from None
    report = result.report()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = _figure_table(
        f"pump server: {pumps} pumps on {result.database}, mutual-TLS MQTT",
        report,
        (
            "connected",
            "connected_min",
            "ramp_s",
            "connect_p50_ms",
            "connect_p99_ms",
            "offered_per_s",
            "events_per_s",
            "ingest_p50_ms",
            "ingest_p99_ms",
            "lost_events",
            "duplicate_events",
            "resent",
            "server_deduplicated",
            "reconnections",
            "stack_cpu_percent_steady",
            "stack_loop_cpu_percent_steady",
            "fleet_cpu_percent_steady",
            "machine_idle_percent",
        ),
    )
    out.print(table)
    load = ", ".join(f"{x:.2f}" for x in result.load_average_start)
    out.print(
        f"sustained: {'yes' if result.sustained else 'no'} ({report['sustained_rule']}); "
        f"load average at start {load}. Not measured: {report['not_measured']}.",
        highlight=False,
    )


@app.command()
def autoprogram(
    orders: Annotated[int, typer.Option("--orders", help="PIV orders the EHR sends.")] = 200,
    pumps: Annotated[
        int, typer.Option("--pumps", help="Simulated pumps over mutual-TLS MQTT (at least 4).")
    ] = 24,
    rate: Annotated[float, typer.Option("--rate", help="Orders per second.")] = 5.0,
    status_interval: Annotated[
        float, typer.Option("--status-interval", help="Seconds between a pump's statuses.")
    ] = 10.0,
    confirm_after: Annotated[
        float,
        typer.Option("--confirm-after", help="Seconds the bedside nurse takes to confirm."),
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the order mix.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """EHR auto-programming: a simulated EHR sends PIV orders over MLLP/TLS to the stack and
    its pump fleet; p50/p99 from order to pump pre-fill and to RRG^O16 (target p99 < 250 ms)."""
    from pumpguard.lab.autoprogram_bench import (
        AutoprogramBenchConfig,
        AutoprogramBenchError,
        run_autoprogram_bench,
    )

    try:
        config = AutoprogramBenchConfig(
            orders=orders,
            pumps=pumps,
            rate_per_s=rate,
            status_interval_s=status_interval,
            confirm_after_s=confirm_after,
            seed=seed,
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    try:
        result = run_autoprogram_bench(config, lambda text: err.print(text, highlight=False))
    except AutoprogramBenchError as exc:
        raise fail(str(exc)) from None
    report = result.report()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = _figure_table(
        f"auto-programming: {result.orders} orders, {pumps} pumps",
        report,
        (
            "prefill_p50_ms",
            "prefill_p99_ms",
            "rrg_p50_ms",
            "rrg_p99_ms",
            "ack_p50_ms",
            "ack_p99_ms",
            "confirm_to_rrg_p50_ms",
            "confirm_to_rrg_p99_ms",
            "accepted",
            "as_expected",
            "not_as_expected",
            "machine_idle_percent",
        ),
    )
    for reason, count in result.refused.items():
        table.add_row(f"refused {reason}", str(count))
    for stage in result.stages:
        shown = ("-" if v is None else f"{v:,}" for v in (stage.p50_ms, stage.p99_ms))
        table.add_row(f"stage {stage.name} p50 / p99 ms", " / ".join(shown))
    out.print(table)
    load = ", ".join(f"{x:.2f}" for x in result.load_average_start)
    out.print(
        f"target prefill p99 < {report['target_prefill_p99_ms']:g} ms: "
        f"{'met' if result.target_met else 'missed'}; load average at start {load}. "
        f"Not measured: {report['not_measured']}.",
        highlight=False,
    )


@app.command()
def faults(
    pumps: Annotated[
        int, typer.Option("--pumps", min=3, max=2_000, help="Simulated pumps, one TLS each.")
    ] = 50,
    seconds: Annotated[
        float,
        typer.Option("--seconds", min=5, help="Seconds under load; one equal slot per fault."),
    ] = 60.0,
    database: Annotated[
        str, typer.Option("--database", help="sqlite (default) or postgresql.")
    ] = "sqlite",
    postgres_url: Annotated[
        str | None,
        typer.Option(
            "--postgres-url",
            envvar="PUMPGUARD_DATABASE_URL",
            help="PostgreSQL server for --database postgresql: the bench creates a database "
            "of its own there and drops it after (default: $PUMPGUARD_DATABASE_URL).",
        ),
    ] = None,
    fault_seconds: Annotated[
        float | None,
        typer.Option("--fault-seconds", help="Seconds each fault is held (default 40% of a slot)."),
    ] = None,
    skew_hours: Annotated[
        float, typer.Option("--skew-hours", help="Clock skew of one pump; negative: behind.")
    ] = 3.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fleet's events.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Kill and restart the broker, the database and the server, partition pumps and skew a
    pump's clock under a fleet load: events lost and duplicated in the store, infusions
    interrupted (all must be 0), recovery time per fault. Exit 1 when any is not."""
    from pumpguard.lab.fault_bench import FaultBenchConfig, FaultBenchError, run_fault_bench

    try:
        config = FaultBenchConfig(
            pumps=pumps,
            duration_s=seconds,
            database=database,
            postgres_url=postgres_url if database == "postgresql" else None,
            fault_s=fault_seconds,
            skew_hours=skew_hours,
            seed=seed,
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    try:
        result = run_fault_bench(config, lambda text: err.print(text, highlight=False))
    except FaultBenchError as exc:
        raise fail(str(exc)) from None
    report = result.report()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        table = Table(title=f"faults: {pumps} pumps on {result.database}, {seconds:g} s")
        for column in ("fault", "held s", "recovery s", "fewest connected", "what was done"):
            table.add_column(column, justify="left" if column[0] in "fw" else "right")
        for window in result.faults:
            recovery = "-" if window.recovery_s is None else f"{window.recovery_s:.2f}"
            table.add_row(
                window.fault.value,
                f"{window.held_s:.1f}",
                recovery,
                str(window.connected_min),
                window.detail,
            )
        out.print(table)
        configuration = ", ".join(f"{k} {v}" for k, v in result.configuration().items())
        out.print(f"configuration: {configuration}", highlight=False)
        out.print(
            f"events_lost {result.store.events_lost}, events_duplicated "
            f"{result.store.events_duplicated}, infusions_interrupted "
            f"{result.infusions_interrupted} ({result.infusing} infusing); "
            f"{result.store.stored:,} of {result.store.generated:,} messages stored; "
            f"wall time {result.wall_time_s:.1f} s",
            highlight=False,
        )
    if not result.all_zero:
        raise fail("a fault lost, duplicated or interrupted something, or did not recover")
