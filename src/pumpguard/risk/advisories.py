"""The advisory knowledge base: real pump advisories as validated data files.

One YAML file per advisory under ``pumpguard/data/advisories/``. Every file is checked
strictly: unknown fields, malformed ids, CWE or CVE numbers, CVSS vectors the ``cvss``
library rejects, a published base score that disagrees with its vector, products that name
models the catalogue does not know, or vulnerabilities that name products the advisory does
not list are errors located by file and field. Facts that could not be checked against the
advisory are kept but marked ``verified: false`` with a note saying why.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pumpguard.data import DATA_DIR
from pumpguard.risk._cvss import CvssVectorError, metrics, score
from pumpguard.risk.models import ModelCatalogue, load_catalogue
from pumpguard.risk.versions import PumpVersion, VersionError, parse_version

__all__ = [
    "ADVISORIES_DIR",
    "Advisory",
    "AdvisoryError",
    "AdvisoryIssue",
    "KnowledgeBase",
    "Mitigation",
    "Product",
    "Source",
    "Threat",
    "VersionRange",
    "Vulnerability",
    "Weakness",
    "advisory_json_schema",
    "load_knowledge_base",
    "parse_advisory",
]

ADVISORIES_DIR = DATA_DIR / "advisories"

AdvisoryId = Annotated[str, Field(pattern=r"^ICS(MA|A)-\d{2}-\d{3}-\d{2}[A-Z]?$")]
CveId = Annotated[str, Field(pattern=r"^CVE-\d{4}-\d{4,}$")]
CweId = Annotated[str, Field(pattern=r"^CWE-\d{1,4}$")]
Text = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Threat(StrEnum):
    """The three threats of SP 1800-8, each tied to one CVSS impact metric."""

    PHI_DISCLOSURE = "phi_disclosure"
    DOSE_CHANGE = "dose_change"
    THERAPY_DISRUPTION = "therapy_disruption"

    @property
    def label(self) -> str:
        return {
            "phi_disclosure": "PHI disclosure",
            "dose_change": "Dose change",
            "therapy_disruption": "Therapy disruption",
        }[self.value]

    @property
    def cvss_metric(self) -> str:
        return {"phi_disclosure": "C", "dose_change": "I", "therapy_disruption": "A"}[self.value]


class Weakness(StrEnum):
    """Vulnerability classes; the control catalogue says which controls address which."""

    MISSING_AUTHENTICATION = "missing_authentication"
    REPLAY = "replay"
    WEAK_PAIRING = "weak_pairing"
    CLEARTEXT_TRANSMISSION = "cleartext_transmission"
    HARDCODED_CREDENTIALS = "hardcoded_credentials"
    OPEN_SERVICES = "open_services"
    UNSIGNED_DATA = "unsigned_data"
    UNSIGNED_FIRMWARE = "unsigned_firmware"
    NO_CERTIFICATE_VALIDATION = "no_certificate_validation"
    MEMORY_CORRUPTION = "memory_corruption"
    INPUT_VALIDATION = "input_validation"
    DENIAL_OF_SERVICE = "denial_of_service"
    DATA_AT_REST = "data_at_rest"
    WEB_APPLICATION = "web_application"
    PHYSICAL_ACCESS = "physical_access"
    OUTDATED_COMPONENT = "outdated_component"


class VersionRange(_Model):
    """Exactly one of: all versions, a list of exact versions, or a bounded range."""

    all: bool = False
    exactly: list[Text] | None = None
    at_least: Text | None = None
    at_most: Text | None = None
    below: Text | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> VersionRange:
        bounded = any(v is not None for v in (self.at_least, self.at_most, self.below))
        forms = [self.all, self.exactly is not None, bounded]
        if sum(forms) != 1:
            raise ValueError("give exactly one of 'all: true', 'exactly', or bounds")
        if self.at_most is not None and self.below is not None:
            raise ValueError("give 'at_most' or 'below', not both")
        if self.exactly is not None and not self.exactly:
            raise ValueError("'exactly' needs at least one version")
        for name in ("at_least", "at_most", "below"):
            value = getattr(self, name)
            if value is not None:
                try:
                    parse_version(value)
                except VersionError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        for value in self.exactly or []:
            try:
                parse_version(value)
            except VersionError as exc:
                raise ValueError(f"exactly: {exc}") from None
        low = None if self.at_least is None else parse_version(self.at_least)
        high_text = self.at_most or self.below
        high = None if high_text is None else parse_version(high_text)
        if low is not None and high is not None:
            if not low.comparable(high):
                raise ValueError(f"bounds {low} and {high} use different version schemes")
            if high < low or (self.below is not None and high == low):
                raise ValueError(f"empty range: {low} .. {high}")
        return self

    def contains(self, version: PumpVersion) -> bool | None:
        """True or False when decidable; None when the version uses another scheme."""
        if self.all:
            return True
        if self.exactly is not None:
            listed = [parse_version(v) for v in self.exactly]
            if not any(v.comparable(version) for v in listed):
                return None
            return version in listed
        bounds = [parse_version(v) for v in (self.at_least, self.at_most, self.below) if v]
        if not all(b.comparable(version) for b in bounds):
            return None
        if self.at_least is not None and version < parse_version(self.at_least):
            return False
        if self.at_most is not None and version > parse_version(self.at_most):
            return False
        return not (self.below is not None and version >= parse_version(self.below))

    def describe(self) -> str:
        if self.all:
            return "all versions"
        if self.exactly is not None:
            return "versions " + ", ".join(self.exactly)
        parts = []
        if self.at_least is not None:
            parts.append(f">= {self.at_least}")
        if self.at_most is not None:
            parts.append(f"<= {self.at_most}")
        if self.below is not None:
            parts.append(f"< {self.below}")
        return " and ".join(parts)


class Product(_Model):
    """An affected product as the advisory lists it, tied to a catalogue model."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    model: Annotated[str, Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")]
    name: Text
    versions: list[VersionRange] = Field(min_length=1)
    fixed_in: str | None = None
    condition: str | None = None
    verified: bool = True
    note: str | None = None

    def affected(self, version: PumpVersion | None) -> bool | None:
        """True, False, or None when the version is missing or in another scheme."""
        if any(r.all for r in self.versions):
            return True
        if version is None:
            return None
        answers = [r.contains(version) for r in self.versions]
        if any(a is True for a in answers):
            return True
        if any(a is False for a in answers):
            return False
        return None


