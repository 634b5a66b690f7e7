"""``pumpguard updates``: the key holders' side of publishing a drug library or firmware image.

Each drug-library key holder signs on their own, with their own key file and passphrase
(``sign --key drug-libraries-N``), against the repository in the server's data directory; the
repository refuses a key it does not delegate to and a key that already signed. When the
threshold (two) is met, ``publish`` (or ``POST /api/v1/deployment/releases/publish``) lists it
with the online keys, which can re-date and re-list but never sign a library.

``--kind firmware`` does the same for a firmware image (a file named on the command line, with
its product and version): the two firmware key holders (``firmware-1``, the maker's release
key, and ``firmware-2``, the hospital's acceptance key) each sign.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated

import typer

from pumpguard.cli.common import DataDirOption, err, fail, out
from pumpguard.cli.common import data_dir as resolve_data_dir
from pumpguard.clock import SystemClock
from pumpguard.pki import PkiError, read_passphrase_file
from pumpguard.security_events import JsonLinesEventFile
from pumpguard.server.datadir import SECURITY_EVENTS_FILE
from pumpguard.server.library_distribution import (
    DistributionError,
    open_repository,
    read_repository,
    sign_release,
    updates_dir,
)
from pumpguard.updates import PendingRelease, RepositoryError, UpdateKind
from pumpguard.updates.targets import validate_name

__all__ = ["app"]

KEY_PASSPHRASE_ENV = "PUMPGUARD_KEY_PASSPHRASE"

app = typer.Typer(
    no_args_is_help=True,
    help="Sign and publish drug libraries and firmware in the server's TUF repository "
    "(two key holders).",
)

KindOption = Annotated[
    UpdateKind,
    typer.Option("--kind", help="What the release is: drug-library or firmware."),
]


def _repository_dir(data_dir: Path | None) -> Path:
    directory = resolve_data_dir(data_dir)
    if not (updates_dir(directory) / "published" / "metadata" / "root.json").exists():
        raise fail(
            f"{updates_dir(directory)} holds no update repository; `pumpguard up` creates it "
            "on its first start"
        )
    return directory


def _events(directory: Path) -> JsonLinesEventFile:
    return JsonLinesEventFile(directory / SECURITY_EVENTS_FILE)


def _describe(pending: PendingRelease) -> str:
    return f"{pending.target.path}: {len(pending.signed_by)} of {pending.threshold} signatures" + (
        "" if pending.missing else " (ready to publish)"
    )


@app.command()
def propose(
    file: Annotated[
        Path, typer.Argument(help="Approved drug library JSON, or the firmware image, to release.")
    ],
    kind: KindOption = UpdateKind.DRUG_LIBRARY,
    product: Annotated[
        str | None, typer.Option("--product", help="Firmware only: the product it is for.")
    ] = None,
    version: Annotated[
        int | None,
        typer.Option("--version", min=1, help="Firmware only: the image's version (a number)."),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Stage an approved library (or a firmware image) for the key holders' signatures."""
    if kind is UpdateKind.FIRMWARE:
        if product is None or version is None:
            raise typer.BadParameter("a firmware image needs --product and --version")
        try:
            validate_name(product)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--product") from None
    elif product is not None or version is not None:
        raise typer.BadParameter("--product and --version are for --kind firmware only")
    directory = _repository_dir(data_dir)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror}") from None
    repository = read_repository(directory, SystemClock())
    try:
        if product is not None and version is not None:
            pending = repository.propose_firmware(product, version, data)
        else:
            pending = repository.propose_drug_library(data)
    except RepositoryError as exc:
        raise fail(str(exc)) from None
    out.print(_describe(pending), highlight=False)


@app.command()
def sign(
    key: Annotated[
        str, typer.Option("--key", help="Your key, e.g. drug-libraries-2 or firmware-1.")
    ],
    kind: KindOption = UpdateKind.DRUG_LIBRARY,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file",
            help=f"File with your key's passphrase (default: ${KEY_PASSPHRASE_ENV}, else asked).",
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Add your signature to the release of ``--kind`` waiting for signatures."""
    directory = _repository_dir(data_dir)
    try:
        if passphrase_file is not None:
            passphrase = read_passphrase_file(passphrase_file)
        elif os.environ.get(KEY_PASSPHRASE_ENV):
            passphrase = os.environ[KEY_PASSPHRASE_ENV].encode("utf-8")
        else:
            passphrase = getpass.getpass(f"passphrase of {key}: ").encode("utf-8")
    except PkiError as exc:
        raise fail(str(exc)) from None
    try:
        pending = sign_release(directory, SystemClock(), key, passphrase, _events(directory), kind)
    except RepositoryError as exc:
        raise fail(str(exc)) from None
    out.print(f"signed by {key}; {_describe(pending)}", highlight=False)


@app.command()
def pending(kind: KindOption = UpdateKind.DRUG_LIBRARY, data_dir: DataDirOption = None) -> None:
    """Show the release of ``--kind`` waiting for signatures, if any, and what is published."""
    directory = _repository_dir(data_dir)
    repository = read_repository(directory, SystemClock())
    try:
        waiting = repository.pending(kind)
        published = repository.published(kind)
    except RepositoryError as exc:
        raise fail(str(exc)) from None
    out.print(_describe(waiting) if waiting else "nothing waits for signatures", highlight=False)
    for target in published:
        out.print(f"published {target.path} ({target.length} bytes)", highlight=False)


@app.command()
def publish(
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--updates-passphrase-file",
            help="File with the online keys' passphrase (default: $PUMPGUARD_UPDATES_PASSPHRASE, "
            "else the stored one).",
        ),
    ] = None,
    kind: KindOption = UpdateKind.DRUG_LIBRARY,
    data_dir: DataDirOption = None,
) -> None:
    """Publish the waiting release of ``--kind`` once its threshold of signatures is met."""
    directory = _repository_dir(data_dir)
    events = _events(directory)
    try:
        repository, notices = open_repository(directory, SystemClock(), events, passphrase_file)
        target = repository.publish(kind)
    except (DistributionError, RepositoryError) as exc:
        raise fail(str(exc)) from None
    for notice in notices:
        err.print(f"[yellow]warning:[/] {notice}", highlight=False)
    route = "firmware/rollouts" if kind is UpdateKind.FIRMWARE else "rollouts"
    out.print(
        f"published {target.path}; roll it out with POST /api/v1/deployment/{route}",
        highlight=False,
    )
