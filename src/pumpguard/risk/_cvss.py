"""A typed wrapper around the ``cvss`` library (which ships no type information)."""

from __future__ import annotations

from typing import Literal

from cvss import CVSS2, CVSS3  # type: ignore[import-untyped]
from cvss.exceptions import CVSSError  # type: ignore[import-untyped]

__all__ = ["CvssVectorError", "Scored", "metrics", "score"]

Version = Literal["2", "3"]


class CvssVectorError(ValueError):
    """A vector the ``cvss`` library rejects."""


class Scored:
    """Base and environmental scores of one vector, and its canonical spelling."""

    def __init__(self, base: float, environmental: float, vector: str) -> None:
        self.base = base
        self.environmental = environmental
        self.vector = vector


def _parse(vector: str, version: Version) -> object:
    try:
        return CVSS3(vector) if version == "3" else CVSS2(vector)
    except CVSSError as exc:
        raise CvssVectorError(str(exc)) from None


def metrics(vector: str, version: Version) -> dict[str, str]:
    """Metric name -> value, with the library's defaults for metrics not given."""
    parsed = _parse(vector, version)
    return {str(k): str(v) for k, v in getattr(parsed, "metrics").items()}  # noqa: B009


def score(vector: str, version: Version) -> Scored:
    parsed = _parse(vector, version)
    base, _temporal, environmental = getattr(parsed, "scores")()  # noqa: B009
    env = base if environmental is None else environmental
    return Scored(float(base), float(env), str(getattr(parsed, "clean_vector")()))  # noqa: B009
