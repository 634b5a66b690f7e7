"""Opening a server's state from one data directory: database, audit key, CA.

Layout inside ``DATA_DIR``: ``pumpguard.db`` (unless ``PUMPGUARD_DATABASE_URL`` points
elsewhere), ``audit/checkpoint-key.pem`` (encrypted) and ``audit/checkpoint-key.pub.pem``,
``pki/`` (the CA, see ``pumpguard.pki``). The audit passphrase is found in the same order as the
CA's: a file given on the command line, else ``PUMPGUARD_AUDIT_PASSPHRASE``, else a generated
one stored next to the key (mode 0600) -- a lab convenience that the CLI warns about.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from pumpguard.pki import CertificateAuthority, PkiError, resolve_passphrase
from pumpguard.security_events import SecurityEventSink
from pumpguard.server.audit import AuditKeyError, CheckpointKey, public_key_path
from pumpguard.server.config import AUDIT_PASSPHRASE_ENV
from pumpguard.server.errors import CertificateAuthorityError
from pumpguard.server.pki_adapter import PkiDeviceCertificates

__all__ = [
    "AUDIT_PASSPHRASE_FILE",
    "SECURITY_EVENTS_FILE",
    "audit_key_dir",
    "audit_public_key_path",
    "open_audit_key",
    "open_certificates",
    "pki_dir",
    "resolve_audit_passphrase",
]

AUDIT_PASSPHRASE_FILE = "passphrase"
_MIN_PASSPHRASE = 12


def audit_key_dir(data_dir: Path) -> Path:
    return data_dir / "audit"


def audit_public_key_path(data_dir: Path) -> Path:
    return public_key_path(audit_key_dir(data_dir))


def pki_dir(data_dir: Path) -> Path:
    return data_dir / "pki"


def _read_secret_file(path: Path, check_mode: bool) -> bytes:
    try:
        if check_mode and path.stat().st_mode & 0o077:
            raise AuditKeyError(f"{path} is readable by other users; run `chmod 600 {path}`")
        data = path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise AuditKeyError(f"cannot read the passphrase file {path}: {exc.strerror}") from None
    if not data:
        raise AuditKeyError(f"the passphrase file {path} is empty")
    return data


def resolve_audit_passphrase(
    data_dir: Path, passphrase_file: Path | None = None, env: Mapping[str, str] | None = None
) -> bytes | None:
    """The given file, else the environment, else the stored file, else ``None``."""
    if passphrase_file is not None:
        return _read_secret_file(passphrase_file, check_mode=False)
    value = (os.environ if env is None else env).get(AUDIT_PASSPHRASE_ENV, "")
    if value:
        return value.encode("utf-8")
    stored = audit_key_dir(data_dir) / AUDIT_PASSPHRASE_FILE
    return _read_secret_file(stored, check_mode=True) if stored.exists() else None


def open_audit_key(
    data_dir: Path,
    passphrase_file: Path | None = None,
    *,
    create: bool = False,
    env: Mapping[str, str] | None = None,
) -> tuple[CheckpointKey, Path | None]:
    """Load the checkpoint key (creating it when ``create``); the path is set when a generated
    passphrase had to be stored, so the caller can say so."""
    directory = audit_key_dir(data_dir)
    exists = (directory / "checkpoint-key.pem").exists()
    passphrase = resolve_audit_passphrase(data_dir, passphrase_file, env)
    if exists:
        if passphrase is None:
            raise AuditKeyError(
                f"no audit passphrase: give a passphrase file or set {AUDIT_PASSPHRASE_ENV} "
                f"(nothing stored in {directory})"
            )
        return CheckpointKey.load(directory, passphrase), None
    if not create:
        raise AuditKeyError(
            f"no audit key in {directory}; `pumpguard admin create` sets up a data directory"
        )
    stored: Path | None = None
    if passphrase is None:
        passphrase = secrets.token_urlsafe(32).encode("ascii")
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        stored = directory / AUDIT_PASSPHRASE_FILE
        fd = os.open(stored, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(passphrase + b"\n")
    elif len(passphrase) < _MIN_PASSPHRASE:
        raise AuditKeyError(f"the audit passphrase must have at least {_MIN_PASSPHRASE} bytes")
    return CheckpointKey.create(directory, passphrase), stored


def open_certificates(
    data_dir: Path, events: SecurityEventSink | None = None
) -> PkiDeviceCertificates | None:
    """The CA of this data directory, or ``None`` when none was initialised."""
    directory = pki_dir(data_dir)
    if not CertificateAuthority.is_initialised(directory):
        return None
    try:
        resolved = resolve_passphrase(directory, None)
        if resolved is None:
            raise CertificateAuthorityError(
                f"the CA in {directory} needs its passphrase (PUMPGUARD_CA_PASSPHRASE)"
            )
        return PkiDeviceCertificates(
            CertificateAuthority.open(directory, resolved.value, events=events)
        )
    except PkiError as exc:
        raise CertificateAuthorityError(f"cannot open the CA in {directory}: {exc}") from None


SECURITY_EVENTS_FILE = "security-events.jsonl"
