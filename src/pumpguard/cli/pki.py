"""``pumpguard pki``: the certificate authority of one pumpguard system (``DATA_DIR/pki``)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pumpguard.cli.common import DataDirOption, err, fail, out
from pumpguard.cli.common import data_dir as resolve_data_dir
from pumpguard.pki import (
    CRL_FILE,
    DEFAULT_CRL_URL,
    PASSPHRASE_ENV,
    CaNotInitialisedError,
    CertificateAuthority,
    CertificateRecord,
    CertKind,
    IssuedCredential,
    PkiError,
    ProbeOutcome,
    RevocationReason,
    SignedCertificate,
    generate_passphrase,
    probe_tls_endpoint,
    resolve_passphrase,
    store_passphrase,
)
from pumpguard.security_events import JsonLinesEventFile
from pumpguard.server.runtime import INGEST_CLIENT_ID
from pumpguard.transport import MosquittoSettings, write_mosquitto_config
from pumpguard.transport.mosquitto import CONF_FILE

app = typer.Typer(
    no_args_is_help=True,
    help="Certificate authority: init, issue, revoke, list, crl, renew; check-tls; mosquitto.",
)

BROKER_ID = "pumpguard-broker"
"""The production broker's certificate id (a listener: no clientAuth, so it cannot log in)."""

# One journal per system, shared with the other stateful commands, until the monitor collects it.
_EVENTS_FILE = "security-events.jsonl"
_SERIAL = re.compile(r"(?:0x)?([0-9A-Fa-f]{1,2}(?::?[0-9A-Fa-f]{2})*)")

PassphraseFileOption = Annotated[
    Path | None,
    typer.Option(
        "--passphrase-file",
        help=f"File holding the CA passphrase (default: ${PASSPHRASE_ENV}, else the stored one).",
    ),
]


def _pki_dir(data_dir: Path | None) -> Path:
    return resolve_data_dir(data_dir) / "pki"


def _open(data_dir: Path | None, passphrase_file: Path | None) -> CertificateAuthority:
    directory = _pki_dir(data_dir)
    if not CertificateAuthority.is_initialised(directory):
        raise fail(f"no certificate authority in {directory}; run `pumpguard pki init` first")
    try:
        resolved = resolve_passphrase(directory, passphrase_file)
    except PkiError as exc:
        raise fail(str(exc)) from None
    if resolved is None:
        raise fail(
            f"no CA passphrase: give --passphrase-file or set {PASSPHRASE_ENV} "
            f"(no stored passphrase in {directory})"
        )
    try:
        return CertificateAuthority.open(
            directory, resolved.value, events=JsonLinesEventFile(directory.parent / _EVENTS_FILE)
        )
    except PkiError as exc:
        raise fail(str(exc)) from None


def _parse_serial(text: str) -> int:
    match = _SERIAL.fullmatch(text.strip())
    if match is None:
        raise fail(f"serial must be hexadecimal as `pumpguard pki list` prints it, got {text!r}", 2)
    return int(match.group(1).replace(":", ""), 16)


def _kind(text: str) -> CertKind:
    try:
        return CertKind(text.strip().lower())
    except ValueError:
        known = ", ".join(k.value for k in CertKind)
        raise fail(f"unknown certificate kind {text!r}; use one of {known}", 2) from None


def _reason(text: str) -> RevocationReason:
    try:
        return RevocationReason(text.strip().lower())
    except ValueError:
        known = ", ".join(r.value for r in RevocationReason)
        raise fail(f"unknown revocation reason {text!r}; use one of {known}", 2) from None


def _positive_days(option: str, days: int | None) -> timedelta | None:
    if days is None:
        return None
    if days <= 0:
        raise fail(f"{option} must be a positive number of days, got {days}", 2)
    return timedelta(days=days)


