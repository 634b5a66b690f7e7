"""Opening a server's state from one data directory: database, audit key, CA.

Layout inside ``DATA_DIR``: ``pumpguard.db`` (unless ``PUMPGUARD_DATABASE_URL`` points
elsewhere), ``audit/checkpoint-key.pem`` (encrypted) and ``audit/checkpoint-key.pub.pem``,
``pki/`` (the CA, see ``pumpguard.pki``). The audit passphrase is found in the same order as the
CA's: a file given on the command line, else ``PUMPGUARD_AUDIT_PASSPHRASE``, else a generated
one stored next to the key (mode 0600) -- a lab convenience that the CLI warns about.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pumpguard.pki import (
    CertificateAuthority,
    PkiError,
    generate_passphrase,
    resolve_passphrase,
    store_passphrase,
)
from pumpguard.security_events import SecurityEventSink
from pumpguard.server.audit import AuditKeyError, CheckpointKey, public_key_path
from pumpguard.server.config import AUDIT_PASSPHRASE_ENV
from pumpguard.server.errors import CertificateAuthorityError
from pumpguard.server.pki_adapter import PkiDeviceCertificates

__all__ = [
    "SECURITY_EVENTS_FILE",
    "audit_key_dir",
    "audit_public_key_path",
    "open_audit_key",
    "open_certificates",
    "pki_dir",
    "resolve_audit_passphrase",
]

_MIN_PASSPHRASE = 12


def audit_key_dir(data_dir: Path) -> Path:
    return data_dir / "audit"


def audit_public_key_path(data_dir: Path) -> Path:
    return public_key_path(audit_key_dir(data_dir))


def pki_dir(data_dir: Path) -> Path:
    return data_dir / "pki"


def resolve_audit_passphrase(
    data_dir: Path, passphrase_file: Path | None = None, env: Mapping[str, str] | None = None
) -> bytes | None:
    """The given file, else the environment, else the stored file, else ``None``."""
    try:
        resolved = resolve_passphrase(
            audit_key_dir(data_dir), passphrase_file, env, env_var=AUDIT_PASSPHRASE_ENV
        )
    except PkiError as exc:
        raise AuditKeyError(str(exc)) from None
    return None if resolved is None else resolved.value


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
        passphrase = generate_passphrase()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        stored = store_passphrase(directory, passphrase)
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
