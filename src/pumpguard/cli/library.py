"""``pumpguard library``: drug library files (validate, check, show) and, on a data directory,
the server's library versions: drafts, import/export, diff, submission and the two-person
approval.

Commands that change a version act as a named account and log in as the HTTP API does
(password and current TOTP code, through ``UserService.login``: same lockout, same one-use
codes, same audit entries), so on the command line too the approver has to prove to be a
different person from the drafter, not merely claim a different name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from pumpguard.cli.common import DataDirOption, err, fail, out, parse_decimal
from pumpguard.cli.common import data_dir as resolve_data_dir
from pumpguard.clinical import (
    DersResult,
    DoseKind,
    DosingError,
    DrugLibrary,
    LibraryError,
    UnitError,
    check_dose,
    dose_to_flow,
    library_json_schema,
    load_library,
    parse_dose_unit,
)

if TYPE_CHECKING:
    from pumpguard.server import (
        LibraryAuthoring,
        LibraryVersionInfo,
        Principal,
        ServerError,
        Store,
    )

T = TypeVar("T")

app = typer.Typer(
    no_args_is_help=True,
    help="Drug library files (validate, check, show) and the server's library versions "
    "(draft, import, export, diff, submit, approve, reject).",
)


def open_library(path: Path) -> DrugLibrary:
    try:
        return load_library(path)
    except LibraryError as exc:
        err.print(f"[bold red]invalid drug library[/] {exc.source}", highlight=False)
        for issue in exc.issues:
            err.print(f"  - {issue}", highlight=False, markup=False)
        raise typer.Exit(1) from None


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="Drug library JSON file.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing when valid.")] = False,
) -> None:
    """Exit 0 when FILE is a valid drug library; otherwise name every problem and exit 1."""
    library = open_library(file)
    if quiet:
        return
    entries = sum(1 for _ in library.entries())
    drugs = len({e.name.casefold() for _, e in library.entries()})
    out.print(
        f"[green]valid[/] {library.name} ({library.library_id} v{library.version}): "
        f"{len(library.care_areas)} care areas, {entries} entries, {drugs} drugs",
        highlight=False,
    )


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="Drug library JSON file.")],
    care_area: Annotated[str, typer.Option("--care-area", help="Care area, e.g. ICU.")],
    drug: Annotated[str, typer.Option("--drug", help="Drug name or code.")],
    dose: Annotated[str, typer.Option("--dose", help="Dose value.")],
    unit: Annotated[str, typer.Option("--unit", help="Dose unit, e.g. units/kg/h.")],
    weight: Annotated[str | None, typer.Option("--weight", help="Patient weight in kg.")] = None,
    kind: Annotated[DoseKind, typer.Option("--kind", help="Which rule to check.")] = (
        DoseKind.CONTINUOUS
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """Run the dose error reduction check for one dose and print its verdict.

    Exits 0 when the check ran, whatever the verdict; 1 for an invalid library; 2 for bad input.
    """
    value = parse_decimal("--dose", dose)
    weight_kg = parse_decimal("--weight", weight)
    assert value is not None
    library = open_library(file)
    result = check_dose(library, care_area, drug, value, unit, weight_kg=weight_kg, kind=kind)
    report = _report(result, care_area, drug, value, unit, weight_kg, kind)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    colour = "green" if report["verdict"] == "ok" else "yellow" if result.verdict.is_soft else "red"
    out.print(f"[bold {colour}]{report['verdict']}[/]  {result.message}", highlight=False)
    if report["err_code"] is not None:
        out.print(f"IHE PCD ERR-5 code: {report['err_code']}", highlight=False)
    if report["flow_ml_h"] is not None:
        out.print(f"flow rate: {report['flow_ml_h']} mL/h", highlight=False)
    if result.candidates:
        out.print("candidates: " + "; ".join(result.candidates), highlight=False)


def _report(
    result: DersResult,
    care_area: str,
    drug: str,
    dose: Decimal,
    unit: str,
    weight_kg: Decimal | None,
    kind: DoseKind,
) -> dict[str, Any]:
    flow: str | None = None
    entry = result.entry
    if entry is not None and kind is DoseKind.CONTINUOUS:
        try:
            exact = dose_to_flow(dose, parse_dose_unit(unit), entry.to_concentration(), weight_kg)
            flow = f"{exact.quantize(Decimal('0.01')):f}"
        except (DosingError, UnitError):
            flow = None
    return {
        "verdict": result.verdict.value,
        "err_code": result.err_code,
        "message": result.message,
        "care_area": care_area,
        "drug": drug,
        "entry": None if entry is None else entry.label(),
        "dose": f"{dose:f}",
        "unit": unit,
        "weight_kg": None if weight_kg is None else f"{weight_kg:f}",
        "kind": kind.value,
        "flow_ml_h": flow,
        "findings": [
            {
                "field": f.field,
                "verdict": f.verdict.value,
                "message": f.message,
                "limit": None if f.limit is None else f"{f.limit:f}",
            }
            for f in result.findings
        ],
        "candidates": list(result.candidates),
    }


@app.command()
def schema() -> None:
    """Print the drug library JSON Schema (the one published in docs/)."""
    typer.echo(json.dumps(library_json_schema(), indent=2))


@app.command()
def show(file: Annotated[Path, typer.Argument(help="Drug library JSON file.")]) -> None:
    """List a library's care areas and entries with their continuous limits."""
    library = open_library(file)
    table = Table(title=f"{library.name} v{library.version}")
    for column in ("care area", "drug", "concentration", "unit", "soft", "hard"):
        table.add_column(column)
    for area, entry in library.entries():
        lim = entry.continuous
        table.add_row(
            area.name,
            entry.name,
            "-" if entry.concentration is None else str(entry.concentration),
            entry.dose_unit,
            f"{_text(lim.soft_min)}-{_text(lim.soft_max)}",
            f"{_text(lim.hard_min)}-{_text(lim.hard_max)}",
        )
    out.print(table)


