"""Device model catalogue and the normalisation of the names hospitals write.

Inventories spell the same pump many ways ("Alaris PC Unit 8015", "BD Alaris 8015",
"Carefusion Alaris", "Hospira Plum A+", "ICU Medical Plum A+", "Plum A+ 3"). Names are
normalised (lower case, trademark signs dropped, "+" spelled "plus", punctuation as spaces),
the manufacturer is mapped to a canonical vendor (acquisitions included: Hospira and Smiths
Medical are ICU Medical today, CareFusion is BD), then the catalogue's patterns decide.
Anything the catalogue cannot place is *unknown* and reported, never dropped.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pumpguard.data import DATA_DIR

__all__ = [
    "CATALOGUE_FILE",
    "DeviceKind",
    "DeviceModel",
    "Identification",
    "ModelCatalogue",
    "TherapyRole",
    "load_catalogue",
    "normalise_text",
    "split_model_version",
]

CATALOGUE_FILE = DATA_DIR / "risk" / "models.yaml"

_MARKS = re.compile(r"[™®©]|\(tm\)|\(r\)", re.I)
_NON_WORD = re.compile(r"[^a-z0-9]+")
_VERSION_IN_MODEL = re.compile(
    r"(?:^|\s)(?:(?:software|sw|firmware|fw|version|ver)\s*)?v?(\d+(?:\.\d+)+[a-z]?)\s*$", re.I
)


class DeviceKind(StrEnum):
    INFUSION_PUMP = "infusion_pump"
    SYRINGE_PUMP = "syringe_pump"
    PCA_PUMP = "pca_pump"
    INSULIN_PUMP = "insulin_pump"
    INSULIN_REMOTE = "insulin_remote"
    INFUSION_MODULE = "infusion_module"
    GATEWAY = "gateway"
    SERVER_SOFTWARE = "server_software"


class TherapyRole(StrEnum):
    """How directly a device acts on therapy; drives the therapy-delivery impact."""

    DELIVERS = "delivers"
    COMMANDS = "commands"
    SUPPORTS = "supports"
    RECORDS = "records"


def _compile(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"bad pattern {pattern!r}: {exc}") from None
    return patterns


Key = Annotated[str, Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")]


class DeviceModel(BaseModel):
    """One model family as advisories and inventories name it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Key
    name: str = Field(min_length=1)
    vendors: list[Key] = Field(min_length=1)
    kind: DeviceKind
    role: TherapyRole
    patterns: list[str] = Field(min_length=1)
    weak_patterns: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)

    _check = field_validator("patterns", "weak_patterns", "exclude")(_compile)

    def matches(self, text: str, vendor: str | None) -> tuple[bool, bool]:
        """(matched, inferred): inferred when only a weak pattern matched."""
        if vendor is not None and vendor not in self.vendors:
            return False, False
        if any(re.search(p, text) for p in self.exclude):
            return False, False
        if any(re.search(p, text) for p in self.patterns):
            return True, False
        if vendor is not None and any(re.search(p, text) for p in self.weak_patterns):
            return True, True
        return False, False


class _CatalogueFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    vendors: dict[Key, list[str]]
    models: list[DeviceModel]


@dataclass(frozen=True, slots=True)
class Identification:
    """An inventory name placed in the catalogue."""

    model: DeviceModel
    vendor: str | None
    normalised: str
    inferred: bool


def normalise_text(text: str) -> str:
    """'BD Alaris™ PC-Unit 8015' -> 'bd alaris pc unit 8015'; 'Plum A+3' -> 'plum a plus 3'."""
    folded = unicodedata.normalize("NFKD", _MARKS.sub(" ", text))
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).lower()
    folded = folded.replace("+", " plus ").replace("&", " ")
    return " ".join(_NON_WORD.sub(" ", folded).split())


def split_model_version(model: str) -> tuple[str, str | None]:
    """'Sigma Spectrum 8.00.01' -> ('Sigma Spectrum', '8.00.01'); dotted versions only."""
    found = _VERSION_IN_MODEL.search(model.strip())
    if found is None or found.start() == 0:
        return model.strip(), None
    return model.strip()[: found.start()].strip(), found.group(1)


class ModelCatalogue:
    """The known models, in match order, and the vendor aliases."""

    def __init__(self, models: list[DeviceModel], vendors: dict[str, list[str]]) -> None:
        keys = [m.key for m in models]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"duplicate model keys: {', '.join(duplicates)}")
        unknown = sorted({v for m in models for v in m.vendors} - set(vendors))
        if unknown:
            raise ValueError(f"models name vendors that are not listed: {', '.join(unknown)}")
        self.models = tuple(models)
        self._by_key = {m.key: m for m in models}
        aliases = [(normalise_text(a), key) for key, names in vendors.items() for a in names]
        self._aliases = sorted(aliases, key=lambda item: -len(item[0]))

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def get(self, key: str) -> DeviceModel:
        return self._by_key[key]

    def vendor_of(self, manufacturer: str) -> str | None:
        """The canonical vendor a manufacturer column names, or None if not recognised."""
        text = normalise_text(manufacturer)
        for alias, key in self._aliases:
            if alias and re.search(rf"\b{re.escape(alias)}\b", text):
                return key
        return None

    def identify(self, manufacturer: str, model: str) -> Identification | None:
        vendor = self.vendor_of(manufacturer) if manufacturer.strip() else None
        if vendor is None:
            vendor = self.vendor_of(model)
        text = normalise_text(f"{manufacturer} {model}")
        for candidate in self.models:
            matched, inferred = candidate.matches(text, vendor)
            if matched:
                return Identification(candidate, vendor, text, inferred)
        return None


def parse_catalogue(data: Any, source: str = str(CATALOGUE_FILE)) -> ModelCatalogue:
    try:
        parsed = _CatalogueFile.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{source}: invalid model catalogue: {exc}") from None
    return ModelCatalogue(parsed.models, parsed.vendors)


def load_catalogue(path: Path | None = None) -> ModelCatalogue:
    if path is None:
        return _default_catalogue()
    return parse_catalogue(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))


@cache
def _default_catalogue() -> ModelCatalogue:
    return parse_catalogue(yaml.safe_load(CATALOGUE_FILE.read_text(encoding="utf-8")))
