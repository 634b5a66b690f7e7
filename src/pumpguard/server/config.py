"""Where the server keeps its data and the knobs that trade security against cost.

Production defaults are the only defaults: tests that need cheaper password hashing say so
explicitly with ``Argon2Parameters(...)``, so no shortcut can leak into a deployment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "AUDIT_PASSPHRASE_ENV",
    "DATABASE_URL_ENV",
    "Argon2Parameters",
    "ServerSettings",
    "database_url",
    "normalise_database_url",
]

DATABASE_URL_ENV = "PUMPGUARD_DATABASE_URL"
AUDIT_PASSPHRASE_ENV = "PUMPGUARD_AUDIT_PASSPHRASE"
_DATABASE_FILE = "pumpguard.db"


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    """argon2id cost; the defaults are RFC 9106's second recommended option (64 MiB, t=3)."""

    time_cost: int = 3
    memory_cost_kib: int = 65_536
    parallelism: int = 4

    def __post_init__(self) -> None:
        if (
            self.time_cost < 1
            or self.memory_cost_kib < 8 * self.parallelism
            or self.parallelism < 1
        ):
            raise ValueError("argon2 parameters out of range")


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Security policy of one server; every duration is in integer milliseconds."""

    argon2: Argon2Parameters = field(default_factory=Argon2Parameters)
    session_lifetime_ms: int = 8 * 3_600_000
    session_idle_ms: int = 15 * 60_000
    lockout_threshold: int = 5
    lockout_base_ms: int = 60_000
    lockout_max_ms: int = 3_600_000
    totp_issuer: str = "pumpguard"
    audit_checkpoint_every: int = 32
    pump_offline_after_ms: int = 120_000

    def __post_init__(self) -> None:
        for name in ("session_lifetime_ms", "session_idle_ms", "lockout_base_ms", "lockout_max_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.lockout_threshold < 1 or self.audit_checkpoint_every < 1:
            raise ValueError("lockout_threshold and audit_checkpoint_every must be at least 1")


def normalise_database_url(url: str) -> str:
    """Map ``postgresql://`` URLs onto the driver that is installed (psycopg 3)."""
    url = url.strip()
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def database_url(data_dir: Path) -> str:
    """``PUMPGUARD_DATABASE_URL`` when set, else the SQLite file inside ``data_dir``."""
    from_env = os.environ.get(DATABASE_URL_ENV, "").strip()
    if from_env:
        return normalise_database_url(from_env)
    return f"sqlite:///{(data_dir / _DATABASE_FILE).resolve()}"
