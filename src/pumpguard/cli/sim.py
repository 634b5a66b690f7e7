"""``pumpguard sim``: run virtual patients.

``replay`` is the fidelity interface: per-minute inputs in, per-minute glucose out, for one of
the 30 virtual patients, starting from its steady state. The same CSV handed to simglucose's
``T1DPatient`` (one ``step(Action(CHO=carbs_g, insulin=insulin_u))`` per row, reading
``observation.Gsub`` after each) gives the same glucose within 0.5 mg/dL at every minute.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Annotated, TextIO

import numpy as np
import numpy.typing as npt
import typer

from pumpguard.cli.common import err, fail, out
from pumpguard.physiology import Cohort, UnknownPatientError, get_patient, summarise

app = typer.Typer(no_args_is_help=True, help="Run virtual patients (UVA/Padova model).")

INPUT_COLUMNS = ("minute", "carbs_g", "insulin_u")
"""Columns of a replay input file, in any order."""


class InputFileError(ValueError):
    """A replay input file that cannot be used; the message names the line and column."""


def read_inputs(
    handle: TextIO, source: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Parse ``minute,carbs_g,insulin_u`` rows; return (carbs, insulin) per minute.

    Minutes must count up from 0 by one; amounts must be finite and not negative. Errors name
    the file, the line (the header is line 1) and the column.
    """
    reader = csv.reader(handle)
    header: list[str] | None = None
    for row in reader:
        if any(cell.strip() for cell in row):
            header = [cell.strip() for cell in row]
            break
    if header is None:
        raise InputFileError(f"{source}: empty file; expected a header {','.join(INPUT_COLUMNS)}")
    missing = [c for c in INPUT_COLUMNS if c not in header]
    unknown = [c for c in header if c not in INPUT_COLUMNS]
    if missing or unknown or len(header) != len(set(header)):
        raise InputFileError(
            f"{source}, line {reader.line_num}: header must name the columns "
            f"{','.join(INPUT_COLUMNS)} once each; got {','.join(header)!r}"
            + (f" (missing {', '.join(missing)})" if missing else "")
            + (f" (unknown {', '.join(unknown)})" if unknown else "")
        )
    at = {name: header.index(name) for name in INPUT_COLUMNS}
    carbs: list[float] = []
    insulin: list[float] = []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise InputFileError(
                f"{source}, line {line}: {len(row)} fields, expected {len(header)} "
                f"({','.join(header)})"
            )
        minute_text = row[at["minute"]].strip()
        try:
            minute_value = float(minute_text)
        except ValueError:
            minute_value = math.nan
        if not minute_value.is_integer():
            raise InputFileError(
                f"{source}, line {line}, column minute: {minute_text!r} is not a whole number"
            )
        expected = len(carbs)
        if int(minute_value) != expected:
            raise InputFileError(
                f"{source}, line {line}, column minute: got {int(minute_value)}, expected "
                f"{expected} (minutes must count up from 0 by one, one row per minute)"
            )
        amounts = []
        for name in ("carbs_g", "insulin_u"):
            text = row[at[name]].strip()
            try:
                value = float(text)
            except ValueError:
                raise InputFileError(
                    f"{source}, line {line} (minute {expected}), column {name}: "
                    f"{text!r} is not a number"
                ) from None
            if not math.isfinite(value):
                raise InputFileError(
                    f"{source}, line {line} (minute {expected}), column {name}: "
                    f"{text!r} is not a finite number"
                )
            if value < 0:
                what = "grams of carbohydrate" if name == "carbs_g" else "units of insulin"
                raise InputFileError(
                    f"{source}, line {line} (minute {expected}), column {name}: {text} is "
                    f"negative; {what} given in a minute cannot be below 0"
                )
            amounts.append(value)
        carbs.append(amounts[0])
        insulin.append(amounts[1])
    if not carbs:
        raise InputFileError(f"{source}: no input rows after the header")
    return np.array(carbs), np.array(insulin)