def _text(value: Decimal | None) -> str:
    return "" if value is None else f"{value.normalize():f}"


@app.command()
def status(
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the compliance as JSON.")] = False,
) -> None:
    """Fleet compliance: share of pumps on the newest published library, laggards and why.

    Read from the data directory (pump status telemetry, the update repository, the last
    roll-out record), so it works whether or not `pumpguard up` is running.
    """
    from pumpguard.cli.admin import open_store
    from pumpguard.cli.common import data_dir as resolve_data_dir
    from pumpguard.clock import SystemClock
    from pumpguard.server.api.deployment import compliance_out
    from pumpguard.server.ingest import IngestService
    from pumpguard.server.library_distribution import (
        DistributionError,
        fleet_compliance,
        read_repository,
        read_rollout_snapshot,
        updates_dir,
    )
    from pumpguard.updates import RepositoryError, UpdateKind

    directory = resolve_data_dir(data_dir)
    if not (updates_dir(directory) / "published" / "metadata" / "root.json").exists():
        raise fail(f"{directory} has no update repository yet; start `pumpguard up` once")
    clock = SystemClock()
    try:
        published = read_repository(directory, clock).published(UpdateKind.DRUG_LIBRARY)
        snapshot = read_rollout_snapshot(directory)
    except (RepositoryError, DistributionError) as exc:
        raise fail(str(exc)) from None
    store = open_store(directory, None, create=False)
    try:
        with store.transaction() as session:
            statuses = IngestService(session, store.ctx).statuses()
    finally:
        store.close()
    target = max(published, key=lambda t: t.version) if published else None
    report = compliance_out(fleet_compliance(target, statuses, snapshot, clock.now_ms()))
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    if report.library is None:
        out.print("no drug library is published yet", highlight=False)
        return
    out.print(
        f"{report.library} v{report.version}: {report.on_current} of {report.pumps} pumps "
        f"({report.share_on_current:.0%}) run it; roll-out {report.rollout_phase or 'none'}",
        highlight=False,
    )
    coverage = ", ".join(
        f"{name.removesuffix('_ms')} {'-' if ms is None else f'{ms / 1000:.1f} s'}"
        for name, ms in report.time_to_coverage_ms.items()
    )
    out.print(f"time to coverage: {coverage}", highlight=False)
    if report.laggards:
        table = Table("pump", "reports", "online", "state", "lags because", "detail")
        for lag in report.laggards:
            table.add_row(
                lag.pump_id,
                lag.library_version or "-",
                "yes" if lag.online else "no",
                lag.state,
                lag.lag or "-",
                lag.detail,
            )
        out.print(table)


