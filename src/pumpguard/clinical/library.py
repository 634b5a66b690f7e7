"""The drug library: a versioned document of care areas and drug entries with dosing limits.

The library is the asset SP 1800-8 protects ("drug library dosing limits"). It is parsed
strictly: unknown fields, unknown units, limits out of order or a drug listed twice are errors
that name the care area, the drug and the field, because a pharmacist fixing a library needs to
know exactly where to look, and a pump must never run on a library it half understood.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pumpguard.clinical.dosing import Concentration
from pumpguard.clinical.units import (
    AmountUnit,
    DoseUnit,
    UnitError,
    parse_amount_unit,
    parse_dose_unit,
)

__all__ = [
    "FORMAT",
    "BolusRule",
    "CareArea",
    "ConcentrationSpec",
    "DrugEntry",
    "DrugLibrary",
    "LibraryError",
    "LibraryIssue",
    "Limits",
    "PcaRule",
    "PumpKind",
    "Source",
    "WeightRange",
    "library_json_schema",
    "load_library",
    "parse_library",
]

FORMAT = "pumpguard.drug-library/1"


def _to_decimal(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("must be a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("must be a finite number") from None
    if not number.is_finite():
        raise ValueError("must be a finite number")
    return number


def _to_json_number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


Number = Annotated[
    Decimal,
    BeforeValidator(_to_decimal),
    PlainSerializer(_to_json_number, when_used="json"),
    WithJsonSchema({"type": "number"}),
]
NonNegative = Annotated[Number, Field(ge=0), WithJsonSchema({"type": "number", "minimum": 0})]
Positive = Annotated[Number, Field(gt=0), WithJsonSchema({"type": "number", "exclusiveMinimum": 0})]
Name = Annotated[str, Field(min_length=1, max_length=80, pattern=r"\S")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class PumpKind(StrEnum):
    """The pump types a drug entry may be used on."""

    LVP = "lvp"
    SYRINGE = "syringe"
    PCA = "pca"


class Limits(_Model):
    """Soft limits warn and need an override reason; hard limits cannot be crossed."""

    hard_min: NonNegative | None = None
    soft_min: NonNegative | None = None
    soft_max: NonNegative | None = None
    hard_max: NonNegative | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Limits:
        chain = [
            (name, value)
            for name in ("hard_min", "soft_min", "soft_max", "hard_max")
            if (value := getattr(self, name)) is not None
        ]
        for (low_name, low), (high_name, high) in itertools.pairwise(chain):
            if low > high:
                raise ValueError(f"{high_name} ({high}) is below {low_name} ({low})")
        return self


class _UpperBounded(Limits):
    @model_validator(mode="after")
    def _has_hard_max(self) -> _UpperBounded:
        if self.hard_max is None:
            raise ValueError(
                "hard_max is required: an entry without an upper hard limit is no limit"
            )
        return self


class _LowerBounded(Limits):
    @model_validator(mode="after")
    def _has_hard_min(self) -> _LowerBounded:
        if self.hard_min is None:
            raise ValueError("hard_min is required: here too little is the dangerous direction")
        return self


class ConcentrationSpec(_Model):
    """``amount`` ``unit`` in ``volume_ml`` mL, as on the bag or syringe label."""

    amount: Positive
    unit: str
    volume_ml: Positive

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, value: str) -> str:
        try:
            unit = parse_amount_unit(value)
        except UnitError as exc:
            raise ValueError(str(exc)) from None
        if unit is AmountUnit.ML:
            raise ValueError("a concentration's amount must be a drug amount, not mL")
        return unit.text

    def to_concentration(self) -> Concentration:
        return Concentration(self.amount, parse_amount_unit(self.unit), self.volume_ml)

    def __str__(self) -> str:
        return str(self.to_concentration())


class WeightRange(_Model):
    """Patients this entry is meant for; outside it the entry must not be used."""

    min_kg: Positive
    max_kg: Positive

    @model_validator(mode="after")
    def _ordered(self) -> WeightRange:
        if self.min_kg > self.max_kg:
            raise ValueError(f"max_kg ({self.max_kg}) is below min_kg ({self.min_kg})")
        return self


def _dose_unit(value: str) -> DoseUnit:
    try:
        return parse_dose_unit(value)
    except UnitError as exc:
        raise ValueError(str(exc)) from None


def _one_off_unit(value: str) -> str:
    unit = _dose_unit(value)
    if unit.is_rate:
        raise ValueError(f"{unit} is a rate; a one-off dose unit has no time base (e.g. 'mg')")
    return str(unit)


class _OneOffRule(_Model):
    """A rule for one-off doses (bolus, PCA demand), whose unit has no time base."""

    dose_unit: str

    @field_validator("dose_unit")
    @classmethod
    def _one_off(cls, value: str) -> str:
        return _one_off_unit(value)

    @property
    def unit(self) -> DoseUnit:
        return parse_dose_unit(self.dose_unit)


class BolusRule(_OneOffRule):
    """A clinician bolus (or loading dose) from the running infusion's container."""

    dose: _UpperBounded
    rate_ml_h: Limits | None = None


