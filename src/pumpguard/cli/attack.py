"""``pumpguard attack``: list the attack catalogue and run it against either profile."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from pumpguard.cli.common import fail, out
from pumpguard.lab.attacks import (
    CATALOGUE,
    DEFAULT_PATIENT,
    AttackResult,
    CatalogueAttack,
    System,
    UnknownAttackError,
    get_attack,
)
from pumpguard.link import LinkProfile
from pumpguard.physiology import UnknownPatientError, get_patient

app = typer.Typer(
    no_args_is_help=True,
    help="Run the attack catalogue (insulin and hospital systems) against either profile.",
)

SystemOption = Annotated[
    str | None, typer.Option("--system", help="Only this system: insulin or hospital.")
]


def _system(value: str | None) -> System | None:
    if value is None:
        return None
    try:
        return System(value.strip().lower())
    except ValueError:
        raise fail(f"--system must be insulin or hospital, got {value!r}", 2) from None


def _entries(system: System | None) -> list[type[CatalogueAttack]]:
    return [a for a in CATALOGUE if system is None or a.system is system]


@app.command("list")
def list_attacks(
    system: SystemOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every attack in the catalogue, with its system, reference and the control that should
    stop it."""
    entries = _entries(_system(system))
    if as_json:
        rows = [
            {
                "name": a.name,
                "system": str(a.system),
                "reference": ", ".join(a.references),
                "description": a.description,
                "goal": a.goal,
                "control": a.control,
                "availability": a.availability,
                "passive": a.passive,
            }
            for a in entries
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("name", "system", "reference", "goal", "secure control")
    for a in entries:
        table.add_row(a.name, str(a.system), ", ".join(a.references), a.goal, a.control)
    out.print(table)


@app.command("run")
def run_attacks(
    name: Annotated[str | None, typer.Argument(help="The attack (see `attack list`).")] = None,
    run_all: Annotated[bool, typer.Option("--all", help="Run every attack.")] = False,
    profile: Annotated[str, typer.Option("--profile", help="legacy or secure.")] = "",
    system: SystemOption = None,
    patient: Annotated[
        str, typer.Option("--patient", help="Virtual insulin patient (insulin attacks).")
    ] = DEFAULT_PATIENT,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the scenario.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Run one attack (NAME) or every attack (--all, optionally of one --system) and measure
    it: succeeded, blocked by, logged, and harm (insulin: 24 h of the virtual patient against
    the attack-free twin; hospital: what the infusion pump delivers against the prescription
    in the hour after the attack)."""
    if (name is None) == (not run_all):
        raise fail("give exactly one of NAME or --all", 2)
    try:
        link_profile = LinkProfile(profile.strip().lower())
    except ValueError:
        raise fail(f"--profile must be legacy or secure, got {profile!r}", 2) from None
    chosen = _system(system)
    try:
        get_patient(patient)
    except UnknownPatientError as exc:
        raise fail(str(exc), 2) from None
    try:
        names = [a.name for a in _entries(chosen)] if run_all else [get_attack(name or "").name]
    except UnknownAttackError as exc:
        raise fail(str(exc), 2) from None
    if not run_all and chosen is not None and get_attack(names[0]).system is not chosen:
        raise fail(f"{names[0]} attacks the {get_attack(names[0]).system} system, not {chosen}", 2)
    results: list[AttackResult] = []
    if run_all and not as_json:
        with Progress(console=out, transient=True) as progress:
            task = progress.add_task(f"{len(names)} attacks, {link_profile}", total=len(names))
            for attack_name in names:
                progress.update(task, description=f"{attack_name} ({link_profile})")
                results.append(get_attack(attack_name).run(link_profile, patient, seed))
                progress.advance(task)
    else:
        results = [get_attack(n).run(link_profile, patient, seed) for n in names]
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in results], indent=2))
        return
    _table(results)


def _table(results: list[AttackResult]) -> None:
    table = Table("attack", "system", "profile", "succeeded", "blocked by", "logged", "harm")
    for r in results:
        succeeded = "yes" if r.succeeded else "no"
        if r.availability:
            succeeded += " (availability)"
        table.add_row(
            r.name,
            r.system,
            r.profile,
            succeeded,
            r.blocked_by or "-",
            "yes" if r.logged else "no",
            r.harm.summary(),
        )
    out.print(table)
    for r in results:
        out.print(f"[bold]{r.name}[/] ({r.reference}): {r.evidence}", highlight=False)