# ---------------------------------------------------------------------------------------------
# Server-side authoring: versions of the drug library in a data directory.

USER_ENV = "PUMPGUARD_USER"
PASSWORD_ENV = "PUMPGUARD_PASSWORD"
TOTP_ENV = "PUMPGUARD_TOTP"

draft_app = typer.Typer(
    no_args_is_help=True, help="Create and edit drafts of the server's drug library."
)
app.add_typer(draft_app, name="draft")

UserOption = Annotated[
    str,
    typer.Option(
        "--user",
        envvar=USER_ENV,
        help=f"Acting account (default: ${USER_ENV}).",
        show_default=False,
    ),
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        help=f"File holding the account's password (default: ${PASSWORD_ENV}, else a prompt).",
    ),
]
TotpOption = Annotated[
    str | None,
    typer.Option(
        "--totp", help=f"Current 6-digit code of the account (default: ${TOTP_ENV}, else a prompt)."
    ),
]
VersionArgument = Annotated[int, typer.Argument(min=1, help="Library version number.")]
PassphraseFileOption = Annotated[
    Path | None,
    typer.Option(
        "--audit-passphrase-file",
        help="File holding the audit key passphrase (default: $PUMPGUARD_AUDIT_PASSPHRASE, "
        "else the stored one).",
    ),
]
"""As ``pumpguard admin``'s option; repeated here so that the file commands (``validate``,
``check``) do not import the server package."""


def _password(password_file: Path | None) -> str:
    if password_file is not None:
        try:
            return password_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"cannot read the password file {password_file}: {exc}", 2) from None
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    return str(typer.prompt("password", hide_input=True, err=True))


def _totp(code: str | None) -> str:
    chosen = code or os.environ.get(TOTP_ENV) or str(typer.prompt("TOTP code", err=True))
    return chosen.strip()


def _open(data_dir: Path | None, passphrase_file: Path | None) -> Store:
    directory = resolve_data_dir(data_dir)
    if not (directory / "audit").exists():
        raise fail(
            f"no pumpguard server data in {directory}; create an account first with "
            "`pumpguard admin create`"
        )
    from pumpguard.cli.admin import open_store

    return open_store(directory, passphrase_file, create=False)


@contextmanager
def _session_as(
    store: Store, user: str, password_file: Path | None, totp: str | None
) -> Iterator[Principal]:
    """Log in as ``user`` (both factors), yield the principal, log out."""
    from pumpguard.server import AuthenticationFailed, UserService

    password = _password(password_file)
    code = _totp(totp)
    try:
        with store.transaction() as session:
            users = UserService(session, store.ctx)
            token = users.login(user, password, code, peer="cli")
            principal = users.authenticate(token.token)
    except AuthenticationFailed as exc:
        raise fail(str(exc)) from None
    try:
        yield principal
    finally:
        with store.transaction() as session:
            UserService(session, store.ctx).logout(principal)


def _refused(exc: ServerError) -> typer.Exit:
    from pumpguard.server import InvalidLibrary

    if isinstance(exc, InvalidLibrary):
        summary, _, _rest = str(exc).partition("\n")
        err.print(f"[bold red]error:[/] {summary}", highlight=False)
        for issue in exc.issues:
            err.print(f"  - {issue}", highlight=False, markup=False)
        return typer.Exit(1)
    return fail(str(exc))


