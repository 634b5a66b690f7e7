"""Where the CA passphrase comes from, in one order for every command and service.

Production keeps the passphrase (and the CA keys) offline or in an HSM; the embedded default
stores a generated one next to the CA so that a laptop lab works with one command. Both are
honest about which is in use: the stored file is reported by ``resolve_passphrase``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pumpguard.pki._files import atomic_write
from pumpguard.pki.errors import PassphraseError

__all__ = [
    "MIN_PASSPHRASE_BYTES",
    "PASSPHRASE_ENV",
    "PASSPHRASE_FILE",
    "PassphraseSource",
    "ResolvedPassphrase",
    "check_passphrase_strength",
    "generate_passphrase",
    "read_passphrase_file",
    "resolve_passphrase",
    "store_passphrase",
]

PASSPHRASE_ENV = "PUMPGUARD_CA_PASSPHRASE"
PASSPHRASE_FILE = "passphrase"
MIN_PASSPHRASE_BYTES = 12


class PassphraseSource(StrEnum):
    FILE = "file"
    ENVIRONMENT = "environment"
    STORED = "stored"


@dataclass(frozen=True)
class ResolvedPassphrase:
    value: bytes
    source: PassphraseSource

    def __repr__(self) -> str:
        return f"ResolvedPassphrase(source={self.source.value!r}, value=<hidden>)"


def check_passphrase_strength(passphrase: bytes) -> bytes:
    if len(passphrase) < MIN_PASSPHRASE_BYTES:
        raise PassphraseError(
            f"the CA passphrase is {len(passphrase)} bytes long; at least "
            f"{MIN_PASSPHRASE_BYTES} are required"
        )
    return passphrase


def generate_passphrase() -> bytes:
    """256 bits from the OS random source, printable so that it can be copied offline."""
    return secrets.token_urlsafe(32).encode("ascii")


def read_passphrase_file(path: Path) -> bytes:
    """The file's bytes without the trailing newline an editor or ``echo`` adds."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PassphraseError(f"cannot read passphrase file {path}: {exc.strerror}") from None
    data = data.rstrip(b"\r\n")
    if not data:
        raise PassphraseError(f"passphrase file {path} is empty")
    return data


def store_passphrase(directory: Path, passphrase: bytes) -> Path:
    """Keep a generated passphrase beside the keys it opens (mode 0600): a lab convenience."""
    path = directory / PASSPHRASE_FILE
    atomic_write(path, passphrase + b"\n", mode=0o600)
    return path


def resolve_passphrase(
    directory: Path,
    passphrase_file: Path | None,
    env: Mapping[str, str] | None = None,
    *,
    env_var: str = PASSPHRASE_ENV,
) -> ResolvedPassphrase | None:
    """``--passphrase-file``, else ``env_var``, else the file stored in ``directory``, else None.

    The CA's order by default; any other encrypted key kept in the data directory (the audit
    checkpoint key) is unlocked the same way under its own environment variable.
    """
    if passphrase_file is not None:
        return ResolvedPassphrase(read_passphrase_file(passphrase_file), PassphraseSource.FILE)
    environment = os.environ if env is None else env
    from_env = environment.get(env_var, "")
    if from_env:
        return ResolvedPassphrase(from_env.encode("utf-8"), PassphraseSource.ENVIRONMENT)
    stored = directory / PASSPHRASE_FILE
    if stored.exists():
        if stored.stat().st_mode & 0o077:
            raise PassphraseError(
                f"{stored} is readable by other users; restrict it with `chmod 600 {stored}`"
            )
        return ResolvedPassphrase(read_passphrase_file(stored), PassphraseSource.STORED)
    return None
