"""Root of the ``pumpguard`` command tree."""

from __future__ import annotations

import os
import sys

import typer

from pumpguard import __version__
from pumpguard.cli import admin as admin_cli
from pumpguard.cli import alerts, bench, library, pki, risk, sim
from pumpguard.cli import attack as attack_cli
from pumpguard.cli import audit as audit_cli
from pumpguard.cli.demo import demo

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(library.app, name="library")
app.add_typer(sim.app, name="sim")
app.add_typer(bench.app, name="bench")
app.add_typer(risk.app, name="risk")
app.add_typer(pki.app, name="pki")
app.add_typer(alerts.app, name="alerts")
app.add_typer(admin_cli.app, name="admin")
app.add_typer(audit_cli.app, name="audit")
app.add_typer(attack_cli.app, name="attack")
app.command()(demo)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pumpguard {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True),
) -> None:
    """pumpguard: a secure infusion-pump ecosystem you can run, attack and measure."""


def main() -> None:
    """Entry point: a bug must still end in one readable line and a distinct exit code."""
    try:
        app()
    except Exception as exc:
        if os.environ.get("PUMPGUARD_DEBUG"):
            raise
        typer.echo(
            f"pumpguard: internal error: {type(exc).__name__}: {exc} "
            "(set PUMPGUARD_DEBUG=1 for the traceback, and please report it)",
            err=True,
        )
        sys.exit(70)