@app.command()
def init(
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
    crl_url: Annotated[
        str, typer.Option("--crl-url", help="URL written into certificates as CRL location.")
    ] = DEFAULT_CRL_URL,
) -> None:
    """Create the root and issuing CA (ECDSA P-256) with encrypted keys, and an empty CRL."""
    directory = _pki_dir(data_dir)
    if CertificateAuthority.is_initialised(directory):
        raise fail(f"a certificate authority already exists in {directory}; not replacing it")
    try:
        resolved = resolve_passphrase(directory, passphrase_file)
    except PkiError as exc:
        raise fail(str(exc)) from None
    passphrase = generate_passphrase() if resolved is None else resolved.value
    stored: Path | None = None
    if resolved is None:
        # Stored before the keys are encrypted with it: a crash in between must not leave keys
        # that nothing can open.
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        stored = store_passphrase(directory, passphrase)
    try:
        ca = CertificateAuthority.init(
            directory,
            passphrase,
            crl_url=crl_url,
            events=JsonLinesEventFile(directory.parent / _EVENTS_FILE),
        )
    except PkiError as exc:
        raise fail(str(exc)) from None
    out.print(f"certificate authority created in {directory}", highlight=False)
    out.print(f"  root:    {ca.root_certificate.subject.rfc4514_string()}", highlight=False)
    out.print(f"  issuing: {ca.issuing_certificate.subject.rfc4514_string()}", highlight=False)
    out.print(f"  trust bundle: {directory / 'ca.pem'}", highlight=False)
    if stored is not None:
        err.print(
            f"[bold yellow]warning:[/] generated a CA passphrase and stored it in {stored} "
            "(mode 0600) next to the encrypted keys. That only suits a lab: in production "
            "keep the passphrase offline or the CA keys in an HSM, and delete this file.",
            highlight=False,
        )


