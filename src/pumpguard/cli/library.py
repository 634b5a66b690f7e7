"""``pumpguard library``: validate a drug library file and check doses against it."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pumpguard.cli.common import err, out, parse_decimal
from pumpguard.clinical import (
    DersResult,
    DoseKind,
    DosingError,
    DrugLibrary,
    LibraryError,
    UnitError,
    check_dose,
    dose_to_flow,
    library_json_schema,
    load_library,
    parse_dose_unit,
)

app = typer.Typer(
    no_args_is_help=True, help="Validate drug libraries and check doses against them."
)


def open_library(path: Path) -> DrugLibrary:
    try:
        return load_library(path)
    except LibraryError as exc:
        err.print(f"[bold red]invalid drug library[/] {exc.source}", highlight=False)
        for issue in exc.issues:
            err.print(f"  - {issue}", highlight=False, markup=False)
        raise typer.Exit(1) from None


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Drug library JSON file.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing when valid.")] = False,
) -> None:
    """Exit 0 when FILE is a valid drug library; otherwise name every problem and exit 1."""
    library = open_library(file)
    if quiet:
        return
    entries = sum(1 for _ in library.entries())
    drugs = len({e.name.casefold() for _, e in library.entries()})
    out.print(
        f"[green]valid[/] {library.name} ({library.library_id} v{library.version}): "
        f"{len(library.care_areas)} care areas, {entries} entries, {drugs} drugs",
        highlight=False,
    )


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="Drug library JSON file.")],
    care_area: Annotated[str, typer.Option("--care-area", help="Care area, e.g. ICU.")],
    drug: Annotated[str, typer.Option("--drug", help="Drug name or code.")],
    dose: Annotated[str, typer.Option("--dose", help="Dose value.")],
    unit: Annotated[str, typer.Option("--unit", help="Dose unit, e.g. units/kg/h.")],
    weight: Annotated[str | None, typer.Option("--weight", help="Patient weight in kg.")] = None,
    kind: Annotated[DoseKind, typer.Option("--kind", help="Which rule to check.")] = (
        DoseKind.CONTINUOUS
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """Run the dose error reduction check for one dose and print its verdict.

    Exits 0 when the check ran, whatever the verdict; 1 for an invalid library; 2 for bad input.
    """
    value = parse_decimal("--dose", dose)
    weight_kg = parse_decimal("--weight", weight)
    assert value is not None
    library = open_library(file)
    result = check_dose(library, care_area, drug, value, unit, weight_kg=weight_kg, kind=kind)
    report = _report(result, care_area, drug, value, unit, weight_kg, kind)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    colour = "green" if report["verdict"] == "ok" else "yellow" if result.verdict.is_soft else "red"
    out.print(f"[bold {colour}]{report['verdict']}[/]  {result.message}", highlight=False)
    if report["err_code"] is not None:
        out.print(f"IHE PCD ERR-5 code: {report['err_code']}", highlight=False)
    if report["flow_ml_h"] is not None:
        out.print(f"flow rate: {report['flow_ml_h']} mL/h", highlight=False)
    if result.candidates:
        out.print("candidates: " + "; ".join(result.candidates), highlight=False)


def _report(
    result: DersResult,
    care_area: str,
    drug: str,
    dose: Decimal,
    unit: str,
    weight_kg: Decimal | None,
    kind: DoseKind,
) -> dict[str, Any]:
    flow: str | None = None
    entry = result.entry
    if entry is not None and kind is DoseKind.CONTINUOUS:
        try:
            exact = dose_to_flow(dose, parse_dose_unit(unit), entry.to_concentration(), weight_kg)
            flow = f"{exact.quantize(Decimal('0.01')):f}"
        except (DosingError, UnitError):
            flow = None
    return {
        "verdict": result.verdict.value,
        "err_code": result.err_code,
        "message": result.message,
        "care_area": care_area,
        "drug": drug,
        "entry": None if entry is None else entry.label(),
        "dose": f"{dose:f}",
        "unit": unit,
        "weight_kg": None if weight_kg is None else f"{weight_kg:f}",
        "kind": kind.value,
        "flow_ml_h": flow,
        "findings": [
            {
                "field": f.field,
                "verdict": f.verdict.value,
                "message": f.message,
                "limit": None if f.limit is None else f"{f.limit:f}",
            }
            for f in result.findings
        ],
        "candidates": list(result.candidates),
    }


@app.command()
def schema() -> None:
    """Print the drug library JSON Schema (the one published in docs/)."""
    typer.echo(json.dumps(library_json_schema(), indent=2))


@app.command()
def show(file: Annotated[Path, typer.Argument(help="Drug library JSON file.")]) -> None:
    """List a library's care areas and entries with their continuous limits."""
    library = open_library(file)
    table = Table(title=f"{library.name} v{library.version}")
    for column in ("care area", "drug", "concentration", "unit", "soft", "hard"):
        table.add_column(column)
    for area, entry in library.entries():
        lim = entry.continuous
        table.add_row(
            area.name,
            entry.name,
            "-" if entry.concentration is None else str(entry.concentration),
            entry.dose_unit,
            f"{_text(lim.soft_min)}-{_text(lim.soft_max)}",
            f"{_text(lim.hard_min)}-{_text(lim.hard_max)}",
        )
    out.print(table)


def _text(value: Decimal | None) -> str:
    return "" if value is None else f"{value.normalize():f}"
