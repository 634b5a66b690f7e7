"""Pump inventories (CSV or JSON) and their matching against the advisory knowledge base.

Columns ``manufacturer, model, software_version, count, zone`` are required (header names
are case-insensitive; spaces and hyphens count as underscores). Extra columns are kept on
each row. Every problem is reported at once, by file, line and column, and a row that cannot
be read is never silently skipped. Rows whose model the catalogue cannot place are listed as
unknown models, never dropped.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pumpguard.risk.advisories import Advisory, KnowledgeBase, Product, Vulnerability
from pumpguard.risk.models import Identification, ModelCatalogue, split_model_version
from pumpguard.risk.versions import PumpVersion, VersionError, parse_version

__all__ = [
    "REQUIRED_COLUMNS",
    "Inventory",
    "InventoryError",
    "InventoryIssue",
    "InventoryRow",
    "Match",
    "MatchReport",
    "MatchStatus",
    "UnknownModel",
    "load_inventory",
    "match_inventory",
    "parse_inventory_csv",
    "parse_inventory_json",
]

REQUIRED_COLUMNS = ("manufacturer", "model", "software_version", "count", "zone")


@dataclass(frozen=True, slots=True)
class InventoryIssue:
    """One problem in an inventory file: where (line, column) and what."""

    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        place = []
        if self.line is not None:
            place.append(f"line {self.line}")
        if self.column is not None:
            place.append(f"column {self.column!r}")
        return f"{', '.join(place)}: {self.message}" if place else self.message


class InventoryError(ValueError):
    """An inventory that cannot be assessed, with every problem found."""

    def __init__(self, source: str, issues: Sequence[InventoryIssue]) -> None:
        self.source = source
        self.issues = tuple(issues)
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        super().__init__(f"{source}: {len(self.issues)} problem(s) in the inventory\n{lines}")


@dataclass(frozen=True, slots=True)
class InventoryRow:
    line: int
    manufacturer: str
    model: str
    software_version: str
    count: int
    zone: str
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Inventory:
    source: str
    rows: tuple[InventoryRow, ...]
    extra_columns: tuple[str, ...]

    @property
    def device_count(self) -> int:
        return sum(r.count for r in self.rows)


def _column_name(name: str) -> str:
    return "_".join(name.strip().lower().replace("-", " ").split())


def _count(value: object) -> int | str:
    """The device count, or the reason it is not one."""
    if isinstance(value, bool):
        return "must be a whole number of devices"
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        return f"must be a whole number of devices, got {value!r}"
    if number < 1:
        return f"must be at least 1, got {number}"
    return number


def _rows(records: list[tuple[int, dict[str, Any]]], source: str, columns: list[str]) -> Inventory:
    issues: list[InventoryIssue] = []
    names = [_column_name(c) for c in columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        found = ", ".join(repr(c) for c in columns) or "none"
        issues.append(
            InventoryIssue(
                1, None, f"missing required column(s): {', '.join(missing)} (found: {found})"
            )
        )
        raise InventoryError(source, issues)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        issues.append(InventoryIssue(1, None, f"duplicate column(s): {', '.join(duplicates)}"))
        raise InventoryError(source, issues)
    extra_columns = tuple(
        c for c, n in zip(columns, names, strict=True) if n not in REQUIRED_COLUMNS
    )
    rows: list[InventoryRow] = []
    for line, record in records:
        values = {_column_name(k): v for k, v in record.items()}
        row_issues: list[InventoryIssue] = []
        text: dict[str, str] = {}
        for column in ("manufacturer", "model", "software_version", "zone"):
            value = values.get(column)
            if value is None:
                value = ""
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                row_issues.append(InventoryIssue(line, column, f"must be text, got {value!r}"))
                continue
            text[column] = str(value).strip()
        if "model" in text and not text["model"]:
            row_issues.append(InventoryIssue(line, "model", "is empty"))
        count = _count(values.get("count"))
        if isinstance(count, str):
            row_issues.append(InventoryIssue(line, "count", count))
        if row_issues:
            issues.extend(row_issues)
            continue
        assert isinstance(count, int)
        extra = {
            c: "" if record.get(c) is None else str(record.get(c))
            for c in extra_columns
            if c in record
        }
        rows.append(
            InventoryRow(
                line,
                text["manufacturer"],
                text["model"],
                text["software_version"],
                count,
                text["zone"],
                extra,
            )
        )
    if not rows and not issues:
        issues.append(InventoryIssue(None, None, "the inventory lists no devices"))
    if issues:
        raise InventoryError(source, issues)
    return Inventory(source, tuple(rows), extra_columns)


def parse_inventory_csv(text: str, source: str = "inventory") -> Inventory:
    if not text.strip():
        raise InventoryError(source, [InventoryIssue(None, None, "the file is empty")])
    try:
        sample = text[:4096]
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        all_rows = list(reader)
    except csv.Error as exc:
        raise InventoryError(
            source, [InventoryIssue(reader.line_num, None, f"malformed CSV: {exc}")]
        ) from None
    header = [h.strip() for h in all_rows[0]]
    records: list[tuple[int, dict[str, Any]]] = []
    issues: list[InventoryIssue] = []
    line = 1
    for cells in all_rows[1:]:
        line += 1
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            issues.append(
                InventoryIssue(
                    line, None, f"{len(cells)} values but the header has {len(header)} columns"
                )
            )
            continue
        cells = cells + [""] * (len(header) - len(cells))
        records.append((line, dict(zip(header, cells, strict=True))))
    if issues:
        try:
            _rows(records, source, header)
        except InventoryError as exc:
            issues = [*issues, *exc.issues]
        raise InventoryError(source, sorted(issues, key=lambda i: i.line or 0))
    return _rows(records, source, header)


def parse_inventory_json(text: str, source: str = "inventory") -> Inventory:
    if not text.strip():
        raise InventoryError(source, [InventoryIssue(None, None, "the file is empty")])
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        raise InventoryError(source, [InventoryIssue(exc.lineno, None, message)]) from None
    if isinstance(data, dict) and isinstance(data.get("devices"), list):
        data = data["devices"]
    if not isinstance(data, list):
        message = 'expected a list of devices or an object with a "devices" list'
        raise InventoryError(source, [InventoryIssue(None, None, message)])
    columns: list[str] = []
    records: list[tuple[int, dict[str, Any]]] = []
    issues: list[InventoryIssue] = []
    for index, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            issues.append(InventoryIssue(index, None, f"device #{index} is not an object"))
            continue
        for key in item:
            if key not in columns:
                columns.append(str(key))
        records.append((index, item))
    if issues:
        raise InventoryError(source, issues)
    if not records:
        raise InventoryError(source, [InventoryIssue(None, None, "the inventory lists no devices")])
    return _rows(records, source, columns)


def load_inventory(path: Path | str) -> Inventory:
    """Read a CSV or JSON inventory (by extension; JSON also when the text starts with [ or {)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        issue = InventoryIssue(None, None, f"cannot read: {reason}")
        raise InventoryError(str(path), [issue]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        message = (
            f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}; "
            "save the file as UTF-8 (e.g. 'CSV UTF-8' in a spreadsheet)"
        )
        raise InventoryError(str(path), [InventoryIssue(line, None, message)]) from None
    if "\x00" in text:
        raise InventoryError(
            str(path), [InventoryIssue(None, None, "binary content (NUL bytes); not a text file")]
        )
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        return parse_inventory_json(text, str(path))
    return parse_inventory_csv(text, str(path))


class MatchStatus(StrEnum):
    AFFECTED = "affected"
    POSSIBLY_AFFECTED = "possibly_affected"


@dataclass(frozen=True, slots=True)
class Match:
    """One inventory row x one advisory product it matches."""

    row: InventoryRow
    model_key: str
    model_name: str
    version: str
    advisory: Advisory
    products: tuple[Product, ...]
    status: MatchStatus
    reason: str
    inferred_model: bool

    @property
    def vulnerabilities(self) -> list[Vulnerability]:
        return [
            v
            for v in self.advisory.vulnerabilities
            if v.products is None or any(p.id in v.products for p in self.products)
        ]

    @property
    def cves(self) -> list[str]:
        return [v.cve for v in self.vulnerabilities]

    @property
    def fixed_in(self) -> list[str]:
        return list(dict.fromkeys(p.fixed_in for p in self.products if p.fixed_in))


@dataclass(frozen=True, slots=True)
class UnknownModel:
    row: InventoryRow
    reason: str


@dataclass(frozen=True, slots=True)
class IdentifiedRow:
    row: InventoryRow
    identification: Identification
    version: str
    advisories: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MatchReport:
    inventory: Inventory
    matches: tuple[Match, ...]
    unknown_models: tuple[UnknownModel, ...]
    identified: tuple[IdentifiedRow, ...]


def _version_of(row: InventoryRow) -> tuple[str, str]:
    """(model text without an embedded version, version text) for a row."""
    model, embedded = split_model_version(row.model)
    version = row.software_version.strip() or (embedded or "")
    return model, version


def match_inventory(
    inventory: Inventory, kb: KnowledgeBase, catalogue: ModelCatalogue
) -> MatchReport:
    """Every row x every advisory product of its model whose versions include the row's."""
    matches: list[Match] = []
    unknown: list[UnknownModel] = []
    identified: list[IdentifiedRow] = []
    for row in inventory.rows:
        model_text, version_text = _version_of(row)
        found = catalogue.identify(row.manufacturer, model_text)
        if found is None:
            vendor = catalogue.vendor_of(row.manufacturer) if row.manufacturer else None
            reason = (
                f"model not in the catalogue (vendor recognised as {vendor})"
                if vendor
                else "manufacturer and model not in the catalogue"
            )
            unknown.append(UnknownModel(row, reason))
            continue
        version: PumpVersion | None = None
        version_problem = ""
        if version_text:
            try:
                version = parse_version(version_text)
            except VersionError as exc:
                version_problem = str(exc)
        else:
            version_problem = "no software version given"
        hits: list[str] = []
        by_advisory: dict[str, list[tuple[Product, bool | None]]] = {}
        for advisory, product in kb.products_for(found.model.key):
            verdict = product.affected(version)
            if verdict is not False:
                by_advisory.setdefault(advisory.id, []).append((product, verdict))
        for advisory_id, candidates in by_advisory.items():
            advisory = kb.get(advisory_id)
            certain = tuple(p for p, verdict in candidates if verdict is True)
            products = certain or tuple(p for p, _ in candidates)
            if certain:
                status = MatchStatus.AFFECTED
                reason = f"version {version_text or '(any)'} is within " + "; ".join(
                    f"{p.name}: {_ranges(p)}" for p in products
                )
            else:
                status = MatchStatus.POSSIBLY_AFFECTED
                reason = version_problem or (
                    f"version {version_text} cannot be compared with "
                    + "; ".join(_ranges(p) for p in products)
                )
            conditions = [p.condition for p in products if p.condition]
            if conditions:
                reason += "; condition: " + " ".join(dict.fromkeys(conditions))
            matches.append(
                Match(
                    row,
                    found.model.key,
                    found.model.name,
                    version_text,
                    advisory,
                    products,
                    status,
                    reason,
                    found.inferred,
                )
            )
            hits.append(advisory.id)
        identified.append(IdentifiedRow(row, found, version_text, tuple(hits)))
    return MatchReport(inventory, tuple(matches), tuple(unknown), tuple(identified))


def _ranges(product: Product) -> str:
    return " or ".join(r.describe() for r in product.versions)