class Vulnerability(_Model):
    cve: CveId
    title: Text
    cwe: CweId
    cwe_name: Text
    cvss_v3: str | None = None
    cvss_v3_base: float | None = None
    cvss_v2: str | None = None
    cvss_v2_base: float | None = None
    products: list[str] | None = None
    weaknesses: list[Weakness] = Field(min_length=1)
    preconditions: list[Annotated[str, Field(pattern=r"^dev\.[a-z_]+$")]] = Field(
        default_factory=list
    )
    verified: bool = True
    note: str | None = None

    @field_validator("cvss_v3")
    @classmethod
    def _v3(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^CVSS:3\.[01]/", value):
            raise ValueError("a CVSS v3 vector starts with 'CVSS:3.0/' or 'CVSS:3.1/'")
        try:
            score(value, "3")
        except CvssVectorError as exc:
            raise ValueError(f"invalid CVSS v3 vector: {exc}") from None
        return value

    @field_validator("cvss_v2")
    @classmethod
    def _v2(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            score(value, "2")
        except CvssVectorError as exc:
            raise ValueError(f"invalid CVSS v2 vector: {exc}") from None
        return value

    @model_validator(mode="after")
    def _scores(self) -> Vulnerability:
        if self.cvss_v3 is None and self.cvss_v2 is None:
            raise ValueError("a vulnerability needs a CVSS v3 or v2 vector")
        for vector, base, kind in (
            (self.cvss_v3, self.cvss_v3_base, "3"),
            (self.cvss_v2, self.cvss_v2_base, "2"),
        ):
            if (vector is None) != (base is None):
                raise ValueError("give a vector and its published base score together")
            if vector is not None and base is not None:
                computed = score(vector, kind).base  # type: ignore[arg-type]
                if abs(computed - base) > 0.05:
                    raise ValueError(
                        f"published base score {base} does not match {vector} ({computed})"
                    )
        return self

    @property
    def base_score(self) -> float:
        if self.cvss_v3_base is not None:
            return self.cvss_v3_base
        assert self.cvss_v2_base is not None
        return self.cvss_v2_base

    @property
    def vector(self) -> str:
        vector = self.cvss_v3 or self.cvss_v2
        assert vector is not None
        return vector

    def threats(self) -> list[Threat]:
        """The SP 1800-8 threats this vulnerability can realise: its non-zero C, I, A."""
        values = metrics(self.vector, self.cvss_version)
        return [t for t in Threat if values.get(t.cvss_metric, "N") != "N"]

    @property
    def cvss_version(self) -> Literal["2", "3"]:
        return "3" if self.cvss_v3 is not None else "2"


class Source(_Model):
    id: Text
    title: Text
    publisher: Text
    note: str | None = None


class MitigationBy(StrEnum):
    VENDOR = "vendor"
    CISA = "cisa"
    FDA = "fda"


class Mitigation(_Model):
    by: MitigationBy
    text: Text


class AdvisoryKind(StrEnum):
    HOSPITAL = "hospital"
    INSULIN = "insulin"


class Advisory(_Model):
    """One ICS(M)A advisory: products, versions, vulnerabilities, mitigations, sources."""

    id: AdvisoryId
    title: Text
    vendor: Text
    kind: AdvisoryKind
    published: dt.date
    revision: str | None = None
    sources: list[Source] = Field(min_length=1)
    products: list[Product] = Field(min_length=1)
    vulnerabilities: list[Vulnerability] = Field(min_length=1)
    mitigations: list[Mitigation] = Field(min_length=1)
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Advisory:
        ids = [p.id for p in self.products]
        if len(set(ids)) != len(ids):
            raise ValueError("product ids must be unique within an advisory")
        cves = [v.cve for v in self.vulnerabilities]
        if len(set(cves)) != len(cves):
            raise ValueError("a CVE is listed twice")
        for vuln in self.vulnerabilities:
            missing = sorted(set(vuln.products or []) - set(ids))
            if missing:
                raise ValueError(f"{vuln.cve} names unknown products: {', '.join(missing)}")
        return self

    def vulnerabilities_for(self, product: Product) -> list[Vulnerability]:
        return [v for v in self.vulnerabilities if v.products is None or product.id in v.products]

    @property
    def verified(self) -> bool:
        return all(p.verified for p in self.products) and all(
            v.verified for v in self.vulnerabilities
        )


@dataclass(frozen=True, slots=True)
class AdvisoryIssue:
    """One problem in one advisory file, located by field."""

    source: str
    field: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.source}: {self.field}: {self.message}"
            if self.field
            else (f"{self.source}: {self.message}")
        )


