"""Software versions as pump vendors write them, ordered correctly.

Plain dotted releases ("12.1.1", "9.33.1", "8.00.01") are read with ``packaging.version``,
so leading zeros and trailing zeros mean what they mean in PEP 440 ("8.00.01" == "8.0.1",
"1.6" == "1.6.0"). Vendor formats that PEP 440 would misread fall back to a tokeniser:

* a letter suffix is a *later* revision, not a pre-release: Medtronic "2.4A" > "2.4"
  (PEP 440 would read "2.4a" as an alpha of 2.4, the wrong way round);
* "V14.5", "v20D29", "Version 2.6A", "SW 1.6" lose their prefix;
* build markers and mixed tokens ("1.1.3 MR Build 11", "028U000061", "L81") become
  alternating number and word components compared one by one, numbers numerically.

Two versions are *comparable* only when they start alike (both with a number, or both with
the same word) and do not use different separator words at the same place: "L81" and
"028U000061" are two B. Braun numbering schemes, "686E" and "028U000061" differ too, and
neither is before the other. Comparing incomparable versions raises ``VersionError``;
matching treats
such a version as "cannot tell" rather than guessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from packaging.version import InvalidVersion, Version

__all__ = ["PumpVersion", "VersionError", "parse_version"]

_PREFIX = re.compile(r"^(?:software|firmware|version|ver|rev|sw|fw)?[\s.:_-]*v?(?=[\s.]*\w)", re.I)
_RELEASE = re.compile(r"^\d+(?:\.\d+)*$")
_TOKEN = re.compile(r"\d+|[a-z]+")

Component = tuple[int, int | str]
"""(0, number) or (1, word): numbers sort before words at the same position."""


class VersionError(ValueError):
    """A version string that cannot be read, or two versions that cannot be compared."""


def _trim(components: list[Component]) -> tuple[Component, ...]:
    while components and components[-1] == (0, 0):
        components.pop()
    return tuple(components)


@total_ordering
@dataclass(frozen=True, slots=True)
class PumpVersion:
    """A parsed version; ``text`` keeps the spelling it came from."""

    text: str
    key: tuple[Component, ...]
    pep440: bool

    @property
    def scheme(self) -> int | str:
        """What the version starts with: 0 for a number, else its leading word."""
        return 0 if not self.key or self.key[0][0] == 0 else self.key[0][1]

    def comparable(self, other: PumpVersion) -> bool:
        """Same leading kind, and no differing *separator* words at the same position.

        "2.4A" and "2.4B" compare (a trailing letter is a revision); "686E" and
        "028U000061" do not ("U" separates two numbers: another numbering scheme).
        """
        if self.scheme != other.scheme:
            return False
        for i, (mine, theirs) in enumerate(zip(self.key, other.key, strict=False)):
            if mine[0] == theirs[0] == 1 and mine[1] != theirs[1]:
                inner = i + 1 < len(self.key) or i + 1 < len(other.key)
                if inner:
                    return False
        return True

    def _check(self, other: object) -> PumpVersion:
        if not isinstance(other, PumpVersion):
            raise TypeError(f"cannot compare a version with {type(other).__name__}")
        if not self.comparable(other):
            raise VersionError(f"versions {self.text!r} and {other.text!r} use different schemes")
        return other

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PumpVersion) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __lt__(self, other: object) -> bool:
        return self.key < self._check(other).key

    def __str__(self) -> str:
        return self.text


def parse_version(text: str) -> PumpVersion:
    """Read a vendor version string; raise ``VersionError`` when there is nothing to read."""
    if not isinstance(text, str):
        raise VersionError(f"a version must be text, got {type(text).__name__}")
    original = text.strip()
    body = _PREFIX.sub("", original.lower(), count=1).strip()
    if not body or not any(ch.isdigit() for ch in body):
        raise VersionError(f"{original!r} is not a version (no number in it)")
    if _RELEASE.match(body):
        try:
            release = Version(body).release
        except InvalidVersion:  # pragma: no cover - the pattern above only admits releases
            raise VersionError(f"{original!r} is not a version") from None
        return PumpVersion(original, _trim([(0, n) for n in release]), True)
    tokens = _TOKEN.findall(body)
    if not tokens or re.search(r"[^a-z0-9.\s_()/+-]", body):
        raise VersionError(f"{original!r} is not a version")
    components: list[Component] = [(0, int(t)) if t.isdigit() else (1, t) for t in tokens]
    return PumpVersion(original, _trim(components), False)
