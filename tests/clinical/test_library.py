"""The drug library: strict parsing, issues located by care area / drug / field, JSON Schema."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from pumpguard.clinical import (
    FORMAT,
    AmountUnit,
    Concentration,
    DrugLibrary,
    LibraryError,
    LibraryIssue,
    Limits,
    PumpKind,
    library_json_schema,
    load_library,
    parse_library,
)

D = Decimal
Lib = dict[str, Any]

HEPARIN = "care area 'ICU' > drug 'Heparin'"
NOREPI = "care area 'ICU' > drug 'Norepinephrine'"
FENTANYL = "care area 'ICU' > drug 'Fentanyl PCA'"
MEDSURG_HEPARIN = "care area 'Med-Surg' > drug 'Heparin'"


def entry(data: Lib, area: int = 0, index: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = data["care_areas"][area]["entries"][index]
    return result


def issues_of(data: Any) -> tuple[LibraryIssue, ...]:
    with pytest.raises(LibraryError) as info:
        parse_library(data, "test.json")
    assert info.value.source == "test.json"
    assert info.value.issues, "a LibraryError must carry at least one issue"
    return info.value.issues


def only_issue(data: Any) -> LibraryIssue:
    issues = issues_of(data)
    assert len(issues) == 1, issues
    return issues[0]


# --- the valid library ----------------------------------------------------------------------


def test_valid_library_parses(library: DrugLibrary) -> None:
    assert library.format == FORMAT == "pumpguard.drug-library/1"
    assert library.library_id == "test-lib"
    assert library.version == 3
    assert [a.name for a in library.care_areas] == ["ICU", "Med-Surg"]
    assert [s.id for s in library.sources] == ["ismp-2020", "asp-2018"]
    assert len(list(library.entries())) == 7
    icu = library.care_areas[0]
    assert icu.max_rate_ml_h == D(999)
    assert library.care_areas[1].max_rate_ml_h is None


def test_numbers_become_exact_decimals(library: DrugLibrary) -> None:
    norepi = library.care_areas[0].entries[1]
    assert isinstance(norepi.continuous.soft_min, Decimal)
    assert norepi.continuous.soft_min == D("0.01")  # not 0.01000000000000000020816...
    assert str(norepi.continuous.soft_min) == "0.01"
    assert norepi.continuous.hard_min is None


def test_entry_accessors(library: DrugLibrary) -> None:
    heparin = library.care_areas[0].entries[0]
    assert heparin.unit.per_kg
    assert str(heparin.unit) == "units/kg/h"
    assert heparin.to_concentration() == Concentration(D(25000), AmountUnit.UNITS, D(250))
    assert heparin.label() == "Heparin 25,000 units in 250 mL"
    assert heparin.bolus is not None
    assert str(heparin.bolus.unit) == "units/kg"
    assert heparin.weight_kg is not None
    assert heparin.weight_kg.min_kg == 30
    assert heparin.pump_kinds == [PumpKind.LVP, PumpKind.SYRINGE]  # the default
    saline = library.care_areas[0].entries[5]
    assert saline.to_concentration() is None
    assert saline.label() == "Sodium chloride 0.9%"
    fentanyl = library.care_areas[0].entries[4]
    assert fentanyl.pump_kinds == [PumpKind.PCA]
    assert fentanyl.pca is not None
    assert str(fentanyl.pca.unit) == "mcg"


def test_dose_units_are_stored_canonically(library_dict: Lib) -> None:
    entry(library_dict)["dose_unit"] = "Units/KG/hr"
    entry(library_dict)["bolus"]["dose_unit"] = "unit/kg"
    entry(library_dict, index=1)["dose_unit"] = "ug/kg/minute"
    entry(library_dict, index=1)["concentration"]["unit"] = "MG"
    lib = parse_library(library_dict)
    heparin = lib.care_areas[0].entries[0]
    assert heparin.dose_unit == "units/kg/h"
    assert heparin.bolus is not None
    assert heparin.bolus.dose_unit == "units/kg"
    norepi = lib.care_areas[0].entries[1]
    assert norepi.dose_unit == "mcg/kg/min"
    assert norepi.concentration is not None
    assert norepi.concentration.unit == "mg"


def test_names_are_stripped(library_dict: Lib) -> None:
    entry(library_dict)["name"] = "  Heparin  "
    library_dict["care_areas"][0]["name"] = " ICU "
    lib = parse_library(library_dict)
    assert lib.care_areas[0].name == "ICU"
    assert lib.care_areas[0].entries[0].name == "Heparin"


def test_care_area_lookup_ignores_case_and_space(library: DrugLibrary) -> None:
    icu = library.care_area("ICU")
    assert icu is not None
    assert icu.name == "ICU"
    assert library.care_area("  icu ") is icu
    med = library.care_area("med-surg")
    assert med is not None
    assert med.name == "Med-Surg"
    assert library.care_area("NICU") is None
    assert library.care_area("") is None


def test_drug_matching_by_exact_code_or_case_insensitive_name(library: DrugLibrary) -> None:
    heparin = library.care_areas[0].entries[0]
    assert heparin.matches("HEP25K")
    assert heparin.matches(" HEP25K ")
    assert not heparin.matches("hep25k")  # codes are exact
    assert heparin.matches("heparin")
    assert heparin.matches("HEPARIN")
    assert not heparin.matches("Hep")
    icu = library.care_areas[0]
    assert [e.code for e in icu.find("norepinephrine")] == ["NOREPI4", "NOREPI8"]
    assert [e.code for e in icu.find("NOREPI8")] == ["NOREPI8"]
    assert icu.find("Propofol") == []


def test_equal_limits_are_allowed(library_dict: Lib) -> None:
    entry(library_dict)["continuous"] = {"hard_min": 5, "soft_min": 5, "soft_max": 5, "hard_max": 5}
    lib = parse_library(library_dict)
    assert lib.care_areas[0].entries[0].continuous.hard_max == 5


def test_same_drug_at_two_concentrations_is_not_a_duplicate(library: DrugLibrary) -> None:
    labels = [e.label() for e in library.care_areas[0].entries if e.name == "Norepinephrine"]
    assert labels == ["Norepinephrine 4 mg in 250 mL", "Norepinephrine 8 mg in 250 mL"]


def test_same_drug_in_two_care_areas_is_not_a_duplicate(library: DrugLibrary) -> None:
    codes = [(a.name, e.code) for a, e in library.entries() if e.code == "HEP25K"]
    assert codes == [("ICU", "HEP25K"), ("Med-Surg", "HEP25K")]


def test_json_round_trip(library: DrugLibrary) -> None:
    dumped = library.model_dump(mode="json")
    text = json.dumps(dumped)  # numbers serialise as JSON numbers, not strings
    assert '"hard_max": 40' in text
    assert '"soft_min": 0.01' in text
    assert parse_library(json.loads(text)) == library


def test_library_is_immutable(library: DrugLibrary) -> None:
    with pytest.raises(ValidationError):
        library.version = 4  # type: ignore[misc]


# --- issues, located by care area, drug and field -------------------------------------------

Mutate = Callable[[Lib], None]


def _set(path: str, value: Any) -> Mutate:
    """A mutation setting ``value`` at a dotted path; integers index lists."""

    def mutate(data: Lib) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _delete(path: str) -> Mutate:
    def mutate(data: Lib) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]

    return mutate


H = "care_areas.0.entries.0"  # ICU Heparin
N = "care_areas.0.entries.1"  # ICU Norepinephrine 4 mg
F = "care_areas.0.entries.4"  # ICU Fentanyl PCA
M = "care_areas.1.entries.0"  # Med-Surg Heparin


@pytest.mark.parametrize(
    ("mutate", "where", "field", "message"),
    [
        pytest.param(
            _set(f"{H}.continuous.hard_max", 20),
            HEPARIN,
            "continuous",
            "hard_max (20) is below soft_max (25)",
            id="hard-max-below-soft-max",
        ),
        pytest.param(
            _set(f"{H}.continuous.soft_min", 30),
            HEPARIN,
            "continuous",
            "soft_max (25) is below soft_min (30)",
            id="soft-min-above-soft-max",
        ),
        pytest.param(
            _set(f"{H}.continuous.hard_min", 11),
            HEPARIN,
            "continuous",
            "soft_min (10) is below hard_min (11)",
            id="hard-min-above-soft-min",
        ),
        pytest.param(
            _set(f"{M}.continuous.hard_max", 17),
            MEDSURG_HEPARIN,
            "continuous",
            "hard_max (17) is below soft_max (18)",
            id="second-care-area",
        ),
        pytest.param(
            _delete(f"{H}.continuous.hard_max"),
            HEPARIN,
            "continuous",
            "hard_max is required",
            id="missing-hard-max",
        ),
        pytest.param(
            _delete(f"{H}.bolus.dose.hard_max"),
            HEPARIN,
            "bolus.dose",
            "hard_max is required",
            id="missing-bolus-hard-max",
        ),
        pytest.param(
            _delete(f"{F}.pca.hourly_limit.hard_max"),
            FENTANYL,
            "pca.hourly_limit",
            "hard_max is required",
            id="missing-pca-hourly-hard-max",
        ),
        pytest.param(
            _delete(f"{F}.pca.lockout_min.hard_min"),
            FENTANYL,
            "pca.lockout_min",
            "hard_min is required",
            id="missing-pca-lockout-hard-min",
        ),
        pytest.param(
            _set(f"{N}.concentration.unit", "mcg-ish"),
            NOREPI,
            "concentration.unit",
            "unknown amount unit 'mcg-ish'",
            id="unknown-concentration-unit",
        ),
        pytest.param(
            _set(f"{H}.concentration.unit", "U"),
            HEPARIN,
            "concentration.unit",
            "'U' is on the ISMP error-prone list",
            id="ismp-concentration-unit",
        ),
        pytest.param(
            _set(f"{H}.concentration.unit", "mL"),
            HEPARIN,
            "concentration.unit",
            "a concentration's amount must be a drug amount, not mL",
            id="concentration-in-ml",
        ),
        pytest.param(
            _set(f"{H}.dose_unit", "IU/kg/h"),
            HEPARIN,
            "dose_unit",
            "'IU' is on the ISMP error-prone list",
            id="ismp-dose-unit",
        ),
        pytest.param(
            _set(f"{H}.dose_unit", "units/m2/h"),
            HEPARIN,
            "dose_unit",
            "'m2' is neither 'kg' nor a time",
            id="bsa-dose-unit",
        ),
        pytest.param(
            _set(f"{H}.dose_unit", "units/kg"),
            HEPARIN,
            "dose_unit",
            "units/kg is not a rate",
            id="continuous-unit-not-a-rate",
        ),
        pytest.param(
            _set(f"{H}.bolus.dose_unit", "units/kg/h"),
            HEPARIN,
            "bolus.dose_unit",
            "units/kg/h is a rate",
            id="bolus-unit-is-a-rate",
        ),
        pytest.param(
            _set(f"{F}.pca.dose_unit", "cc"),
            FENTANYL,
            "pca.dose_unit",
            "'cc' is on the ISMP error-prone list",
            id="ismp-pca-unit",
        ),
        pytest.param(
            _delete(f"{H}.dose_unit"),
            HEPARIN,
            "dose_unit",
            "required field is missing",
            id="missing-dose-unit",
        ),
        pytest.param(
            _set(f"{H}.colour", "blue"),
            HEPARIN,
            "colour",
            "unknown field",
            id="unknown-entry-field",
        ),
        pytest.param(
            _set(f"{H}.continuous.hardmax", 40),
            HEPARIN,
            "continuous.hardmax",
            "unknown field",
            id="unknown-limits-field",
        ),
        pytest.param(
            _set("care_areas.1.colour", "blue"),
            "care area 'Med-Surg'",
            "colour",
            "unknown field",
            id="unknown-care-area-field",
        ),
        pytest.param(
            _set("colour", "blue"), "", "colour", "unknown field", id="unknown-top-level-field"
        ),
        pytest.param(
            _set(f"{H}.continuous.hard_max", "40"),
            HEPARIN,
            "continuous.hard_max",
            "must be a number",
            id="number-as-string",
        ),
        pytest.param(
            _set(f"{N}.concentration.amount", "4"),
            NOREPI,
            "concentration.amount",
            "must be a number",
            id="concentration-as-string",
        ),
        pytest.param(
            _set(f"{H}.continuous.soft_max", True),
            HEPARIN,
            "continuous.soft_max",
            "must be a number",
            id="boolean-as-number",
        ),
        pytest.param(
            _set(f"{H}.weight_kg.min_kg", False),
            HEPARIN,
            "weight_kg.min_kg",
            "must be a number",
            id="false-as-number",
        ),
        pytest.param(
            _set(f"{H}.continuous.hard_max", float("nan")),
            HEPARIN,
            "continuous.hard_max",
            "must be a finite number",
            id="nan",
        ),
        pytest.param(
            _set(f"{H}.continuous.hard_max", float("inf")),
            HEPARIN,
            "continuous.hard_max",
            "must be a finite number",
            id="infinity",
        ),
        pytest.param(
            _set(f"{H}.continuous.hard_min", -1),
            HEPARIN,
            "continuous.hard_min",
            "greater than or equal to 0",
            id="negative-limit",
        ),
        pytest.param(
            _set(f"{H}.concentration.volume_ml", 0),
            HEPARIN,
            "concentration.volume_ml",
            "greater than 0",
            id="zero-volume",
        ),
        pytest.param(
            _set(f"{H}.weight_kg", {"min_kg": 30, "max_kg": 10}),
            HEPARIN,
            "weight_kg",
            "max_kg (10) is below min_kg (30)",
            id="weight-range-reversed",
        ),
        pytest.param(
            _set(f"{H}.pump_kinds", ["lvp", "ambulatory"]),
            HEPARIN,
            "pump_kinds[1]",
            "'lvp', 'syringe' or 'pca'",
            id="unknown-pump-kind",
        ),
        pytest.param(
            _set(f"{H}.pump_kinds", []),
            HEPARIN,
            "pump_kinds",
            "at least 1 item",
            id="no-pump-kinds",
        ),
        pytest.param(
            _set(f"{H}.code", "HEP 25K"),
            HEPARIN,
            "code",
            "should match pattern",
            id="code-with-space",
        ),
        pytest.param(
            _set(f"{H}.name", "   "),
            "care area 'ICU' > drug '   '",
            "name",
            "at least 1 character",
            id="blank-drug-name",
        ),
        pytest.param(
            _set("care_areas.0.name", 7),
            "care area #1",
            "name",
            "valid string",
            id="care-area-name-not-a-string",
        ),
        pytest.param(
            _set("care_areas.1.entries", []),
            "care area 'Med-Surg'",
            "entries",
            "at least 1 item",
            id="care-area-without-drugs",
        ),
        pytest.param(
            _delete("care_areas"), "", "care_areas", "required field is missing", id="no-areas"
        ),
        pytest.param(_set("care_areas", []), "", "care_areas", "at least 1 item", id="0-areas"),
        pytest.param(
            _set("format", "pumpguard.drug-library/2"),
            "",
            "format",
            "'pumpguard.drug-library/1'",
            id="wrong-format",
        ),
        pytest.param(
            _set("version", 0), "", "version", "greater than or equal to 1", id="version-0"
        ),
        pytest.param(
            _delete("sources.1.citation"),
            "",
            "sources[1].citation",
            "required field is missing",
            id="source-without-citation",
        ),
    ],
)
def test_issue_is_located(
    library_dict: Lib, mutate: Mutate, where: str, field: str, message: str
) -> None:
    mutate(library_dict)
    issue = only_issue(library_dict)
    assert issue.where == where
    assert issue.field == field
    assert message in issue.message


# --- cross-field errors: the model-level checks ---------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "where", "message"),
    [
        pytest.param(
            _set(f"{H}.pump_kinds", ["lvp", "pca"]),
            HEPARIN,
            "an entry has a 'pca' rule exactly when pump_kinds includes 'pca'",
            id="pca-kind-without-pca-rule",
        ),
        pytest.param(
            _set(f"{F}.pump_kinds", ["lvp", "syringe"]),
            FENTANYL,
            "an entry has a 'pca' rule exactly when pump_kinds includes 'pca'",
            id="pca-rule-without-pca-kind",
        ),
        pytest.param(
            _set(f"{H}.dose_unit", "mg/kg/h"),
            HEPARIN,
            "dose_unit mg/kg/h does not match the concentration in units/mL",
            id="dose-unit-dimension",
        ),
        pytest.param(
            _set(f"{H}.bolus.dose_unit", "mg/kg"),
            HEPARIN,
            "bolus.dose_unit mg/kg does not match the concentration in units/mL",
            id="bolus-unit-dimension",
        ),
        pytest.param(
            _set(f"{F}.pca.dose_unit", "units"),
            FENTANYL,
            "pca.dose_unit units does not match the concentration in mcg/mL",
            id="pca-unit-dimension",
        ),
        pytest.param(
            _delete(f"{H}.concentration"),
            HEPARIN,
            "dose_unit units/kg/h needs a concentration",
            id="dose-unit-without-concentration",
        ),
    ],
)
def test_cross_field_issue_names_care_area_and_drug(
    library_dict: Lib, mutate: Mutate, where: str, message: str
) -> None:
    mutate(library_dict)
    issue = only_issue(library_dict)
    assert issue.where == where
    assert issue.message == message


def test_ml_dose_needs_no_concentration(library_dict: Lib) -> None:
    entry(library_dict)["dose_unit"] = "mL/kg/h"
    del entry(library_dict)["concentration"]
    entry(library_dict)["bolus"]["dose_unit"] = "mL/kg"
    lib = parse_library(library_dict)
    assert lib.care_areas[0].entries[0].concentration is None


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(_set(f"{H}.dose_unit", "mg/kg/h"), "dose_unit", id="dose-unit-dimension"),
        pytest.param(
            _set(f"{H}.bolus.dose_unit", "mg/kg"), "bolus.dose_unit", id="bolus-unit-dimension"
        ),
        pytest.param(_set(f"{H}.pump_kinds", ["lvp", "pca"]), "pca", id="pca-kind-no-rule"),
    ],
)
def test_cross_field_issue_names_the_field(library_dict: Lib, mutate: Mutate, field: str) -> None:
    mutate(library_dict)
    assert only_issue(library_dict).field == field


# --- duplicates and references --------------------------------------------------------------


def test_duplicate_drug_in_one_care_area(library_dict: Lib) -> None:
    library_dict["care_areas"][0]["entries"].append(copy.deepcopy(entry(library_dict)))
    issue = only_issue(library_dict)
    assert issue.where == HEPARIN
    assert issue.message == (
        "duplicate drug: 'Heparin 25,000 units in 250 mL' (code HEP25K) is listed twice"
    )


def test_duplicate_drug_by_name_in_other_case_with_another_code(library_dict: Lib) -> None:
    twin = copy.deepcopy(entry(library_dict))
    twin["name"] = "HEPARIN"
    twin["code"] = "HEP-OTHER"
    library_dict["care_areas"][0]["entries"].append(twin)
    assert "is listed twice" in only_issue(library_dict).message


def test_duplicate_drug_by_code_under_another_name(library_dict: Lib) -> None:
    twin = copy.deepcopy(entry(library_dict))
    twin["name"] = "Heparin sodium"
    library_dict["care_areas"][0]["entries"].append(twin)
    issue = only_issue(library_dict)
    assert "(code HEP25K) is listed twice" in issue.message


def test_duplicate_drug_without_concentration(library_dict: Lib) -> None:
    library_dict["care_areas"][0]["entries"].append(copy.deepcopy(entry(library_dict, index=5)))
    assert only_issue(library_dict).message == (
        "duplicate drug: 'Sodium chloride 0.9%' (code NS) is listed twice"
    )


def test_duplicate_drug_detected_whatever_the_number_spelling(library_dict: Lib) -> None:
    twin = copy.deepcopy(entry(library_dict))
    twin["concentration"] = {"amount": D("25000.0"), "unit": "units", "volume_ml": D("250.0")}
    library_dict["care_areas"][0]["entries"].append(twin)
    assert "is listed twice" in only_issue(library_dict).message


def test_duplicate_drug_where_names_the_drug(library_dict: Lib) -> None:
    library_dict["care_areas"][0]["entries"].append(copy.deepcopy(entry(library_dict)))
    assert only_issue(library_dict).where == HEPARIN


@pytest.mark.parametrize("name", ["ICU", "icu", " Icu "])
def test_duplicate_care_area(library_dict: Lib, name: str) -> None:
    twin = copy.deepcopy(library_dict["care_areas"][1])
    twin["name"] = name
    library_dict["care_areas"].append(twin)
    issue = only_issue(library_dict)
    assert issue.message == "duplicate care area 'ICU'"


def test_duplicate_care_area_where_names_the_care_area(library_dict: Lib) -> None:
    library_dict["care_areas"].append(copy.deepcopy(library_dict["care_areas"][0]))
    assert only_issue(library_dict).where.startswith("care area 'ICU'")


def test_unlisted_source(library_dict: Lib) -> None:
    entry(library_dict)["sources"] = ["ismp-2020", "uptodate"]
    issue = only_issue(library_dict)
    assert issue.where == HEPARIN
    assert issue.field == "sources[1]"
    assert issue.message == "source 'uptodate' is not listed in the library's sources"


def test_unlisted_source_is_located(library_dict: Lib) -> None:
    entry(library_dict)["sources"] = ["uptodate"]
    issue = only_issue(library_dict)
    assert issue.where == HEPARIN
    assert issue.field == "sources[0]"


# --- every issue at once --------------------------------------------------------------------


def test_several_errors_are_all_reported(library_dict: Lib) -> None:
    entry(library_dict)["continuous"]["hard_max"] = 5
    entry(library_dict, index=1)["concentration"]["unit"] = "IU"
    entry(library_dict, index=3)["dose_unit"] = "cc/h"
    entry(library_dict, area=1)["continuous"]["soft_max"] = "18"
    library_dict["colour"] = "blue"
    issues = issues_of(library_dict)
    assert {(i.where, i.field) for i in issues} == {
        (HEPARIN, "continuous"),
        (NOREPI, "concentration.unit"),
        ("care area 'ICU' > drug 'Nitroglycerin'", "dose_unit"),
        (MEDSURG_HEPARIN, "continuous.soft_max"),
        ("", "colour"),
    }
    assert len(issues) == 5


def test_library_error_lists_every_issue(library_dict: Lib) -> None:
    entry(library_dict)["continuous"]["hard_max"] = 20
    entry(library_dict, index=1)["concentration"]["unit"] = "U"
    with pytest.raises(LibraryError) as info:
        parse_library(library_dict, "icu.json")
    text = str(info.value)
    assert text.startswith("icu.json: 2 problem(s) in the drug library\n")
    assert (
        "  - care area 'ICU' > drug 'Heparin' > continuous: hard_max (20) is below soft_max (25)"
        in text
    )
    assert "  - care area 'ICU' > drug 'Norepinephrine' > concentration.unit: 'U' is on" in text
    assert isinstance(info.value, ValueError)


def test_default_source_name(library_dict: Lib) -> None:
    del library_dict["care_areas"]
    with pytest.raises(LibraryError, match=r"^drug library: 1 problem\(s\)") as info:
        parse_library(library_dict)
    assert info.value.source == "drug library"


def test_every_unlisted_source_is_reported(library_dict: Lib) -> None:
    entry(library_dict)["sources"] = ["uptodate"]
    entry(library_dict, index=1)["sources"] = ["lexicomp"]
    assert len(issues_of(library_dict)) == 2


@pytest.mark.parametrize(
    "library_level",
    [
        pytest.param(lambda d: entry(d, index=1).update(sources=["uptodate"]), id="source"),
        pytest.param(
            lambda d: d["care_areas"].append(copy.deepcopy(d["care_areas"][0])), id="care-area"
        ),
    ],
)
def test_library_level_issues_reported_with_field_issues(
    library_dict: Lib, library_level: Mutate
) -> None:
    library_level(library_dict)
    entry(library_dict, area=1)["continuous"]["hard_max"] = 1  # below soft_max 18
    assert len(issues_of(library_dict)) >= 2


# --- int fields: numbers as strings and booleans --------------------------------------------


@pytest.mark.parametrize("version", ["3", True], ids=["string", "boolean"])
def test_version_must_be_a_json_integer(library_dict: Lib, version: Any) -> None:
    library_dict["version"] = version
    issue = only_issue(library_dict)
    assert issue.field == "version"


def test_non_object_library() -> None:
    for data in ([], None, "library", 3):
        issue = only_issue(data)
        assert issue.where == ""
        assert issue.field == ""
        assert "valid dictionary" in issue.message


# --- LibraryIssue -----------------------------------------------------------------------------


def test_library_issue_str() -> None:
    assert str(LibraryIssue(HEPARIN, "continuous", "bad")) == (
        "care area 'ICU' > drug 'Heparin' > continuous: bad"
    )
    assert str(LibraryIssue("", "care_areas", "missing")) == "care_areas: missing"
    assert str(LibraryIssue("care area 'ICU'", "", "dup")) == "care area 'ICU': dup"
    assert str(LibraryIssue("", "", "not valid JSON")) == "not valid JSON"


# --- Limits ordering, as a property ---------------------------------------------------------

LIMIT_NAMES = ("hard_min", "soft_min", "soft_max", "hard_max")


@given(
    st.lists(
        st.one_of(st.none(), st.decimals(min_value=0, max_value=1000, places=2)),
        min_size=4,
        max_size=4,
    )
)
def test_limits_accept_exactly_the_ordered_chains(values: list[Decimal | None]) -> None:
    given_values = {n: v for n, v in zip(LIMIT_NAMES, values, strict=True) if v is not None}
    present = [v for v in values if v is not None]
    ordered = all(a <= b for a, b in itertools.pairwise(present))
    if ordered:
        limits = Limits(**given_values)  # type: ignore[arg-type]
        for name, value in given_values.items():
            assert getattr(limits, name) == value
    else:
        with pytest.raises(ValidationError, match="is below"):
            Limits(**given_values)  # type: ignore[arg-type]


# --- load_library -------------------------------------------------------------------------------


def test_load_library_from_file(tmp_path: Path, library_dict: Lib) -> None:
    path = tmp_path / "lib.json"
    path.write_text(json.dumps(library_dict), encoding="utf-8")
    lib = load_library(path)
    assert lib.library_id == "test-lib"
    assert load_library(str(path)) == lib


def test_load_library_reads_numbers_as_exact_decimals(tmp_path: Path, library_dict: Lib) -> None:
    path = tmp_path / "lib.json"
    # more significant digits than a binary float holds: must survive exactly
    precise = "0.0100000000000000000001"
    text = json.dumps(library_dict).replace('"soft_min": 0.01', f'"soft_min": {precise}', 1)
    assert precise in text
    path.write_text(text, encoding="utf-8")
    lib = load_library(path)
    assert lib.care_areas[0].entries[1].continuous.soft_min == D(precise)


def test_load_library_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "format": "pumpguard.drug-library/1",\n  "version": \n}', "utf-8")
    with pytest.raises(LibraryError) as info:
        load_library(path)
    assert info.value.source == str(path)
    (issue,) = info.value.issues
    assert issue.where == ""
    assert issue.field == ""
    assert issue.message.startswith("not valid JSON: Expecting value")
    assert "(line 4, column 1)" in issue.message


def test_load_library_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("", "utf-8")
    with pytest.raises(LibraryError, match="not valid JSON"):
        load_library(path)


def test_load_library_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(LibraryError) as info:
        load_library(path)
    (issue,) = info.value.issues
    assert issue.message.startswith("cannot read file: ")
    assert info.value.source == str(path)


def test_load_library_directory(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="cannot read file"):
        load_library(tmp_path)


def test_load_library_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"name": "H\xe9parine"}')
    with pytest.raises(LibraryError, match="cannot read file"):
        load_library(path)


def test_load_library_nan_in_file(tmp_path: Path, library_dict: Lib) -> None:
    path = tmp_path / "nan.json"
    text = json.dumps(library_dict).replace('"hard_max": 40', '"hard_max": NaN', 1)
    path.write_text(text, "utf-8")
    with pytest.raises(LibraryError) as info:
        load_library(path)
    (issue,) = info.value.issues
    assert (issue.where, issue.field) == (HEPARIN, "continuous.hard_max")
    assert issue.message == "must be a finite number"


def test_load_library_validation_errors_name_the_file(tmp_path: Path, library_dict: Lib) -> None:
    entry(library_dict)["continuous"]["hard_max"] = 5
    entry(library_dict, area=1)["dose_unit"] = "U/kg/h"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(library_dict), "utf-8")
    with pytest.raises(LibraryError) as info:
        load_library(path)
    assert info.value.source == str(path)
    assert str(info.value).startswith(f"{path}: 2 problem(s)")
    assert [(i.where, i.field) for i in info.value.issues] == [
        (HEPARIN, "continuous"),
        (MEDSURG_HEPARIN, "dose_unit"),
    ]


# --- JSON Schema ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = library_json_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_schema_header() -> None:
    schema = library_json_schema()
    assert isinstance(schema, dict)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == "https://pumpguard.invalid/schemas/drug-library-1.json"
    assert schema["type"] == "object"
    assert "care_areas" in schema["required"]
    json.dumps(schema)  # serialisable as published


def test_schema_accepts_the_valid_library(
    validator: Draft202012Validator, library_dict: Lib
) -> None:
    errors = list(validator.iter_errors(library_dict))
    assert errors == []


def test_schema_accepts_the_serialised_library(
    validator: Draft202012Validator, library: DrugLibrary
) -> None:
    assert list(validator.iter_errors(library.model_dump(mode="json"))) == []


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_delete("care_areas"), id="no-care-areas"),
        pytest.param(_set("care_areas", []), id="empty-care-areas"),
        pytest.param(_set("format", "other/1"), id="format"),
        pytest.param(_set("colour", "blue"), id="unknown-field"),
        pytest.param(_set(f"{H}.continuous.hard_max", "40"), id="number-as-string"),
        pytest.param(_set(f"{H}.continuous.hard_min", -1), id="negative"),
        pytest.param(_set(f"{H}.concentration.amount", 0), id="zero-amount"),
        pytest.param(_set(f"{H}.pump_kinds", ["ambulatory"]), id="pump-kind"),
        pytest.param(_set(f"{H}.code", "HEP 25K"), id="code-pattern"),
        pytest.param(_delete(f"{H}.dose_unit"), id="missing-dose-unit"),
        pytest.param(_set("version", 0), id="version-0"),
        pytest.param(_set("version", "3"), id="version-string"),
        pytest.param(_set("version", True), id="version-boolean"),
    ],
)
def test_schema_rejects_invalid_libraries(
    validator: Draft202012Validator, library_dict: Lib, mutate: Mutate
) -> None:
    mutate(library_dict)
    assert not validator.is_valid(library_dict)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_delete("care_areas"), id="no-care-areas"),
        pytest.param(_set("colour", "blue"), id="unknown-field"),
        pytest.param(_set(f"{H}.continuous.hard_max", "40"), id="number-as-string"),
        pytest.param(_set(f"{H}.pump_kinds", ["ambulatory"]), id="pump-kind"),
        pytest.param(
            _set("version", "3"),
            id="version-string",
        ),
        pytest.param(
            _set("version", True),
            id="version-boolean",
        ),
    ],
)
def test_what_the_schema_rejects_the_parser_rejects(
    validator: Draft202012Validator, library_dict: Lib, mutate: Mutate
) -> None:
    mutate(library_dict)
    assert not validator.is_valid(library_dict)
    with pytest.raises(LibraryError):
        parse_library(library_dict)