@app.command()
def issue(
    kind: Annotated[str, typer.Option("--kind", help="pump, server, ehr or controller.")],
    ident: Annotated[str, typer.Option("--id", help="Device or server id, e.g. PUMP-0001.")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Directory for cert.pem, key.pem and ca.pem.")
    ],
    san: Annotated[
        list[str] | None,
        typer.Option("--san", help="DNS name or IP address (server and ehr; repeatable)."),
    ] = None,
    days: Annotated[
        int | None, typer.Option("--days", help="Validity in days (default by kind).")
    ] = None,
    also_client: Annotated[
        bool,
        typer.Option(
            "--also-client",
            help="Server certificate that may also connect as a client (clientAuth).",
        ),
    ] = False,
    csr: Annotated[
        Path | None,
        typer.Option(
            "--csr",
            help="Certify the key of this PKCS#10 request (made on the device) instead of "
            "generating one; writes cert.pem and ca.pem only.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite credentials already in --out.")
    ] = False,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Issue a certificate and a fresh key for one party; write cert.pem, key.pem, ca.pem."""
    cert_kind = _kind(kind)
    validity = _positive_days("--days", days)
    written = ("cert.pem", "ca.pem") if csr is not None else ("cert.pem", "key.pem", "ca.pem")
    existing = [n for n in written if (out_dir / n).exists()]
    if existing and not force:
        raise fail(f"{out_dir} already holds {', '.join(existing)}; use --force to replace them")
    request: bytes | None = None
    if csr is not None:
        try:
            request = csr.read_bytes()
        except OSError as exc:
            raise fail(f"cannot read CSR {csr}: {exc.strerror}") from None
    ca = _open(data_dir, passphrase_file)
    sans = tuple(san or ())
    try:
        if request is not None:
            issued: IssuedCredential | SignedCertificate = ca.sign_csr(
                cert_kind,
                request,
                ident=ident,
                sans=sans,
                validity=validity,
                also_client=also_client,
            )
        else:
            issued = ca.issue(
                cert_kind, ident, sans=sans, validity=validity, also_client=also_client
            )
    except PkiError as exc:
        raise fail(str(exc)) from None
    try:
        issued.write(out_dir)
    except OSError as exc:
        raise fail(f"certificate {issued.serial:X} issued but not written: {exc}") from None
    out.print(
        f"issued {cert_kind} certificate for {ident}: serial {issued.serial:X}, "
        f"valid until {issued.not_after:%Y-%m-%d %H:%M} UTC, written to {out_dir}",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def revoke(
    serial: Annotated[
        str | None, typer.Argument(help="Serial (hex, as `pki list` prints it).")
    ] = None,
    ident: Annotated[
        str | None,
        typer.Option("--id", help="Revoke every certificate of this id (decommissioning)."),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason",
            help="unspecified, key-compromise, affiliation-changed, superseded, "
            "cessation-of-operation (default: unspecified for a serial, "
            "cessation-of-operation for --id).",
        ),
    ] = None,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Revoke a certificate (or all of a device's) and republish the CRL."""
    if (serial is None) == (ident is None):
        raise fail("give exactly one of SERIAL or --id", 2)
    parsed_reason = None if reason is None else _reason(reason)
    parsed_serial = None if serial is None else _parse_serial(serial)
    ca = _open(data_dir, passphrase_file)
    try:
        if parsed_serial is not None:
            ca.revoke(parsed_serial, parsed_reason or RevocationReason.UNSPECIFIED)
            revoked = [parsed_serial]
        else:
            assert ident is not None
            revoked = ca.revoke_ident(
                ident, parsed_reason or RevocationReason.CESSATION_OF_OPERATION
            )
    except PkiError as exc:
        raise fail(str(exc)) from None
    if not revoked:
        out.print(f"{ident} has no unrevoked certificate; nothing to do", highlight=False)
        return
    for number in revoked:
        out.print(f"revoked {number:X}", highlight=False, soft_wrap=True)
    out.print(f"CRL republished: {ca.directory / 'crl.pem'}", highlight=False)


def _record_json(record: CertificateRecord, now: datetime) -> dict[str, object]:
    return {
        "serial": record.serial_hex,
        "kind": record.kind.value,
        "id": record.ident,
        "sans": list(record.sans),
        "not_before": record.not_before.isoformat(),
        "not_after": record.not_after.isoformat(),
        "status": record.status(now).value,
        "revoked_at": None if record.revoked_at is None else record.revoked_at.isoformat(),
        "revocation_reason": (
            None if record.revocation_reason is None else record.revocation_reason.value
        ),
        "renewed_by": None if record.renewed_by is None else format(record.renewed_by, "X"),
        "sha256": record.fingerprint_sha256,
        "also_client": record.also_client,
        "device_key": record.device_key,
    }


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    ident: Annotated[str | None, typer.Option("--id", help="Only this id.")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """List every certificate issued, with its status (no passphrase needed)."""
    directory = _pki_dir(data_dir)
    try:
        records = CertificateAuthority.read_certificates(directory)
    except CaNotInitialisedError:
        raise fail(
            f"no certificate authority in {directory}; run `pumpguard pki init` first"
        ) from None
    except PkiError as exc:
        raise fail(str(exc)) from None
    if ident is not None:
        records = [r for r in records if r.ident == ident]
    now = datetime.now(UTC)
    if as_json:
        typer.echo(json.dumps([_record_json(r, now) for r in records], indent=2))
        return
    table = Table(title=f"certificates in {directory}")
    table.add_column("serial", overflow="fold", min_width=20)
    for column in ("kind", "id", "status", "not after (UTC)", "note"):
        table.add_column(column)
    for record in records:
        note = ""
        if record.revocation_reason is not None:
            note = str(record.revocation_reason)
        elif record.renewed_by is not None:
            note = f"renewed by {record.renewed_by:X}"
        table.add_row(
            record.serial_hex,
            record.kind.value,
            record.ident,
            record.status(now).value,
            f"{record.not_after:%Y-%m-%d %H:%M}",
            note,
        )
    out.print(table)


@app.command()
def crl(
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Also write the CRL to this file.")
    ] = None,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Sign a fresh CRL, refresh DATA_DIR/pki/crl.pem, and print it (PEM) on stdout."""
    ca = _open(data_dir, passphrase_file)
    try:
        published = ca.publish_crl()
        pem = published.read_bytes()
        if out_path is not None:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_bytes(pem)
    except (PkiError, OSError) as exc:
        raise fail(str(exc)) from None
    typer.echo(pem.decode("ascii"), nl=False)


@app.command()
def renew(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Each renewed credential goes to OUT/<id>-<serial>/.")
    ],
    within_days: Annotated[
        int, typer.Option("--within-days", help="Renew what expires within this many days.")
    ] = 30,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Re-issue, with new keys, every valid certificate close to expiry."""
    within = _positive_days("--within-days", within_days)
    assert within is not None
    ca = _open(data_dir, passphrase_file)
    try:
        renewed = ca.renew_due(within)
    except PkiError as exc:
        raise fail(str(exc)) from None
    for credential in renewed:
        record = ca.certificate(credential.serial)
        target = out_dir / f"{record.ident}-{record.serial_hex}"
        try:
            credential.write(target)
        except OSError as exc:
            raise fail(f"renewed {record.serial_hex} but could not write {target}: {exc}") from None
        out.print(
            f"renewed {record.ident}: serial {record.serial_hex} -> {target}",
            highlight=False,
            soft_wrap=True,
        )
    waiting = [r for r in ca.due_for_renewal(within) if r.device_key]
    for record in waiting:
        out.print(
            f"{record.ident}: serial {record.serial_hex} expires {record.not_after:%Y-%m-%d} and "
            "uses a key made on the device: it must send a new CSR (`pki issue --csr`)",
            highlight=False,
            soft_wrap=True,
        )
    if not renewed and not waiting:
        out.print(f"nothing expires within {within_days} days")


@app.command("check-tls")
def check_tls(
    host: Annotated[str, typer.Option("--host", help="Listener to probe.")],
    port: Annotated[int, typer.Option("--port", help="Its TCP port.")],
    cert_dir: Annotated[
        Path,
        typer.Option("--cert-dir", help="A valid client credential (cert.pem, key.pem, ca.pem)."),
    ],
    server_name: Annotated[
        str | None, typer.Option("--server-name", help="Name to verify (default: --host).")
    ] = None,
    client_cert_optional: Annotated[
        bool,
        typer.Option(
            "--client-cert-optional", help="Do not require the listener to demand client certs."
        ),
    ] = False,
) -> None:
    """Probe a live TLS listener: old protocols, weak ciphers and anonymous clients refused.

    Exits 0 when every check passed (or could not run locally), 1 when one failed.
    """
    if not 0 < port < 65536:
        raise fail(f"--port must be 1..65535, got {port}", 2)
    try:
        results = probe_tls_endpoint(
            host,
            port,
            cert_dir,
            server_hostname=server_name,
            expect_client_cert=not client_cert_optional,
        )
    except ConnectionError as exc:
        raise fail(str(exc)) from None
    except PkiError as exc:
        raise fail(str(exc), 2) from None
    table = Table(title=f"TLS policy of {host}:{port}")
    for column in ("check", "result", "detail"):
        table.add_column(column)
    colour = {ProbeOutcome.PASSED: "green", ProbeOutcome.FAILED: "red", ProbeOutcome.SKIPPED: ""}
    for result in results:
        style = colour[result.outcome]
        shown = f"[{style}]{result.outcome}[/]" if style else str(result.outcome)
        table.add_row(str(result.check), shown, result.detail)
    out.print(table)
    if any(r.outcome is ProbeOutcome.FAILED for r in results):
        raise typer.Exit(1)


@app.command()
def mosquitto(
    out_dir: Annotated[
        Path,
        typer.Option("--out", help="Directory for mosquitto.conf, mosquitto.acl and broker/."),
    ],
    san: Annotated[
        list[str],
        typer.Option("--san", help="DNS name or IP address pumps use for the broker (repeatable)."),
    ],
    port: Annotated[int, typer.Option("--port", help="The broker's TLS port.")] = 8883,
    bind: Annotated[str, typer.Option("--bind", help="Address the broker listens on.")] = (
        "0.0.0.0"
    ),
    run_as: Annotated[
        str | None,
        typer.Option("--user", help="Account Mosquitto switches to when started as root."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a configuration already in --out.")
    ] = False,
    data_dir: DataDirOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Configure Mosquitto 2 as this server's production broker: a broker certificate from
    this CA, and a mosquitto.conf and ACL that enforce what the embedded broker enforces
    (mutual TLS with this CA and its CRL, the certificate CN as identity, per-pump topics).
    Then run `mosquitto -c OUT/mosquitto.conf` and `pumpguard up --broker mqtts://NAME:PORT`."""
    if not 0 < port < 65536:
        raise fail(f"--port must be a TCP port (1-65535), got {port}", 2)
    if (out_dir / CONF_FILE).exists() and not force:
        raise fail(f"{out_dir / CONF_FILE} exists; use --force to replace it")
    ca = _open(data_dir, passphrase_file)
    try:
        issued = ca.issue(CertKind.SERVER, BROKER_ID, sans=tuple(san))
    except PkiError as exc:
        raise fail(str(exc)) from None
    try:
        issued.write(out_dir / "broker")
        conf = write_mosquitto_config(
            out_dir,
            MosquittoSettings(
                cert_dir=out_dir / "broker",
                crl=ca.directory / CRL_FILE,
                port=port,
                bind_address=bind,
                server_idents=(INGEST_CLIENT_ID,),
                run_as_user=run_as,
            ),
        )
    except (OSError, ValueError) as exc:
        raise fail(f"cannot write the Mosquitto configuration: {exc}") from None
    out.print(
        f"broker certificate {issued.serial:X} for {', '.join(san)}; configuration in {conf}\n"
        f"start it with: mosquitto -c {conf}\n"
        f"then: pumpguard up --broker mqtts://{san[0]}:{port}\n"
        "Mosquitto reads the CRL when it starts: restart it after `pumpguard pki revoke`.",
        highlight=False,
        soft_wrap=True,
    )
