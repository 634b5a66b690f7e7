"""``pumpguard admin``: accounts of the pump server, starting with the first administrator.

There are no default credentials: ``admin create`` is how the first account comes to exist.
Its generated password and TOTP enrolment URI are printed once and stored nowhere in clear.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import pyotp
import typer
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from pumpguard.cli.common import DataDirOption, err, fail, out
from pumpguard.cli.common import data_dir as resolve_data_dir
from pumpguard.clock import SystemClock
from pumpguard.security_events import JsonLinesEventFile
from pumpguard.server import (
    AUDIT_PASSPHRASE_ENV,
    AlreadyExists,
    AuditKeyError,
    InvalidInput,
    Role,
    ServerContext,
    Store,
    UserService,
    database_url,
    open_audit_key,
)
from pumpguard.server.datadir import SECURITY_EVENTS_FILE

__all__ = ["PassphraseFileOption", "app", "open_store"]

app = typer.Typer(
    no_args_is_help=True,
    help="Pump server accounts: create and list users; a TOTP code for a demo account.",
)

PassphraseFileOption = Annotated[
    Path | None,
    typer.Option(
        "--audit-passphrase-file",
        help=f"File holding the audit key passphrase (default: ${AUDIT_PASSPHRASE_ENV}, "
        "else the stored one).",
    ),
]


def open_store(directory: Path, passphrase_file: Path | None, *, create: bool) -> Store:
    """The data directory's database (migrated to the newest schema) and audit key."""
    try:
        key, stored = open_audit_key(directory, passphrase_file, create=create)
    except AuditKeyError as exc:
        raise fail(str(exc)) from None
    if stored is not None:
        err.print(
            f"[bold yellow]warning:[/] generated an audit key passphrase and stored it in "
            f"{stored} (mode 0600) next to the encrypted key. That only suits a lab: in "
            f"production give it through {AUDIT_PASSPHRASE_ENV} or a file kept elsewhere.",
            highlight=False,
        )
    ctx = ServerContext(
        clock=SystemClock(),
        events=JsonLinesEventFile(directory / SECURITY_EVENTS_FILE),
        audit_key=key,
    )
    try:
        return Store.open(database_url(directory), ctx)
    except SQLAlchemyError as exc:
        raise fail(f"cannot open the database: {type(exc).__name__}: {exc.args[0]}") from None


def _role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        raise fail(
            f"--role must be one of {', '.join(r.value for r in Role)}, got {text!r}", 2
        ) from None


@app.command()
def create(
    username: Annotated[str, typer.Option("--username", help="Login name (a-z, 0-9, . _ -).")],
    role: Annotated[str, typer.Option("--role", help="Role of the new account.")] = "admin",
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Create an account (creating the database if needed); print its password and TOTP once."""
    chosen = _role(role)
    directory = resolve_data_dir(data_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"cannot create the data directory {directory}: {exc.strerror}") from None
    store = open_store(directory, passphrase_file, create=True)
    try:
        with store.transaction() as session:
            created = UserService(session, store.ctx).create_user(username, chosen, "cli:admin")
            store.ctx.audit(session).checkpoint()
    except AlreadyExists as exc:
        raise fail(f"{exc}; choose another username") from None
    except InvalidInput as exc:
        raise fail(str(exc), 2) from None
    finally:
        store.close()
    out.print(f"created {created.role} account {created.username!r}", highlight=False)
    out.print(f"  password:  {created.password}", highlight=False, markup=False)
    out.print(f"  TOTP URI:  {created.totp_uri}", highlight=False, markup=False, soft_wrap=True)
    out.print(
        "Shown once and stored nowhere in clear: enrol the URI in an authenticator app now "
        "and keep the password in a password manager.",
        highlight=False,
    )


@app.command("list")
def list_(data_dir: DataDirOption = None, passphrase_file: PassphraseFileOption = None) -> None:
    """List accounts (never their secrets)."""
    directory = resolve_data_dir(data_dir)
    store = open_store(directory, passphrase_file, create=False)
    try:
        with store.transaction() as session:
            users = UserService(session, store.ctx).list_users()
    finally:
        store.close()
    table = Table("username", "role", "active")
    for user in users:
        table.add_row(user.username, str(user.role), "yes" if user.active else "no")
    out.print(table)


@app.command()
def totp(
    uri: Annotated[
        str | None,
        typer.Option("--uri", help="The otpauth:// URI printed at enrolment (default: stdin)."),
    ] = None,
) -> None:
    """Print the current TOTP code of an enrolled URI: an authenticator app's job, for trying
    `up --demo` on a machine without a phone. The URI is the second factor's secret; keep it
    like one."""
    text = (sys.stdin.readline() if uri is None else uri).strip()
    try:
        parsed = pyotp.parse_uri(text)
    except ValueError as exc:
        raise fail(f"not a TOTP URI ({exc}); expected otpauth://totp/...", 2) from None
    if not isinstance(parsed, pyotp.TOTP):
        raise fail("not a TOTP URI; expected otpauth://totp/...", 2)
    left = parsed.interval - int(time.time()) % parsed.interval
    out.print(parsed.now(), highlight=False)
    err.print(f"valid for {left} more seconds", highlight=False)
