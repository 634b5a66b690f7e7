"""The drug library as CSV: one row per drug entry in a care area, for spreadsheets.

Pharmacists keep libraries in spreadsheets; a CSV that maps one-to-one onto the published
JSON schema lets them review and bulk-edit there without a second, looser format. Every
limit group of an entry becomes four columns (``<group>_hard_min`` ... ``<group>_hard_max``),
lists are ``;``-separated, an empty cell is an absent value. Reading never guesses: an unknown
column, a number that is not one, or two rows giving a care area different maximum rates is an
error that names the line and the column.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "CSV_COLUMNS",
    "CsvIssue",
    "CsvRows",
    "library_to_csv",
    "number_text",
    "read_library_csv",
]

_BOUNDS = ("hard_min", "soft_min", "soft_max", "hard_max")
_LIMIT_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("continuous", ("continuous",)),
    ("bolus_dose", ("bolus", "dose")),
    ("bolus_rate_ml_h", ("bolus", "rate_ml_h")),
    ("pca_demand_dose", ("pca", "demand_dose")),
    ("pca_lockout_min", ("pca", "lockout_min")),
    ("pca_hourly_limit", ("pca", "hourly_limit")),
    ("pca_loading_dose", ("pca", "loading_dose")),
    ("vtbi_ml", ("vtbi_ml",)),
)
_NUMBERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("concentration_amount", ("concentration", "amount")),
    ("concentration_volume_ml", ("concentration", "volume_ml")),
    ("max_duration_min", ("max_duration_min",)),
    ("weight_min_kg", ("weight_kg", "min_kg")),
    ("weight_max_kg", ("weight_kg", "max_kg")),
)
_TEXTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("name", ("name",)),
    ("code", ("code",)),
    ("concentration_unit", ("concentration", "unit")),
    ("dose_unit", ("dose_unit",)),
    ("bolus_dose_unit", ("bolus", "dose_unit")),
    ("pca_dose_unit", ("pca", "dose_unit")),
    ("note", ("note",)),
)
_LISTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pump_kinds", ("pump_kinds",)),
    ("sources", ("sources",)),
)
_AREA = "care_area"
_AREA_RATE = "care_area_max_rate_ml_h"
_REQUIRED = (_AREA, "name", "code", "dose_unit")

CSV_COLUMNS: tuple[str, ...] = (
    _AREA,
    _AREA_RATE,
    "name",
    "code",
    "concentration_amount",
    "concentration_unit",
    "concentration_volume_ml",
    "dose_unit",
    *(f"{group}_{bound}" for group, _ in _LIMIT_GROUPS[:1] for bound in _BOUNDS),
    "bolus_dose_unit",
    *(f"{group}_{bound}" for group, _ in _LIMIT_GROUPS[1:3] for bound in _BOUNDS),
    "pca_dose_unit",
    *(f"{group}_{bound}" for group, _ in _LIMIT_GROUPS[3:7] for bound in _BOUNDS),
    *(f"{group}_{bound}" for group, _ in _LIMIT_GROUPS[7:] for bound in _BOUNDS),
    "max_duration_min",
    "weight_min_kg",
    "weight_max_kg",
    "pump_kinds",
    "sources",
    "note",
)
"""Every column, in the order ``library_to_csv`` writes them."""


def _paths() -> dict[str, tuple[tuple[str, ...], str]]:
    """column -> (path in the entry, kind: number, text or list)."""
    table: dict[str, tuple[tuple[str, ...], str]] = {}
    for group, path in _LIMIT_GROUPS:
        for bound in _BOUNDS:
            table[f"{group}_{bound}"] = ((*path, bound), "number")
    table.update({column: (path, "number") for column, path in _NUMBERS})
    table.update({column: (path, "text") for column, path in _TEXTS})
    table.update({column: (path, "list") for column, path in _LISTS})
    return table


_PATHS = _paths()


@dataclass(frozen=True, slots=True)
class CsvIssue:
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class CsvRows:
    """Care areas in the published JSON shape, and the CSV line each entry came from."""

    care_areas: tuple[Mapping[str, Any], ...]
    lines: Mapping[tuple[str, str], tuple[int, ...]]
    """(care area name folded, drug name folded) -> the lines of rows naming that drug."""


def number_text(value: object) -> str:
    """A number as the shortest exact decimal text (``100``, ``0.05``), never ``1E+2``."""
    return f"{Decimal(str(value)).normalize():f}"


def _get(node: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def library_to_csv(care_areas: Iterable[Mapping[str, Any]]) -> str:
    """Care areas in the published JSON shape -> CSV text (header first, ``\\r\\n`` lines)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for area in care_areas:
        rate = area.get("max_rate_ml_h")
        for entry in area.get("entries", ()):
            row: list[str] = []
            for column in CSV_COLUMNS:
                if column == _AREA:
                    row.append(str(area.get("name", "")))
                    continue
                if column == _AREA_RATE:
                    row.append("" if rate is None else number_text(rate))
                    continue
                path, kind = _PATHS[column]
                value = _get(entry, path)
                if value is None:
                    row.append("")
                elif kind == "number":
                    row.append(number_text(value))
                elif kind == "list":
                    row.append(";".join(str(v) for v in value))
                else:
                    row.append(str(value))
            writer.writerow(row)
    return buffer.getvalue()


