"""``pumpguard attack``: list the attack catalogue and run it against either link profile."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from pumpguard.cli.common import fail, out
from pumpguard.lab.attacks import CATALOGUE, AttackResult, UnknownAttackError, get_attack
from pumpguard.link import LinkProfile
from pumpguard.physiology import UnknownPatientError, get_patient

app = typer.Typer(no_args_is_help=True, help="Run the attack catalogue against the insulin system.")

DEFAULT_PATIENT = "adult#001"


@app.command("list")
def list_attacks(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every attack in the catalogue, with its reference and the control that should stop it."""
    if as_json:
        rows = [
            {
                "name": a.name,
                "system": a.system,
                "reference": ", ".join(a.references),
                "description": a.description,
                "goal": a.goal,
                "control": a.control,
                "availability": a.availability,
                "passive": a.passive,
            }
            for a in CATALOGUE
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("name", "reference", "goal", "secure control")
    for a in CATALOGUE:
        table.add_row(a.name, ", ".join(a.references), a.goal, a.control)
    out.print(table)


@app.command("run")
def run_attacks(
    name: Annotated[str | None, typer.Argument(help="The attack (see `attack list`).")] = None,
    run_all: Annotated[bool, typer.Option("--all", help="Run every attack.")] = False,
    profile: Annotated[str, typer.Option("--profile", help="legacy or secure.")] = "",
    patient: Annotated[str, typer.Option("--patient", help="Virtual patient.")] = DEFAULT_PATIENT,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the scenario.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Run one attack (NAME) or every attack (--all) and measure it against the attack-free
    twin run: succeeded, blocked by, logged, and harm in the 24 h after the attack."""
    if (name is None) == (not run_all):
        raise fail("give exactly one of NAME or --all", 2)
    try:
        link_profile = LinkProfile(profile.strip().lower())
    except ValueError:
        raise fail(f"--profile must be legacy or secure, got {profile!r}", 2) from None
    try:
        get_patient(patient)
    except UnknownPatientError as exc:
        raise fail(str(exc), 2) from None
    try:
        names = [a.name for a in CATALOGUE] if run_all else [get_attack(name or "").name]
    except UnknownAttackError as exc:
        raise fail(str(exc), 2) from None
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
    table = Table(
        "attack",
        "profile",
        "succeeded",
        "blocked by",
        "logged",
        "extra U",
        "min BG",
        "+min <54",
    )
    for r in results:
        succeeded = "yes" if r.succeeded else "no"
        if r.availability:
            succeeded += " (availability)"
        table.add_row(
            r.name,
            r.profile,
            succeeded,
            r.blocked_by or "-",
            "yes" if r.logged else "no",
            f"{r.harm.extra_insulin_u:+.2f}",
            f"{r.harm.min_bg_mgdl:.0f}",
            str(r.harm.minutes_below_54),
        )
    out.print(table)
    for r in results:
        out.print(f"[bold]{r.name}[/] ({r.reference}): {r.evidence}", highlight=False)