def _act(
    data_dir: Path | None,
    passphrase_file: Path | None,
    user: str,
    password_file: Path | None,
    totp: str | None,
    action: Callable[[LibraryAuthoring, Principal], T],
) -> T:
    from pumpguard.server import LibraryAuthoring, ServerError

    store = _open(data_dir, passphrase_file)
    try:
        with _session_as(store, user, password_file, totp) as me:
            try:
                with store.transaction() as session:
                    return action(LibraryAuthoring(session, store.ctx), me)
            except ServerError as exc:
                raise _refused(exc) from None
    finally:
        store.close()


def _read(
    data_dir: Path | None,
    passphrase_file: Path | None,
    action: Callable[[LibraryAuthoring], T],
) -> T:
    from pumpguard.server import LibraryAuthoring, ServerError

    store = _open(data_dir, passphrase_file)
    try:
        with store.transaction() as session:
            return action(LibraryAuthoring(session, store.ctx))
    except ServerError as exc:
        raise _refused(exc) from None
    finally:
        store.close()


def _say(info: LibraryVersionInfo, what: str) -> None:
    out.print(
        f"{what} v{info.version} ({info.state}): {info.care_areas} care areas, "
        f"{info.entries} entries",
        highlight=False,
    )


@app.command()
def versions(
    as_json: Annotated[bool, typer.Option("--json", help="Print the versions as JSON.")] = False,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """List the server's drug library versions and who drafted, submitted and decided each."""
    listed = _read(data_dir, passphrase_file, lambda s: s.versions())
    if as_json:
        typer.echo(json.dumps([_version_json(v) for v in listed], indent=2))
        return
    table = Table(
        "version",
        "state",
        "name",
        "areas",
        "entries",
        "drafted",
        "contributors",
        "decided",
        "sha256",
    )
    for v in listed:
        table.add_row(
            str(v.version),
            str(v.state),
            v.name,
            str(v.care_areas),
            str(v.entries),
            v.created_by,
            ", ".join(v.contributors),
            v.decided_by or "",
            (v.content_sha256 or "")[:16],
        )
    out.print(table)


def _version_json(v: LibraryVersionInfo) -> dict[str, Any]:
    return {
        "version": v.version,
        "library_id": v.library_id,
        "name": v.name,
        "state": str(v.state),
        "base_version": v.base_version,
        "created_by": v.created_by,
        "updated_by": v.updated_by,
        "submitted_by": v.submitted_by,
        "decided_by": v.decided_by,
        "decision_note": v.decision_note,
        "content_sha256": v.content_sha256,
        "care_areas": v.care_areas,
        "entries": v.entries,
        "contributors": list(v.contributors),
    }


@app.command()
def inspect(
    version: VersionArgument,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Show a version's care areas and entries with the ids the edit commands take."""
    areas = _read(data_dir, passphrase_file, lambda s: s.care_areas(version))
    table = Table(title=f"drug library v{version}")
    for column in ("care area", "entry id", "drug", "unit", "soft", "hard"):
        table.add_column(column)
    for area in areas:
        if not area.entries:
            table.add_row(area.name, "", "(no entries yet)", "", "", "")
        for info in area.entries:
            lim = info.entry.continuous
            table.add_row(
                area.name,
                str(info.id),
                info.entry.label(),
                info.entry.dose_unit,
                f"{_text(lim.soft_min)}-{_text(lim.soft_max)}",
                f"{_text(lim.hard_min)}-{_text(lim.hard_max)}",
            )
    out.print(table)


class ExportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


@app.command()
def export(
    version: VersionArgument,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", help="json or csv.")] = (
        ExportFormat.JSON
    ),
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Write a version as a drug library JSON file (the published schema) or as CSV."""
    if fmt is ExportFormat.JSON:
        data = _read(data_dir, passphrase_file, lambda s: s.export_json(version))
    else:
        data = _read(data_dir, passphrase_file, lambda s: s.export_csv(version)).encode()
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror}") from None
    err.print(f"wrote v{version} to {output}", highlight=False)


@app.command()
def diff(
    old: Annotated[int, typer.Argument(min=1, help="Older version.")],
    new: Annotated[int, typer.Argument(min=1, help="Newer version.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the diff as JSON.")] = False,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """What changed between two versions, field by field; loosened limits are flagged."""
    result = _read(data_dir, passphrase_file, lambda s: s.diff(old, new))
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(result), indent=2, default=str))
        return
    for line in result.lines():
        out.print(line, highlight=False, markup=False)


@draft_app.command("new")
def draft_new(
    user: UserOption,
    base: Annotated[
        int | None, typer.Option("--from", min=1, help="Copy this version (any state).")
    ] = None,
    from_approved: Annotated[
        bool, typer.Option("--from-approved", help="Copy the newest approved version.")
    ] = False,
    library_id: Annotated[
        str | None, typer.Option("--library-id", help="For the very first draft.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Library name.")] = None,
    password_file: PasswordFileOption = None,
    totp: TotpOption = None,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Start a draft: empty, or a copy of a version."""
    info = _act(
        data_dir,
        passphrase_file,
        user,
        password_file,
        totp,
        lambda s, me: s.create_draft(
            me,
            base_version=base,
            from_latest_approved=from_approved,
            library_id=library_id,
            name=name,
        ),
    )
    _say(info, "created draft")


@draft_app.command("import")
def draft_import(
    file: Annotated[Path, typer.Argument(help="Drug library .json file or .csv file.")],
    user: UserOption,
    base: Annotated[
        int | None,
        typer.Option("--base", min=1, help="CSV: take name and sources from this version."),
    ] = None,
    library_id: Annotated[
        str | None, typer.Option("--library-id", help="CSV, first version only.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="CSV, first version only.")] = None,
    password_file: PasswordFileOption = None,
    totp: TotpOption = None,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """A new draft from a file: JSON in the published schema, or CSV (docs/drug-library.md)."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {file}: {exc}") from None
    if file.suffix.lower() == ".csv":
        info = _act(
            data_dir,
            passphrase_file,
            user,
            password_file,
            totp,
            lambda s, me: s.import_csv(
                me, text, base_version=base, library_id=library_id, name=name
            ),
        )
    elif file.suffix.lower() == ".json":
        try:
            data = json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError as exc:
            raise fail(f"{file} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
        info = _act(
            data_dir,
            passphrase_file,
            user,
            password_file,
            totp,
            lambda s, me: s.import_json(me, data),
        )
    else:
        raise fail(f"{file}: expected a .json or .csv file", 2)
    _say(info, f"imported {file.name} as draft")


@draft_app.command("add-area")
def draft_add_area(
    version: VersionArgument,
    name: Annotated[str, typer.Argument(help="Care area name.")],
    user: UserOption,
    max_rate: Annotated[
        str | None, typer.Option("--max-rate", help="Maximum pump rate in mL/h.")
    ] = None,
    password_file: PasswordFileOption = None,
    totp: TotpOption = None,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Add a care area to a draft."""
    rate = parse_decimal("--max-rate", max_rate)
    area = _act(
        data_dir,
        passphrase_file,
        user,
        password_file,
        totp,
        lambda s, me: s.add_care_area(version, me, name, rate),
    )
    out.print(f"added care area {area.name!r} (id {area.id}) to v{version}", highlight=False)


@draft_app.command("remove-area")
def draft_remove_area(
    version: VersionArgument,
    name: Annotated[str, typer.Argument(help="Care area name.")],
    user: UserOption,
    password_file: PasswordFileOption = None,
    totp: TotpOption = None,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Remove a care area and its entries from a draft."""
    _act(
        data_dir,
        passphrase_file,
        user,
        password_file,
        totp,
        lambda s, me: s.remove_care_area(version, me, s.find_care_area(version, name).id),
    )
    out.print(f"removed care area {name!r} from v{version}", highlight=False)


def _entry_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise fail(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise fail(f"{path} must hold one drug entry (a JSON object)")
    return data


@draft_app.command("add-entry")
def draft_add_entry(
    version: VersionArgument,
    entry_file: Annotated[Path, typer.Argument(help="One drug entry as JSON (published schema).")],
    care_area: Annotated[str, typer.Option("--care-area", help="Care area to add it to.")],
    user: UserOption,
    password_file: PasswordFileOption = None,
    totp: TotpOption = None,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Add a drug entry to a care area of a draft."""
    entry = _entry_file(entry_file)
    info = _act(
        data_dir,
        passphrase_file,
        user,
        password_file,
        totp,
        lambda s, me: s.add_entry(version, me, s.find_care_area(version, care_area).id, entry),
    )
    out.print(f"added {info.entry.label()} (id {info.id}) to {info.care_area}", highlight=False)


@draft_app.command("update-entry")
def draft_update_entry(
    version: VersionArgument,
    entry_id: Annotated[int, typer.Argument(min=1, help="Entry id (see `library inspect`).")],
    entry_file: Annotated[Path, typer.Argument(help="The whole new entry as JSON.")],
    user: UserOption,
    password_file: PasswordFileOption = None,
    totp: TotpOption = None,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Replace a drug entry of a draft."""
    entry = _entry_file(entry_file)
    info = _act(
        data_dir,
        passphrase_file,
        user,
        password_file,
        totp,
        lambda s, me: s.update_entry(version, me, entry_id, entry),
    )
    out.print(f"updated {info.entry.label()} (id {info.id}) in {info.care_area}", highlight=False)


@draft_app.command("remove-entry")
def draft_remove_entry(
    version: VersionArgument,
    entry_id: Annotated[int, typer.Argument(min=1, help="Entry id (see `library inspect`).")],
    user: UserOption,
    password_file: PasswordFileOption = None,
    totp: TotpOption = None,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Remove a drug entry from a draft."""
    _act(
        data_dir,
        passphrase_file,
        user,
        password_file,
        totp,
        lambda s, me: s.remove_entry(version, me, entry_id),
    )
    out.print(f"removed entry {entry_id} from v{version}", highlight=False)


@app.command()
def submit(
    version: VersionArgument,
    user: UserOption,
    password_file: PasswordFileOption = None,
    totp: TotpOption = None,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Submit a complete draft for approval by a different pharmacy approver."""
    info = _act(
        data_dir,
        passphrase_file,
        user,
        password_file,
        totp,
        lambda s, me: s.submit(version, me),
    )
    _say(info, "submitted")


@app.command()
def approve(
    version: VersionArgument,
    user: UserOption,
    note: Annotated[str, typer.Option("--note", help="Why it is approved.")] = "",
    password_file: PasswordFileOption = None,
    totp: TotpOption = None,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Approve a submitted version (refused for anyone who drafted, edited or submitted it)."""
    approved = _act(
        data_dir,
        passphrase_file,
        user,
        password_file,
        totp,
        lambda s, me: s.approve(version, me, note),
    )
    out.print(
        f"approved v{approved.version} by {approved.approved_by} (drafted by "
        f"{', '.join(approved.contributors)}); sha256 {approved.sha256}",
        highlight=False,
    )


@app.command()
def reject(
    version: VersionArgument,
    user: UserOption,
    note: Annotated[str, typer.Option("--note", help="What must change (required).")],
    password_file: PasswordFileOption = None,
    totp: TotpOption = None,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Reject a submitted version with a note; a new draft can start from it."""
    info = _act(
        data_dir,
        passphrase_file,
        user,
        password_file,
        totp,
        lambda s, me: s.reject(version, me, note),
    )
    _say(info, "rejected")
