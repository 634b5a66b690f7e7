"""``pumpguard audit``: check the server's tamper-evident audit log, sign its head, read it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import inspect
from sqlalchemy.exc import SQLAlchemyError

from pumpguard.cli.admin import PassphraseFileOption, open_store
from pumpguard.cli.common import DataDirOption, fail, out
from pumpguard.cli.common import data_dir as resolve_data_dir
from pumpguard.clock import SystemClock
from pumpguard.security_events import SecurityEventLog
from pumpguard.server import (
    AuditKeyError,
    ServerContext,
    Store,
    audit_public_key_path,
    database_url,
    load_checkpoint_public_key,
    verify_audit_log,
)

__all__ = ["TAMPERED_EXIT", "app"]

TAMPERED_EXIT = 3

app = typer.Typer(no_args_is_help=True, help="Audit log: verify, checkpoint, show.")


def _read_only_store(directory: Path) -> Store:
    url = database_url(directory)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        raise fail(f"no pumpguard database in {directory}")
    try:
        store = Store.open(url, ServerContext(SystemClock(), SecurityEventLog()), migrate=False)
        if not inspect(store.engine).has_table("audit_entries"):
            store.close()
            raise fail(f"the database of {directory} has no audit log (was it ever set up?)")
    except SQLAlchemyError as exc:
        raise fail(f"cannot open the database: {type(exc).__name__}: {exc.args[0]}") from None
    return store


@app.command()
def verify(
    data_dir: DataDirOption = None,
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            help="Checkpoint public key to trust (default: DATA_DIR/audit/checkpoint-key.pub.pem;"
            " better: a copy kept outside the data directory).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Recompute the hash chain and check every signed checkpoint.

    Exits 0 when intact, 3 when tampering was detected (naming the first bad entry),
    1 when the log cannot be checked.
    """
    directory = resolve_data_dir(data_dir)
    key_path = public_key or audit_public_key_path(directory)
    try:
        key = load_checkpoint_public_key(key_path)
    except AuditKeyError as exc:
        raise fail(str(exc)) from None
    store = _read_only_store(directory)
    try:
        with store.transaction() as session:
            result = verify_audit_log(session, key)
    except SQLAlchemyError as exc:
        raise fail(f"cannot read the audit log: {type(exc).__name__}: {exc.args[0]}") from None
    finally:
        store.close()
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "ok": result.ok,
                    "entries": result.entries,
                    "last_seq": result.last_seq,
                    "checkpoints": result.checkpoints,
                    "last_checkpoint_seq": result.last_checkpoint_seq,
                    "unanchored": result.unanchored,
                    "problems": [
                        {"seq": p.seq, "kind": str(p.kind), "message": p.message}
                        for p in result.problems
                    ],
                }
            )
        )
    elif result.ok:
        out.print(
            f"audit log intact: {result.entries} entries, {result.checkpoints} signed "
            f"checkpoints (last at entry {result.last_checkpoint_seq}); {result.unanchored} "
            "entries after it are chained but not yet signed",
            highlight=False,
        )
    else:
        first = result.first_problem
        assert first is not None
        out.print(
            f"[bold red]audit log TAMPERED[/]: first bad entry {first.seq} ({first.kind}): "
            f"{first.message}",
            highlight=False,
        )
        for problem in result.problems[1:]:
            out.print(f"  entry {problem.seq} ({problem.kind}): {problem.message}", highlight=False)
    if not result.ok:
        raise typer.Exit(TAMPERED_EXIT)


@app.command()
def checkpoint(
    data_dir: DataDirOption = None, passphrase_file: PassphraseFileOption = None
) -> None:
    """Sign the current head of the log now (e.g. before a backup or at shutdown)."""
    store = open_store(resolve_data_dir(data_dir), passphrase_file, create=False)
    try:
        with store.transaction() as session:
            signed = store.ctx.audit(session).checkpoint()
    finally:
        store.close()
    if signed is None:
        out.print("nothing to sign: the head of the log is already signed", highlight=False)
    else:
        out.print(f"signed checkpoint at entry {signed.seq}", highlight=False)


@app.command()
def show(
    data_dir: DataDirOption = None,
    after: Annotated[int, typer.Option("--after", min=0, help="Show entries after this one.")] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
) -> None:
    """Print audit entries in order."""
    store = _read_only_store(resolve_data_dir(data_dir))
    try:
        with store.transaction() as session:
            entries = store.ctx.audit(session).entries(after, limit)
    finally:
        store.close()
    table = Table("seq", "at (ms)", "actor", "action", "subject", "details")
    for e in entries:
        table.add_row(str(e.seq), str(e.at_ms), e.actor, e.action, e.subject, e.details)
    out.print(table)