class AdvisoryError(ValueError):
    """The knowledge base (or one file of it) is not valid; every issue is listed."""

    def __init__(self, issues: Sequence[AdvisoryIssue]) -> None:
        self.issues = tuple(issues)
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        super().__init__(f"{len(self.issues)} problem(s) in the advisory knowledge base\n{lines}")


def _field(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def parse_advisory(
    data: Any, source: str = "advisory", catalogue: ModelCatalogue | None = None
) -> Advisory:
    """Validate one decoded advisory file; raise ``AdvisoryError`` with located issues."""
    catalogue = catalogue or load_catalogue()
    try:
        advisory = Advisory.model_validate(data)
    except ValidationError as exc:
        issues = [
            AdvisoryIssue(
                source, _field(tuple(e["loc"])), str(e["msg"]).removeprefix("Value error, ")
            )
            for e in exc.errors()
        ]
        raise AdvisoryError(issues) from None
    issues = [
        AdvisoryIssue(source, f"products[{i}].model", f"unknown catalogue model {p.model!r}")
        for i, p in enumerate(advisory.products)
        if p.model not in catalogue
    ]
    if issues:
        raise AdvisoryError(issues)
    return advisory


class KnowledgeBase:
    """All advisories, by id, in publication order."""

    def __init__(self, advisories: Sequence[Advisory]) -> None:
        ids = [a.id for a in advisories]
        if len(set(ids)) != len(ids):
            raise AdvisoryError([AdvisoryIssue("knowledge base", "id", "duplicate advisory id")])
        self.advisories = tuple(sorted(advisories, key=lambda a: (a.published, a.id)))
        self._by_id = {a.id: a for a in self.advisories}

    def __iter__(self) -> Iterator[Advisory]:
        return iter(self.advisories)

    def __len__(self) -> int:
        return len(self.advisories)

    def get(self, advisory_id: str) -> Advisory:
        return self._by_id[advisory_id]

    def products_for(self, model_key: str) -> Iterator[tuple[Advisory, Product]]:
        for advisory in self.advisories:
            for product in advisory.products:
                if product.model == model_key:
                    yield advisory, product


def load_knowledge_base(
    directory: Path | None = None, catalogue: ModelCatalogue | None = None
) -> KnowledgeBase:
    """Read every ``*.yaml`` advisory; all problems of all files are reported together."""
    if directory is None:
        return _default_knowledge_base()
    return _load(directory, catalogue or load_catalogue())


def _load(directory: Path, catalogue: ModelCatalogue) -> KnowledgeBase:
    advisories: list[Advisory] = []
    issues: list[AdvisoryIssue] = []
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise AdvisoryError([AdvisoryIssue(str(directory), "", "no advisory files")])
    for path in files:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            issues.append(AdvisoryIssue(path.name, "", f"cannot read: {exc}"))
            continue
        try:
            advisory = parse_advisory(data, path.name, catalogue)
        except AdvisoryError as exc:
            issues.extend(exc.issues)
            continue
        expected = advisory.id.lower() + ".yaml"
        if path.name != expected:
            issues.append(AdvisoryIssue(path.name, "id", f"file should be named {expected}"))
        advisories.append(advisory)
    if issues:
        raise AdvisoryError(issues)
    return KnowledgeBase(advisories)


@cache
def _default_knowledge_base() -> KnowledgeBase:
    return _load(ADVISORIES_DIR, load_catalogue())


def advisory_json_schema() -> dict[str, Any]:
    """The JSON Schema of one advisory file, as published in ``docs/risk/``."""
    schema = Advisory.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://pumpguard.invalid/schemas/advisory-1.json"
    return schema
