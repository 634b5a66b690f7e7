"""What every ``pumpguard`` command shares: consoles and readable, specific input errors."""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_DATA_DIR",
    "DataDirOption",
    "data_dir",
    "err",
    "fail",
    "out",
    "parse_decimal",
]

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` to stderr and return the exit to raise (``raise fail(...)``).

    Exit codes: 1 for bad input files or refused operations, 2 for bad command-line usage.
    """
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def parse_decimal(option: str, text: str | None) -> Decimal | None:
    """Read a number given on the command line exactly (no float), naming the option if not."""
    if text is None:
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise fail(f"{option} must be a number, got {text!r}", 2) from None
    if not value.is_finite():
        raise fail(f"{option} must be a finite number, got {text!r}", 2)
    return value


DATA_DIR_ENV = "PUMPGUARD_DATA_DIR"
DEFAULT_DATA_DIR = Path("pumpguard-data")

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="System data directory (default: $PUMPGUARD_DATA_DIR, else ./pumpguard-data).",
    ),
]
"""The ``--data-dir`` option every stateful command takes; resolve it with ``data_dir``."""


def data_dir(given: Path | None) -> Path:
    """Where stateful commands keep their data: ``--data-dir``, else the environment, else ./.

    Every command that touches state (PKI, database, audit log, broker) resolves its directory
    here, so that one ``--data-dir`` (or one ``PUMPGUARD_DATA_DIR``) always means one system.
    """
    if given is not None:
        return given
    from_env = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(from_env) if from_env else DEFAULT_DATA_DIR