class PcaRule(_OneOffRule):
    """Patient-controlled analgesia: demand dose, lockout and a cumulative hourly limit."""

    demand_dose: _UpperBounded
    lockout_min: _LowerBounded
    hourly_limit: _UpperBounded
    loading_dose: Limits | None = None


class DrugEntry(_Model):
    """One drug at one concentration in one care area, with its limits."""

    name: Name
    code: Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9._:-]+$")]
    concentration: ConcentrationSpec | None = None
    dose_unit: str
    continuous: _UpperBounded
    bolus: BolusRule | None = None
    pca: PcaRule | None = None
    vtbi_ml: Limits | None = None
    max_duration_min: Positive | None = None
    weight_kg: WeightRange | None = None
    pump_kinds: list[PumpKind] = Field(
        default_factory=lambda: [PumpKind.LVP, PumpKind.SYRINGE], min_length=1
    )
    sources: list[str] = Field(default_factory=list)
    note: str | None = None

    @field_validator("dose_unit")
    @classmethod
    def _rate_unit(cls, value: str) -> str:
        unit = _dose_unit(value)
        if not unit.is_rate:
            raise ValueError(f"{unit} is not a rate; a continuous dose unit needs /min or /h")
        return str(unit)

    @model_validator(mode="after")
    def _consistent(self) -> DrugEntry:
        unit = self.unit
        rules: list[tuple[str, DoseUnit]] = [("dose_unit", unit)]
        if self.bolus is not None:
            rules.append(("bolus.dose_unit", self.bolus.unit))
        if self.pca is not None:
            rules.append(("pca.dose_unit", self.pca.unit))
        for field, rule_unit in rules:
            if rule_unit.amount is AmountUnit.ML:
                continue
            if self.concentration is None:
                raise _at(field, f"{field} {rule_unit} needs a concentration")
            conc_unit = parse_amount_unit(self.concentration.unit)
            if conc_unit.dimension != rule_unit.dimension:
                raise _at(
                    field, f"{field} {rule_unit} does not match the concentration in {conc_unit}/mL"
                )
        if (self.pca is None) == (PumpKind.PCA in self.pump_kinds):
            field = "pca" if self.pca is None else "pump_kinds"
            raise _at(field, "an entry has a 'pca' rule exactly when pump_kinds includes 'pca'")
        return self

    @property
    def unit(self) -> DoseUnit:
        return parse_dose_unit(self.dose_unit)

    def to_concentration(self) -> Concentration | None:
        return None if self.concentration is None else self.concentration.to_concentration()

    def label(self) -> str:
        return self.name if self.concentration is None else f"{self.name} {self.concentration}"

    def matches(self, drug: str) -> bool:
        """A drug is named by its exact code, else by its name in any case."""
        return drug.strip() == self.code or drug.strip().casefold() == self.name.casefold()


