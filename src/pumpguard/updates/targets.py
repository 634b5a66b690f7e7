"""What a signed update is: its kind, its name and version, and where it lives in the repository.

The version is carried twice on purpose: in the target path (so that every version is a distinct,
immutable file and a mirror can never overwrite one with another) and in the signed ``custom``
field of the target metadata (so that the pump can refuse an older version than it runs before
downloading anything; TUF's own rollback protection covers metadata versions, not the meaning of
a target).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "TargetDescription",
    "UpdateKind",
    "describe_target",
    "target_path",
    "validate_name",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}")


class UpdateKind(StrEnum):
    """The two kinds of update a pump receives, each in its own delegated role."""

    DRUG_LIBRARY = "drug-library"
    FIRMWARE = "firmware"

    @property
    def role(self) -> str:
        """The delegated targets role that signs this kind."""
        return "drug-libraries" if self is UpdateKind.DRUG_LIBRARY else "firmware"

    @property
    def prefix(self) -> str:
        return f"{self.role}/"

    @property
    def suffix(self) -> str:
        return ".json" if self is UpdateKind.DRUG_LIBRARY else ".bin"


def validate_name(name: str) -> str:
    """A library id or firmware product name usable in a path: no separators, no dots."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} cannot name an update: use 1-80 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def target_path(kind: UpdateKind, name: str, version: int) -> str:
    """``drug-libraries/<library_id>-<version>.json`` or ``firmware/<product>-<version>.bin``."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"an update version is an integer >= 1, got {version!r}")
    return f"{kind.prefix}{validate_name(name)}-{version}{kind.suffix}"


@dataclass(frozen=True, slots=True)
class TargetDescription:
    """A target as its signers described it: the facts a pump decides on before downloading."""

    path: str
    kind: UpdateKind
    name: str
    version: int
    length: int
    sha256: str

    def custom(self) -> dict[str, Any]:
        """The ``custom`` object of the TUF target entry."""
        return {"kind": self.kind.value, "name": self.name, "version": self.version}


def describe_target(
    path: str, length: int, hashes: dict[str, str], custom: Any
) -> TargetDescription:
    """Read a target entry back; raise ``ValueError`` naming what does not fit our convention."""
    if not isinstance(custom, dict):
        raise ValueError(f"target {path} has no pumpguard description in its custom metadata")
    kind_text, name, version = custom.get("kind"), custom.get("name"), custom.get("version")
    try:
        kind = UpdateKind(str(kind_text))
    except ValueError:
        raise ValueError(f"target {path} has unknown kind {kind_text!r}") from None
    if not isinstance(name, str):
        raise ValueError(f"target {path} has no name in its custom metadata")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"target {path} has no integer version in its custom metadata")
    expected = target_path(kind, name, version)
    if path != expected:
        raise ValueError(f"target {path} describes itself as {expected}")
    sha256 = hashes.get("sha256")
    if sha256 is None:
        raise ValueError(f"target {path} has no sha256 hash")
    return TargetDescription(path, kind, name, version, length, sha256)
