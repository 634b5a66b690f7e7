"""``pumpguard lab``: composed simulations measured end to end (``lab run``, ``lab detect``)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pumpguard.cli.common import fail, out
from pumpguard.lab.detection import DetectConfig, DetectError, DetectReport, run_detection
from pumpguard.lab.evaluation import LabConfig, LabError, LabResults, parse_profiles, run_lab
from pumpguard.lab.evaluation_report import write_report
from pumpguard.link import LinkProfile

app = typer.Typer(no_args_is_help=True, help="Composed simulations, measured end to end.")


@app.callback()
def _lab() -> None:
    """Composed simulations, measured end to end."""


@app.command("run")
def run_command(
    profile: Annotated[str, typer.Option("--profile", help="legacy, secure or both.")] = "both",
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory for report.html and results.json.")
    ] = Path("lab-report"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of every trial and of the fleet.")] = 1,
    attack: Annotated[
        list[str] | None,
        typer.Option("--attack", help="Only this catalogue entry (repeat for more)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Processes (default: CPUs, at most 2).")
    ] = None,
    fleet: Annotated[
        bool,
        typer.Option(
            "--fleet/--no-fleet",
            help="Also run normal life (insulin cohort, hospital ward) for the fleet and "
            "detection summaries.",
        ),
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="Also print results.json to stdout (no progress).")
    ] = False,
) -> None:
    """Run the whole attack catalogue against the legacy and/or secure profile (insulin
    patients and a hospital ward in virtual time), measure what was blocked, detected and what
    it did to the patients, and write a self-contained report.html and results.json."""
    try:
        profiles = parse_profiles(profile)
    except LabError as exc:
        raise fail(f"--profile: {exc}", 2) from None
    if workers is None:
        workers = max(1, min(2, os.cpu_count() or 1))
    if not 1 <= workers <= 64:
        raise fail(f"--workers must be between 1 and 64, got {workers}", 2)
    try:
        config = LabConfig(profiles, seed, tuple(attack) if attack else None, workers, fleet)
    except LabError as exc:
        raise fail(str(exc), 2) from None
    _writable(out_dir)
    if as_json:
        results = run_lab(config)
    else:
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=out, transient=True) as progress:
            task = progress.add_task("starting", total=None)

            def advance(done: int, total: int, label: str) -> None:
                progress.update(task, completed=done, total=total, description=label)

            results = run_lab(config, advance)
    try:
        html_path, json_path = write_report(results, out_dir)
    except OSError as exc:
        raise fail(f"cannot write the report to {out_dir}: {exc.strerror or exc}", 2) from None
    if as_json:
        typer.echo(json_path.read_text(encoding="utf-8"), nl=False)
        return
    _print_run(results, html_path, json_path)


def _writable(directory: Path) -> None:
    """Fail before an expensive run if the report cannot be written there."""
    if directory.exists() and not directory.is_dir():
        raise fail(f"--out {directory} exists and is not a directory", 2)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".pumpguard-write-test-"):
            pass
    except OSError as exc:
        raise fail(f"--out {directory} is not writable: {exc.strerror or exc}", 2) from None


_STYLE = {"succeeded": "bold red", "succeeded, detected": "yellow", "blocked": "green"}


def _print_run(results: LabResults, html_path: Path, json_path: Path) -> None:
    profiles = [str(p) for p in results.config.profiles]
    table = Table("attack", "system", *(f"{p}" for p in profiles), title="attack matrix")
    for entry in results.entries:
        cells = []
        for p in profiles:
            row = results.row(entry.name, p)
            text = str(row.outcome)
            if row.result.blocked_by:
                text += f" ({row.result.blocked_by})"
            if row.detected:
                text += f", ttd {row.time_to_detect_s:.0f} s"
            cells.append(f"[{_STYLE[str(row.outcome)]}]{text}[/]")
        table.add_row(entry.name, str(entry.system), *cells)
    out.print(table)
    for s in results.summaries():
        out.print(
            f"[bold]{s.profile}[/]: {s.succeeded} of {s.attacks} succeeded, {s.blocked} blocked, "
            f"{s.detected} detected; +{s.hypo_minutes_added} min below 54 mg/dL, "
            f"{s.overdosed} hospital overdoses",
            highlight=False,
        )
    for f in results.fleet:
        overall = f.overall()
        out.print(
            f"normal life, {f.config.profile}: detection_rate {overall['detection_rate']} over "
            f"{overall['attack_instances']} instances, false_alerts_per_device_day "
            f"{overall['false_alerts_per_device_day']}",
            highlight=False,
        )
    out.print(
        f"CSF subcategories exercised: {', '.join(c.subcategory for c in results.csf) or '-'}"
    )
    out.print(f"wall time {results.wall_time_s:.1f} s", highlight=False)
    out.print(f"report: {html_path}\nresults: {json_path}", highlight=False)


@app.command()
def detect(
    days: Annotated[int, typer.Option("--days", help="Simulated days per patient.")] = 7,
    patients: Annotated[int, typer.Option("--patients", help="Virtual patients.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seed of cohort, meals and attacks.")] = 1,
    profile: Annotated[str, typer.Option("--profile", help="secure or legacy.")] = "secure",
    workers: Annotated[
        int | None, typer.Option("--workers", help="Processes (default: CPUs, at most 4).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Mix the attack catalogue into normal life of an insulin cohort and of a hospital ward,
    run both again without attacks, feed everything to the monitor, and report detection
    rate, time to detect and false alerts per patient-day and per pump-day."""
    try:
        link_profile = LinkProfile(profile.strip().lower())
    except ValueError:
        raise fail(f"--profile must be secure or legacy, got {profile!r}", 2) from None
    if not 1 <= days <= 365:
        raise fail(f"--days must be between 1 and 365, got {days}", 2)
    if not 1 <= patients <= 1000:
        raise fail(f"--patients must be between 1 and 1000, got {patients}", 2)
    if workers is None:
        workers = max(1, min(4, os.cpu_count() or 1))
    try:
        config = DetectConfig(days, patients, seed, link_profile, workers)
    except DetectError as exc:
        raise fail(str(exc), 2) from None
    if as_json:
        report = run_detection(config)
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    with Progress(console=out, transient=True) as progress:
        task = progress.add_task(f"{patients} patients x {days} days, twice", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        report = run_detection(config, advance)
    _print(report)


def _figure(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _print(report: DetectReport) -> None:
    c = report.config
    out.print(
        f"[bold]lab detect[/]: {c.patients} patients x {c.days} days, seed {c.seed}, "
        f"profile {c.profile}; wall time {report.wall_time_s:.1f} s",
        highlight=False,
    )
    out.print(
        f"detection_rate {_figure(report.detection_rate)} over {len(report.counted)} attack "
        f"instances; median_time_to_detect_s {_figure(report.median_time_to_detect_s, 1)}; "
        f"false_alerts_per_patient_day {_figure(report.false_alerts_per_patient_day, 4)}",
        highlight=False,
    )
    table = Table("attack", "instances", "detected", "median s", "rules fired")
    for s in report.summaries():
        name = f"{s.name} (undetectable by design)" if s.passive else s.name
        fired = ", ".join(f"{k} x{v}" for k, v in sorted(s.analytics.items())) or "-"
        table.add_row(
            name,
            str(s.instances),
            str(s.detected),
            _figure(s.median_time_to_detect_s, 1),
            fired,
        )
    out.print(table)
    out.print(
        f"false alerts: {report.false_alerts_attack_free} on attack-free runs, "
        f"{report.false_alerts_attacked} on attacked runs outside attack windows, over "
        f"{report.clean_patient_days:.1f} patient-days"
        + (
            " (" + ", ".join(f"{k} x{v}" for k, v in sorted(report.false_by_analytic.items())) + ")"
            if report.false_by_analytic
            else ""
        ),
        highlight=False,
    )
    ward = report.hospital
    if ward is not None:
        cw = ward.config
        out.print(
            f"hospital ward ({cw.icu} ICU + {cw.medsurg} Med-Surg pumps, {ward.ward_pump_days} "
            f"pump-days, attacks injected into the ward's time): detection_rate "
            f"{_figure(ward.detection_rate)} ({sum(o.detected for o in ward.outcomes)} of "
            f"{len(ward.outcomes)}); median_time_to_detect_s "
            f"{_figure(ward.median_time_to_detect_s, 1)}; ward_false_alerts_per_pump_day "
            f"{_figure(ward.false_alerts_per_pump_day, 4)} ({ward.false_alerts_attack_free} on the "
            f"attack-free ward, {ward.false_alerts_attacked} outside windows, over "
            f"{ward.clean_pump_days:.1f} pump-days)",
            highlight=False,
        )
        table = Table("hospital attack", "pump", "detected", "time to detect s", "rules fired")
        for o in ward.outcomes:
            table.add_row(
                o.attack.name,
                o.attack.device_id,
                "yes" if o.detected else "no",
                _figure(o.time_to_detect_s, 1),
                ", ".join(o.analytics) or "-",
            )
        out.print(table)
    overall = report.overall()
    out.print(
        f"overall: detection_rate {overall['detection_rate']} over "
        f"{overall['attack_instances']} instances; false_alerts_per_device_day "
        f"{overall['false_alerts_per_device_day']}",
        highlight=False,
    )