def _at(field: str, message: str) -> PydanticCustomError:
    """An error found by a whole-entry check, located at the field it is about."""
    return PydanticCustomError("inconsistent", "{message}", {"message": message, "field": field})


class CareArea(_Model):
    """A clinical unit's profile (ICU, Med-Surg ...): its own drugs and limits."""

    name: Name
    max_rate_ml_h: Positive | None = None
    entries: list[DrugEntry] = Field(min_length=1)

    def find(self, drug: str) -> list[DrugEntry]:
        return [e for e in self.entries if e.matches(drug)]


class Source(_Model):
    """Where the numbers in an entry come from."""

    id: Annotated[str, Field(min_length=1, max_length=40)]
    citation: Annotated[str, Field(min_length=1)]


class DrugLibrary(_Model):
    """A complete, versioned drug library as published to pumps."""

    format: Literal["pumpguard.drug-library/1"]
    library_id: Name
    version: Annotated[int, Field(ge=1, strict=True)]
    name: Name
    institution: str | None = None
    sources: list[Source] = Field(default_factory=list)
    care_areas: list[CareArea] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_references(self, info: ValidationInfo) -> DrugLibrary:
        """Names unique, sources listed; ``parse_library`` runs this on the raw file instead,
        so that every such issue is reported, located, even beside structural errors."""
        if info.context and info.context.get("cross_checked"):
            return self
        issues = _cross_check(self.model_dump(mode="json"))
        if issues:
            raise ValueError("; ".join(str(i) for i in issues))
        return self

    def care_area(self, name: str) -> CareArea | None:
        key = name.strip().casefold()
        return next((a for a in self.care_areas if a.name.casefold() == key), None)

    def entries(self) -> Iterator[tuple[CareArea, DrugEntry]]:
        for area in self.care_areas:
            for entry in area.entries:
                yield area, entry


@dataclass(frozen=True, slots=True)
class LibraryIssue:
    """One problem in a library file, located by care area, drug and field."""

    where: str
    field: str
    message: str

    def __str__(self) -> str:
        place = " > ".join(p for p in (self.where, self.field) if p)
        return f"{place}: {self.message}" if place else self.message


class LibraryError(ValueError):
    """A drug library that must not be used, with every issue found."""

    def __init__(self, source: str, issues: Sequence[LibraryIssue]) -> None:
        self.source = source
        self.issues = tuple(issues)
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        super().__init__(f"{source}: {len(self.issues)} problem(s) in the drug library\n{lines}")


def _locate(raw: Any, loc: tuple[int | str, ...]) -> LibraryIssue:
    """Turn pydantic's index path into care-area and drug names a pharmacist recognises."""
    where: list[str] = []
    fields: list[str] = []
    node = raw
    for part in loc:
        child = None
        if isinstance(node, dict) and isinstance(part, str):
            child = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            child = node[part]
        if isinstance(part, int) and fields and fields[-1] in ("care_areas", "entries"):
            container = fields.pop()
            label = child.get("name") if isinstance(child, dict) else None
            kind = "care area" if container == "care_areas" else "drug"
            where.append(f"{kind} {label!r}" if isinstance(label, str) else f"{kind} #{part + 1}")
        elif isinstance(part, int):
            fields[-1:] = [f"{fields[-1]}[{part}]"] if fields else [f"[{part}]"]
        else:
            fields.append(part)
        node = child
    return LibraryIssue(" > ".join(where), ".".join(fields), "")


def _message(error: Any) -> str:
    text = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        text = text.removeprefix(prefix)
    if error["type"] == "extra_forbidden":
        return "unknown field"
    if error["type"] == "missing":
        return "required field is missing"
    return text


