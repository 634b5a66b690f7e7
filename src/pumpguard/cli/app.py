"""Root of the ``pumpguard`` command tree."""

from __future__ import annotations

import typer

from pumpguard import __version__

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


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
    app()
