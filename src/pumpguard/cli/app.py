"""Root of the ``pumpguard`` command tree.

Sub-commands are imported only when they are invoked: ``pumpguard pki list`` should not pay for
SciPy, the web stack and the HL7 library. The table below is the one place a command is
registered; ``--help`` imports them all to show their summaries.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from pumpguard import __version__

_GROUPS: dict[str, str] = {
    "library": "pumpguard.cli.library",
    "sim": "pumpguard.cli.sim",
    "bench": "pumpguard.cli.bench",
    "risk": "pumpguard.cli.risk",
    "pki": "pumpguard.cli.pki",
    "alerts": "pumpguard.cli.alerts",
    "admin": "pumpguard.cli.admin",
    "audit": "pumpguard.cli.audit",
    "attack": "pumpguard.cli.attack",
    "device": "pumpguard.cli.device",
    "lab": "pumpguard.cli.lab",
    "updates": "pumpguard.cli.updates",
    "ehr": "pumpguard.cli.ehr",
}
"""Sub-command groups: name -> module holding a ``typer.Typer`` called ``app``."""

_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("pumpguard.cli.demo", "demo"),
    "up": ("pumpguard.cli.up", "up"),
}
"""Top-level commands: name -> (module, function)."""


class _LazyGroup(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        return sorted({*super().list_commands(ctx), *_GROUPS, *_COMMANDS})

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in _GROUPS:
            wrapper = typer.Typer()
            wrapper.add_typer(importlib.import_module(_GROUPS[cmd_name]).app, name=cmd_name)
            return typer.main.get_command(wrapper).get_command(ctx, cmd_name)  # type: ignore[attr-defined]
        if cmd_name in _COMMANDS:
            module, function = _COMMANDS[cmd_name]
            wrapper = typer.Typer()
            wrapper.command(cmd_name)(getattr(importlib.import_module(module), function))
            wrapper.callback()(lambda: None)
            return typer.main.get_command(wrapper).get_command(ctx, cmd_name)  # type: ignore[attr-defined]
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    cls=_LazyGroup, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
)


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