def parse_library(data: Any, source: str = "drug library") -> DrugLibrary:
    """Validate already-decoded JSON; raise ``LibraryError`` listing every issue."""
    issues = _cross_check(data)
    try:
        library = DrugLibrary.model_validate(data, context={"cross_checked": True})
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            field = (error.get("ctx") or {}).get("field")
            if error["type"] == "inconsistent" and isinstance(field, str):
                loc = (*loc, *field.split("."))
            located = _locate(data, loc)
            issues.append(LibraryIssue(located.where, located.field, _message(error)))
    if issues:
        raise LibraryError(source, issues) from None
    return library


def _items(node: Any, key: str) -> list[Any]:
    value = node.get(key) if isinstance(node, dict) else None
    return value if isinstance(value, list) else []


def _text(node: Any, key: str) -> str | None:
    value = node.get(key) if isinstance(node, dict) else None
    return value if isinstance(value, str) else None


def _bag(entry: Any) -> tuple[object, ...]:
    """The container an entry describes: equal numbers compare equal however they are written."""
    conc = entry.get("concentration") if isinstance(entry, dict) else None
    if not isinstance(conc, dict):
        return ()
    parts: list[object] = []
    for key in ("amount", "volume_ml"):
        try:
            parts.append(_to_decimal(conc.get(key)))
        except ValueError:
            parts.append(repr(conc.get(key)))
    unit = _text(conc, "unit") or ""
    with contextlib.suppress(UnitError):
        unit = parse_amount_unit(unit).text
    return (*parts, unit)


def _label(entry: Any) -> str:
    """'Heparin 25,000 units in 250 mL', as far as the raw entry allows."""
    name = _text(entry, "name") or "?"
    try:
        return f"{name} {ConcentrationSpec.model_validate(entry.get('concentration'))}"
    except (ValidationError, AttributeError):
        return name


def _cross_check(data: Any) -> list[LibraryIssue]:
    """Checks across entries, on the raw document, tolerant of anything malformed (the
    structural pass reports that): duplicate care areas and drugs, sources not listed."""
    issues: list[LibraryIssue] = []
    known = {_text(s, "id") for s in _items(data, "sources")}
    areas: dict[str, str] = {}
    for a_index, area in enumerate(_items(data, "care_areas")):
        area_name = _text(area, "name")
        where = f"care area {area_name!r}" if area_name else f"care area #{a_index + 1}"
        if area_name is not None:
            key = area_name.strip().casefold()
            if key in areas:
                issues.append(LibraryIssue(where, "name", f"duplicate care area {areas[key]!r}"))
            else:
                areas[key] = area_name
        seen: set[tuple[object, ...]] = set()
        for e_index, entry in enumerate(_items(area, "entries")):
            name, code = _text(entry, "name"), _text(entry, "code")
            here = f"{where} > " + (f"drug {name!r}" if name else f"drug #{e_index + 1}")
            keys = [
                (field, label.strip().casefold(), *_bag(entry))
                for field, label in (("name", name), ("code", code))
                if label is not None
            ]
            clash = next((key for key in keys if key in seen), None)
            if clash is not None:
                message = f"duplicate drug: {_label(entry)!r} (code {code}) is listed twice"
                issues.append(LibraryIssue(here, str(clash[0]), message))
            seen.update(keys)
            for s_index, ref in enumerate(_items(entry, "sources")):
                if ref not in known:
                    issues.append(
                        LibraryIssue(
                            here,
                            f"sources[{s_index}]",
                            f"source {ref!r} is not listed in the library's sources",
                        )
                    )
    return issues


def load_library(path: Path | str) -> DrugLibrary:
    """Read and validate a library file; every failure is a ``LibraryError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LibraryError(str(path), [LibraryIssue("", "", f"cannot read file: {exc}")]) from None
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        issue = LibraryIssue(
            "", "", f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        )
        raise LibraryError(str(path), [issue]) from None
    return parse_library(data, str(path))


def library_json_schema() -> dict[str, Any]:
    """The JSON Schema published in ``docs/``: what a library file must look like."""
    schema = DrugLibrary.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://pumpguard.invalid/schemas/drug-library-1.json"
    return schema
