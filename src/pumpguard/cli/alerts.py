"""``pumpguard alerts``: the detection rules, and their export as Sigma for a hospital SIEM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pumpguard.cli.common import fail, out
from pumpguard.monitor import write_sigma_rules
from pumpguard.monitor.ruleset import DEFAULT_RULES

app = typer.Typer(no_args_is_help=True, help="Security alerts and the rules that raise them.")


@app.callback()
def _alerts() -> None:
    """Security alerts and the rules that raise them."""


@app.command()
def rules(
    as_json: Annotated[bool, typer.Option("--json", help="Print the rules as JSON.")] = False,
    sigma_dir: Annotated[
        Path | None,
        typer.Option("--sigma-dir", help="Also write one Sigma rule file per rule here."),
    ] = None,
) -> None:
    """List the detection rules (id, severity, ATT&CK technique, event codes, rationale)."""
    if sigma_dir is not None:
        if sigma_dir.exists() and not sigma_dir.is_dir():
            raise fail(f"--sigma-dir {sigma_dir} exists and is not a directory", 2)
        try:
            written = write_sigma_rules(DEFAULT_RULES, sigma_dir)
        except OSError as exc:
            raise fail(f"cannot write Sigma rules to {sigma_dir}: {exc}") from None
        out.print(f"wrote {len(written)} Sigma rules to {sigma_dir}", highlight=False)
        return
    if as_json:
        rows = [
            {
                "id": r.rule_id,
                "title": r.title,
                "severity": r.severity.name.lower(),
                "component": str(r.component),
                "technique": r.technique,
                "codes": sorted(r.codes),
                "threshold": r.threshold,
                "window_s": r.window_ms // 1000,
                "group_by": str(r.group_by),
                "rationale": r.rationale,
                "references": list(r.references),
            }
            for r in DEFAULT_RULES
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("id", "severity", "technique", "title", "when")
    for r in DEFAULT_RULES:
        when = "each event" if r.threshold == 1 else f">= {r.threshold} in {r.window_ms // 1000} s"
        table.add_row(r.rule_id, r.severity.name.lower(), r.technique or "-", r.title, when)
    out.print(table)