def _set(entry: dict[str, Any], path: Sequence[str], value: object) -> None:
    node = entry
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _parse_number(text: str) -> Decimal:
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{text!r} is not a finite number")
    return number


def read_library_csv(text: str) -> tuple[CsvRows, list[CsvIssue]]:
    """CSV text -> care areas (raw, for the library validator) and the problems found.

    Only the shape of the CSV is checked here (columns, numbers, one rate per care area); the
    entries themselves are checked by the drug library's own validation afterwards.
    """
    issues: list[CsvIssue] = []
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return CsvRows((), {}), [CsvIssue(1, "", "the file is empty; expected a header row")]
    except csv.Error as exc:
        return CsvRows((), {}), [CsvIssue(1, "", f"not readable as CSV: {exc}")]
    columns = [c.strip() for c in header]
    for index, column in enumerate(columns):
        if column not in CSV_COLUMNS:
            issues.append(
                CsvIssue(
                    1, column, f"unknown column (column {index + 1}); see docs/drug-library.md"
                )
            )
        elif columns.index(column) != index:
            issues.append(CsvIssue(1, column, "column appears twice"))
    for column in _REQUIRED:
        if column not in columns:
            issues.append(CsvIssue(1, column, "required column is missing"))
    if issues:
        return CsvRows((), {}), issues

    areas: dict[str, dict[str, Any]] = {}
    rates: dict[str, tuple[str, int]] = {}
    lines: dict[tuple[str, str], list[int]] = {}
    try:
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(columns):
                issues.append(
                    CsvIssue(line, "", f"{len(cells)} cells where the header has {len(columns)}")
                )
                continue
            values = {c: cell.strip() for c, cell in zip(columns, cells, strict=True)}
            area_name = values[_AREA]
            if not area_name:
                issues.append(CsvIssue(line, _AREA, "required: the care area of this entry"))
                continue
            key = area_name.casefold()
            area = areas.setdefault(key, {"name": area_name, "entries": []})
            rate_text = values.get(_AREA_RATE, "")
            if rate_text:
                try:
                    rate = _parse_number(rate_text)
                except ValueError as exc:
                    issues.append(CsvIssue(line, _AREA_RATE, str(exc)))
                else:
                    seen = rates.get(key)
                    if seen is not None and _parse_number(seen[0]) != rate:
                        issues.append(
                            CsvIssue(
                                line,
                                _AREA_RATE,
                                f"{rate_text} differs from {seen[0]} given for care area "
                                f"{area_name!r} on line {seen[1]}",
                            )
                        )
                    elif seen is None:
                        rates[key] = (rate_text, line)
                        area["max_rate_ml_h"] = rate
            entry: dict[str, Any] = {}
            for column, cell in values.items():
                if column in (_AREA, _AREA_RATE) or not cell:
                    continue
                path, kind = _PATHS[column]
                if kind == "number":
                    try:
                        _set(entry, path, _parse_number(cell))
                    except ValueError as exc:
                        issues.append(CsvIssue(line, column, str(exc)))
                elif kind == "list":
                    _set(entry, path, [p.strip() for p in cell.split(";") if p.strip()])
                else:
                    _set(entry, path, cell)
            area["entries"].append(entry)
            lines.setdefault((key, values["name"].casefold()), []).append(line)
    except csv.Error as exc:
        issues.append(CsvIssue(reader.line_num, "", f"not readable as CSV: {exc}"))
    if not areas and not issues:
        issues.append(CsvIssue(1, "", "no entries: the file has a header and no rows"))
    frozen_lines = {k: tuple(v) for k, v in lines.items()}
    return CsvRows(tuple(areas.values()), frozen_lines), issues