def write_trace(handle: TextIO, bg: npt.NDArray[np.float64]) -> None:
    """``minute,bg_mgdl`` rows; values in shortest round-trip form, so nothing is lost."""
    handle.write("minute,bg_mgdl\n")
    handle.writelines(f"{m},{float(v)!r}\n" for m, v in enumerate(bg))


@app.command()
def replay(
    patient: Annotated[
        str, typer.Option("--patient", help="Virtual patient, e.g. adult#001 (30 available).")
    ],
    inputs: Annotated[
        Path,
        typer.Option(
            "--inputs", help="CSV with minute,carbs_g,insulin_u: grams and units per minute."
        ),
    ],
    trace: Annotated[
        Path, typer.Option("--trace", help="Where to write minute,bg_mgdl ('-' for stdout).")
    ],
) -> None:
    """Replay per-minute inputs on one virtual patient and write its glucose every minute.

    Row m of the inputs is what the patient gets in minute m (from its steady state at minute
    0): carbs_g grams handed over (eaten at up to 5 g/min, the rest queued, as simglucose does)
    and insulin_u units delivered. Row m of the trace is the glucose after that minute
    (subcutaneous glucose, simglucose's BG).
    """
    try:
        chosen = get_patient(patient)
    except UnknownPatientError as exc:
        raise fail(str(exc), 2) from None
    try:
        with inputs.open(newline="", encoding="utf-8-sig") as handle:
            carbs, insulin = read_inputs(handle, str(inputs))
    except InputFileError as exc:
        raise fail(str(exc)) from None
    except UnicodeDecodeError:
        raise fail(f"{inputs}: not a UTF-8 text file") from None
    except OSError as exc:
        raise fail(f"cannot read {inputs}: {exc.strerror or exc}") from None
    cohort = Cohort([chosen])
    bg = cohort.run(carbs[None, :], insulin[None, :])[0]
    to_stdout = str(trace) == "-"
    try:
        if to_stdout:
            write_trace(sys.stdout, bg)
        else:
            with trace.open("w", newline="", encoding="utf-8") as handle:
                write_trace(handle, bg)
    except OSError as exc:
        raise fail(f"cannot write {trace}: {exc.strerror or exc}") from None
    summary = summarise(bg)[0]
    console = err if to_stdout else out
    console.print(
        f"{chosen.name}: {bg.size} minutes replayed; glucose {bg.min():.1f}-{bg.max():.1f} "
        f"mg/dL, mean {summary.mean_mgdl:.1f}, time in range {summary.tir_70_180_pct:.1f} %"
        + ("" if to_stdout else f"; trace written to {trace}"),
        highlight=False,
    )


