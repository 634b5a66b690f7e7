"""The legacy profile: a drug library loader with no signature, no origin and no version check.

This reproduces what the advisories describe for unsigned library and firmware paths (Hospira
CVE-2014-5406 and CVE-2015-3956, B. Braun CVE-2021-33885, BD CVE-2023-30562 and CVE-2023-30559,
Alaris Gateway CVE-2019-10959): whoever can put a file in front of the pump decides its limits.
It exists so that the attack catalogue can run the same attacks against both profiles; it is
explicit configuration, never a fallback of the secure client.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal

from pumpguard.clinical.library import DrugLibrary, LibraryError, LibraryIssue, parse_library

__all__ = ["LegacyLibraryLoader", "LegacyLoad"]


@dataclass(frozen=True, slots=True)
class LegacyLoad:
    """A library the legacy pump accepted, and whether a secure pump would have seen a red flag.

    ``downgrade`` records (for the evaluation, not for the pump, which ignores it) that the
    accepted library is older than the one it replaced.
    """

    library: DrugLibrary
    downgrade: bool


class LegacyLibraryLoader:
    """Accepts any file that parses as a drug library, from anyone, in any version order."""

    def load(self, data: bytes, installed: DrugLibrary | None = None) -> LegacyLoad:
        try:
            raw = json.loads(data.decode("utf-8"), parse_float=Decimal)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LibraryError(
                "pushed library", [LibraryIssue("", "", f"not JSON: {exc}")]
            ) from None
        library = parse_library(raw, "pushed library")
        downgrade = installed is not None and library.version < installed.version
        return LegacyLoad(library, downgrade)
