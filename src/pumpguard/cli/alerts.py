"""``pumpguard alerts``: the alerts the server keeps, their life cycle, and the rules behind them.

Works on the data directory like ``pumpguard admin`` and ``audit``, so an analyst can work
alerts while ``pumpguard up`` runs or after it stopped. Acknowledging and resolving name the
acting user, who logs in with password and TOTP exactly as at the API (same checks, same
lockout, same audit entries); the change is recorded in the audit chain under that name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel
from rich.table import Table
from sqlalchemy.orm import Session

from pumpguard.cli.admin import PassphraseFileOption, open_store
from pumpguard.cli.common import DataDirOption, fail, out
from pumpguard.cli.common import data_dir as resolve_data_dir
from pumpguard.monitor import AlertState, write_sigma_rules
from pumpguard.monitor.ruleset import DEFAULT_RULES
from pumpguard.security_events import Severity
from pumpguard.server import (
    AuthenticationFailed,
    Forbidden,
    InvalidInput,
    NotFound,
    Permission,
    ServerError,
    ServerEventCode,
    Store,
    UserService,
)
from pumpguard.server.alert_store import AlertQuery, AlertStore, AlertTransitionRefused
from pumpguard.server.api.alerts import (
    IncidentDetailOut,
    alert_detail_out,
    alert_out,
    incident_out,
)

app = typer.Typer(no_args_is_help=True, help="Security alerts and the rules that raise them.")


@app.callback()
def _alerts() -> None:
    """Security alerts and the rules that raise them."""


_SEVERITIES = {s.name.lower(): s for s in Severity}
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (as the API answers).")]
UserOption = Annotated[
    str, typer.Option("--user", help="Who acts: logs in with password and TOTP (prompted).")
]


@contextmanager
def _alert_store(directory: Path, passphrase_file: Path | None) -> Iterator[tuple[Store, Session]]:
    store = open_store(directory, passphrase_file, create=False)
    try:
        with store.transaction() as session:
            yield store, session
    finally:
        store.close()


def _refused(exc: ServerError) -> typer.Exit:
    if isinstance(exc, InvalidInput | NotFound | AlertTransitionRefused):
        return fail(str(exc), 2)
    return fail(str(exc))


def _print_json(models: BaseModel | list[BaseModel]) -> None:
    if isinstance(models, list):
        typer.echo(json.dumps([m.model_dump(mode="json") for m in models], indent=2))
    else:
        typer.echo(models.model_dump_json(indent=2))


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _since(text: str | None) -> int | None:
    if text is None:
        return None
    if text.strip().isdigit():
        return int(text.strip())
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise fail(
            f"--since must be an ISO 8601 time (2026-11-21T08:00Z) or milliseconds, got {text!r}",
            2,
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return int(moment.timestamp() * 1000)


@app.command("list")
def list_(
    state: Annotated[
        str | None, typer.Option("--state", help="new, acknowledged or resolved.")
    ] = None,
    severity: Annotated[
        str | None, typer.Option("--severity", help="This severity and above.")
    ] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Rule id, e.g. PG-LINK-001.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Device id.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Seen at or after (ISO 8601 or ms).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """List alerts, newest first."""
    try:
        wanted = AlertState(state) if state is not None else None
    except ValueError:
        raise fail(
            f"--state must be one of {', '.join(s.value for s in AlertState)}, got {state!r}", 2
        ) from None
    minimum = None
    if severity is not None:
        minimum = _SEVERITIES.get(severity.strip().lower())
        if minimum is None:
            raise fail(f"--severity must be one of {', '.join(_SEVERITIES)}, got {severity!r}", 2)
    query = AlertQuery(wanted, minimum, rule, device, _since(since), limit)
    try:
        with _alert_store(resolve_data_dir(data_dir), passphrase_file) as (store, session):
            alerts = AlertStore(session, store.ctx).search(query)
    except ServerError as exc:
        raise _refused(exc) from None
    if as_json:
        _print_json([alert_out(a) for a in alerts])
        return
    table = Table("alert", "state", "severity", "rule", "device", "count", "last seen", "title")
    for a in alerts:
        table.add_row(
            a.alert_id,
            str(a.state),
            a.severity.name.lower(),
            a.analytic_id,
            a.device_id or a.peer or "-",
            str(a.count),
            _time(a.last_ms),
            a.title,
        )
    out.print(table)


@app.command()
def show(
    alert_id: Annotated[str, typer.Argument(help="e.g. ALR-000001")],
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """One alert: its life cycle and the security events behind it."""
    try:
        with _alert_store(resolve_data_dir(data_dir), passphrase_file) as (store, session):
            alert = AlertStore(session, store.ctx).get(alert_id)
    except ServerError as exc:
        raise _refused(exc) from None
    if as_json:
        _print_json(alert_detail_out(alert))
        return
    out.print(
        f"[bold]{alert.alert_id}[/] {alert.title} ({alert.analytic_id}, "
        f"{alert.severity.name.lower()}, {alert.technique or 'no technique'})",
        highlight=False,
    )
    out.print(
        f"  {alert.state}; seen {alert.count} times from {_time(alert.first_ms)} to "
        f"{_time(alert.last_ms)}; device {alert.device_id or '-'}, peer {alert.peer or '-'}; "
        f"incident {alert.incident_id}",
        highlight=False,
        markup=False,
    )
    out.print(f"  {alert.message}", highlight=False, markup=False)
    for change in alert.history:
        note = f": {change.note}" if change.note else ""
        out.print(
            f"  {_time(change.time_ms)} {change.state} by {change.actor}{note}",
            highlight=False,
            markup=False,
        )
    for event in alert.evidence:
        out.print(
            f"  evidence {_time(event.time_ms)} {event.code}: {event.message}",
            highlight=False,
            markup=False,
        )


def _change(
    alert_id: str,
    user: str,
    note: str,
    resolve: bool,
    data_dir: Path | None,
    passphrase_file: Path | None,
) -> None:
    password = typer.prompt(f"password for {user}", hide_input=True, err=True)
    code = typer.prompt("TOTP code", err=True).strip()
    try:
        with _alert_store(resolve_data_dir(data_dir), passphrase_file) as (store, session):
            users = UserService(session, store.ctx)
            token = users.login(user, password, code, peer="cli")
            me = users.authenticate(token.token)
            try:
                if Permission.ALERTS_MANAGE not in me.permissions:
                    store.ctx.emit(
                        ServerEventCode.FORBIDDEN,
                        Severity.MEDIUM,
                        f"{me.username} ({me.role}) may not change alerts (cli)",
                        attributes={"username": me.username, "role": str(me.role)},
                    )
                    raise Forbidden(
                        f"role {me.role} lacks the permission {Permission.ALERTS_MANAGE}"
                    )
                alerts = AlertStore(session, store.ctx)
                if resolve:
                    changed = alerts.resolve(alert_id, me.username, note)
                else:
                    changed = alerts.acknowledge(alert_id, me.username, note)
            finally:
                users.logout(me)
    except AuthenticationFailed as exc:
        raise fail(str(exc)) from None
    except ServerError as exc:
        raise _refused(exc) from None
    out.print(f"{changed.alert_id} is {changed.state} (by {me.username})", highlight=False)


@app.command()
def ack(
    alert_id: Annotated[str, typer.Argument(help="e.g. ALR-000001")],
    user: UserOption,
    note: Annotated[str, typer.Option("--note", help="Optional note.")] = "",
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Acknowledge an alert: someone is on it."""
    _change(alert_id, user, note, False, data_dir, passphrase_file)