@app.command("insulin")
def insulin_loop(
    days: Annotated[int, typer.Option("--days", help="Days to simulate (at least 1).")],
    controller: Annotated[
        str, typer.Option("--controller", help="none, basal-bolus or aid.")
    ] = "aid",
    patient: Annotated[
        str | None, typer.Option("--patient", help="One virtual patient, e.g. adult#001.")
    ] = None,
    patients: Annotated[
        str | None, typer.Option("--patients", help="'all' for the 30 virtual patients.")
    ] = None,
    meals: Annotated[
        str | None,
        typer.Option("--meals", help='Daily meals "HH:MM=grams,...", e.g. "07:00=45,12:00=70".'),
    ] = None,
    random_meals: Annotated[
        bool, typer.Option("--random-meals", help="Seeded random meals (needs --seed).")
    ] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the random meals.")] = None,
    trace: Annotated[
        Path | None, typer.Option("--trace", help="Write per-minute glucose, CGM, insulin CSV.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    rescue_carbs: Annotated[
        bool,
        typer.Option(
            "--rescue-carbs",
            help="Scenario option: 15 g of carbs when the CGM shows below 70 (rule of 15).",
        ),
    ] = False,
) -> None:
    """Run the insulin loop (CGM, controller, pump) on virtual patients and print metrics."""
    import json

    from rich.progress import Progress
    from rich.table import Table

    from pumpguard.lab.insulin_loop import (
        ControllerKind,
        LoopConfig,
        MealSyntaxError,
        parse_meals,
        run_loop,
    )
    from pumpguard.physiology import RandomMealScenario, Scenario, patient_names

    if days < 1:
        raise fail(f"--days must be at least 1, got {days}", 2)
    try:
        kind = ControllerKind(controller)
    except ValueError:
        raise fail(
            f"--controller must be one of none, basal-bolus, aid; got {controller!r}", 2
        ) from None
    if (patient is None) == (patients is None):
        raise fail("give exactly one of --patient NAME or --patients all", 2)
    if patients is not None and patients != "all":
        raise fail(f"--patients takes 'all', got {patients!r} (use --patient for one)", 2)
    if patient is not None:
        try:
            names: tuple[str, ...] = (get_patient(patient).name,)
        except UnknownPatientError as exc:
            raise fail(str(exc), 2) from None
    else:
        names = patient_names()
    scenario: Scenario
    if (meals is None) == (not random_meals):
        raise fail("give exactly one of --meals or --random-meals", 2)
    if meals is not None:
        if seed is not None:
            raise fail("--seed goes with --random-meals, not --meals", 2)
        try:
            scenario = parse_meals(meals)
        except MealSyntaxError as exc:
            raise fail(f"--meals: {exc}", 2) from None
    else:
        if seed is None:
            raise fail("--random-meals needs --seed", 2)
        scenario = RandomMealScenario(seed)
    config = LoopConfig(names, days, scenario, kind, cgm_seed=seed or 0, rescue_carbs=rescue_carbs)
    minutes = days * 1440
    if not as_json and len(names) * days >= 7:
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task(f"{kind} loop, {len(names)} patients", total=minutes)
            result = run_loop(config, lambda done, _: bar.update(task, completed=done))
    else:
        result = run_loop(config)
    if trace is not None:
        try:
            with trace.open("w", newline="", encoding="utf-8") as handle:
                result.write_trace(handle)
        except OSError as exc:
            raise fail(f"cannot write {trace}: {exc.strerror or exc}") from None
    cohort = result.cohort
    if as_json:
        doc = {
            "controller": str(kind),
            "days": days,
            "rescue_carbs": rescue_carbs,
            "rescues": result.rescues,
            "cohort": cohort,
            "patients": {n: m.as_dict() for n, m in zip(result.names, result.metrics, strict=True)},
            "alerts": result.alerts,
        }
        print(json.dumps(doc, indent=2))
        return
    table = Table(title=f"{kind} controller, {days} day(s)")
    for column in ("patient", "mean", "TIR 70-180 %", "TBR<70 %", "TBR<54 %", "TAR>250 %"):
        table.add_column(column, justify="left" if column == "patient" else "right")
    for name, m in zip(result.names, result.metrics, strict=True):
        table.add_row(
            name,
            f"{m.mean_mgdl:.0f}",
            f"{m.tir_70_180_pct:.1f}",
            f"{m.tbr_70_pct:.2f}",
            f"{m.tbr_54_pct:.2f}",
            f"{m.tar_250_pct:.1f}",
        )
    table.add_row(
        "cohort",
        f"{cohort['mean_mgdl']:.0f}",
        f"{cohort['tir_70_180_pct']:.1f}",
        f"{cohort['tbr_70_pct']:.2f}",
        f"{cohort['tbr_54_pct']:.2f}",
        f"{cohort['tar_250_pct']:.1f}",
        style="bold",
    )
    out.print(table)
    if rescue_carbs:
        out.print(f"rescue carbs (scenario option): {result.rescues} treatments of 15 g")
    for alert in result.alerts:
        err.print(f"[yellow]alert:[/] {alert}", highlight=False)