@app.command()
def resolve(
    alert_id: Annotated[str, typer.Argument(help="e.g. ALR-000001")],
    user: UserOption,
    note: Annotated[str | None, typer.Option("--note", help="Why it is closed (required).")] = None,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Resolve an alert, saying why (the note is required)."""
    if note is None or not note.strip():
        raise fail("resolving an alert needs --note saying why it is closed", 2)
    _change(alert_id, user, note, True, data_dir, passphrase_file)


@app.command()
def incidents(
    incident_id: Annotated[
        str | None, typer.Argument(help="Show this incident and its alerts.")
    ] = None,
    open_only: Annotated[
        bool, typer.Option("--open", help="Only incidents with open alerts.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """List incidents (correlated alerts), or show one."""
    try:
        with _alert_store(resolve_data_dir(data_dir), passphrase_file) as (store, session):
            alerts = AlertStore(session, store.ctx)
            if incident_id is not None:
                chosen = [alerts.incident(incident_id)]
            else:
                chosen = alerts.incidents(open_only=open_only, limit=limit)
            members = {i.incident_id: alerts.incident_alerts(i.incident_id) for i in chosen}
    except ServerError as exc:
        raise _refused(exc) from None
    if as_json:
        rendered = [incident_out(i, members[i.incident_id]) for i in chosen]
        if incident_id is None:
            _print_json(list(rendered))
        else:
            _print_json(
                IncidentDetailOut(
                    **rendered[0].model_dump(),
                    alerts=[alert_out(a) for a in members[chosen[0].incident_id]],
                )
            )
        return
    table = Table("incident", "severity", "open", "from", "to", "devices", "peers", "alerts")
    for i in chosen:
        table.add_row(
            i.incident_id,
            i.severity.name.lower(),
            "yes" if any(a.open for a in members[i.incident_id]) else "no",
            _time(i.first_ms),
            _time(i.last_ms),
            ", ".join(sorted(i.device_ids)) or "-",
            ", ".join(sorted(i.peers)) or "-",
            ", ".join(i.alert_ids),
        )
    out.print(table)


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
