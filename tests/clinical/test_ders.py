"""Dose error reduction: verdicts, IHE PCD ERR codes, boundaries, units, entry resolution."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pumpguard.clinical import (
    SEVERITY,
    AmountUnit,
    Concentration,
    DersResult,
    DoseKind,
    DrugLibrary,
    Finding,
    Limits,
    Verdict,
    check_dose,
    check_limits,
    parse_dose_unit,
    parse_library,
    resolve_entry,
)

D = Decimal

NOREPI_4MG = "Norepinephrine 4 mg in 250 mL"
NOREPI_8MG = "Norepinephrine 8 mg in 250 mL"


# --- Verdict ----------------------------------------------------------------------------------

EXPECTED_ERR = {
    Verdict.OK: None,
    Verdict.SOFT_LOW: None,
    Verdict.SOFT_HIGH: None,
    Verdict.HARD_LOW: 9024,
    Verdict.HARD_HIGH: 9024,
    Verdict.NO_MATCH: 9010,
    Verdict.UNITS_MISMATCH: 9009,
    Verdict.CARE_AREA_MISMATCH: 9021,
    Verdict.WEIGHT_REQUIRED: 9011,
    Verdict.WEIGHT_OUT_OF_RANGE: 9005,
}


@pytest.mark.parametrize(("verdict", "code"), EXPECTED_ERR.items())
def test_err_codes(verdict: Verdict, code: int | None) -> None:
    assert verdict.err_code == code


def test_every_verdict_has_an_expected_err_code() -> None:
    assert set(EXPECTED_ERR) == set(Verdict)


def test_verdict_values() -> None:
    assert [v.value for v in Verdict] == [
        "ok",
        "soft-low",
        "soft-high",
        "hard-low",
        "hard-high",
        "no-match",
        "units-mismatch",
        "care-area-mismatch",
        "weight-required",
        "weight-out-of-range",
    ]


def test_soft_and_blocking() -> None:
    assert {v for v in Verdict if v.is_soft} == {Verdict.SOFT_LOW, Verdict.SOFT_HIGH}
    assert not Verdict.OK.blocks
    assert not Verdict.SOFT_LOW.blocks
    assert not Verdict.SOFT_HIGH.blocks
    for verdict in Verdict:
        if verdict not in (Verdict.OK, Verdict.SOFT_LOW, Verdict.SOFT_HIGH):
            assert verdict.blocks, verdict
            assert verdict.err_code is not None, verdict  # every blocking verdict has a code
        else:
            assert verdict.err_code is None


def test_severity_orders_every_verdict_once() -> None:
    assert sorted(SEVERITY) == sorted(Verdict)
    assert len(SEVERITY) == len(set(SEVERITY))
    assert SEVERITY[0] is Verdict.OK
    # every blocking verdict outranks every soft one, and soft outranks ok
    for blocking in (v for v in Verdict if v.blocks):
        assert SEVERITY.index(blocking) > SEVERITY.index(Verdict.SOFT_HIGH)
    assert SEVERITY.index(Verdict.SOFT_LOW) > SEVERITY.index(Verdict.OK)
    # the documented order, least severe first
    assert SEVERITY == (
        Verdict.OK,
        Verdict.SOFT_LOW,
        Verdict.SOFT_HIGH,
        Verdict.HARD_LOW,
        Verdict.HARD_HIGH,
        Verdict.WEIGHT_OUT_OF_RANGE,
        Verdict.WEIGHT_REQUIRED,
        Verdict.UNITS_MISMATCH,
        Verdict.NO_MATCH,
        Verdict.CARE_AREA_MISMATCH,
    )


# --- DersResult -------------------------------------------------------------------------------


def test_result_verdict_is_the_most_severe_finding() -> None:
    findings = (
        Finding("a", Verdict.OK, "fine"),
        Finding("b", Verdict.HARD_HIGH, "too much"),
        Finding("c", Verdict.SOFT_LOW, "a bit low"),
        Finding("d", Verdict.HARD_HIGH, "also too much"),
    )
    result = DersResult(findings)
    assert result.verdict is Verdict.HARD_HIGH
    assert result.err_code == 9024
    assert result.message == "too much; also too much"


def test_empty_result_is_ok() -> None:
    result = DersResult(())
    assert result.verdict is Verdict.OK
    assert result.err_code is None
    assert result.message == "within limits"


def test_plus_keeps_entry_and_adds_findings() -> None:
    first = DersResult((Finding("a", Verdict.OK, "fine"),), candidates=("x",))
    second = first.plus([Finding("b", Verdict.SOFT_HIGH, "high")])
    assert [f.field for f in second.findings] == ["a", "b"]
    assert second.candidates == ("x",)
    assert second.verdict is Verdict.SOFT_HIGH
    assert first.verdict is Verdict.OK  # immutable


# --- check_limits -----------------------------------------------------------------------------

LIMITS = Limits(hard_min=2, soft_min=10, soft_max=25, hard_max=40)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "verdict", "limit"),
    [
        (D("-0.01"), Verdict.HARD_LOW, D(0)),
        (D(0), Verdict.HARD_LOW, D(2)),
        (D("1.99"), Verdict.HARD_LOW, D(2)),
        (D(2), Verdict.SOFT_LOW, D(10)),  # at the hard min: not crossing it
        (D("9.99"), Verdict.SOFT_LOW, D(10)),
        (D(10), Verdict.OK, None),  # at the soft min
        (D(18), Verdict.OK, None),
        (D(25), Verdict.OK, None),  # at the soft max
        (D("25.01"), Verdict.SOFT_HIGH, D(25)),
        (D(40), Verdict.SOFT_HIGH, D(25)),  # at the hard max: not crossing it
        (D("40.0000001"), Verdict.HARD_HIGH, D(40)),
        (D(1000), Verdict.HARD_HIGH, D(40)),
    ],
)
def test_check_limits_boundaries(value: Decimal, verdict: Verdict, limit: Decimal | None) -> None:
    finding = check_limits("continuous", value, LIMITS, "units/kg/h")
    assert finding.verdict is verdict
    assert finding.limit == limit
    assert finding.value == value
    assert finding.field == "continuous"
    assert finding.unit == "units/kg/h"


def test_check_limits_messages() -> None:
    unit = "units/kg/h"
    assert check_limits("continuous", D("41.50"), LIMITS, unit).message == (
        "continuous 41.5 units/kg/h is above hard max 40 units/kg/h"
    )
    assert check_limits("continuous", D(1), LIMITS, unit).message == (
        "continuous 1 units/kg/h is below hard min 2 units/kg/h"
    )
    assert check_limits("continuous", D(30), LIMITS, unit).message == (
        "continuous 30 units/kg/h is above soft max 25 units/kg/h"
    )
    assert check_limits("continuous", D(5), LIMITS, unit).message == (
        "continuous 5 units/kg/h is below soft min 10 units/kg/h"
    )
    assert check_limits("continuous", D(18), LIMITS, unit).message == (
        "continuous 18 units/kg/h is within limits"
    )
    assert check_limits("continuous", D(-3), LIMITS, unit).message == (
        "continuous -3 units/kg/h is negative"
    )
    # large values are not printed in exponent notation
    assert "1000 " in check_limits("bolus", D("1E+3"), LIMITS, unit).message


def test_check_limits_without_limits() -> None:
    finding = check_limits("loading", D(5), None, "mg")
    assert finding.verdict is Verdict.OK
    assert finding.message == "loading 5 mg: no limits"
    negative = check_limits("loading", D(-5), None, "mg")
    assert negative.verdict is Verdict.HARD_LOW
    assert negative.limit == 0


def test_check_limits_with_only_some_limits() -> None:
    only_max = Limits(hard_max=10)  # type: ignore[arg-type]
    assert check_limits("x", D(0), only_max, "").verdict is Verdict.OK
    assert check_limits("x", D(10), only_max, "").verdict is Verdict.OK
    assert check_limits("x", D(11), only_max, "").verdict is Verdict.HARD_HIGH
    assert check_limits("x", D(11), only_max, "").message == "x 11 is above hard max 10"
    only_soft_min = Limits(soft_min=1)  # type: ignore[arg-type]
    assert check_limits("x", D("0.5"), only_soft_min, "").verdict is Verdict.SOFT_LOW
    assert check_limits("x", D(10**6), only_soft_min, "").verdict is Verdict.OK


limit_values = st.decimals(min_value=0, max_value=1000, places=2)


@given(st.lists(limit_values, min_size=4, max_size=4), st.decimals(-10, 2000, places=3))
def test_check_limits_agrees_with_a_direct_reading(bounds: list[Decimal], value: Decimal) -> None:
    hard_min, soft_min, soft_max, hard_max = sorted(bounds)
    limits = Limits(
        hard_min=hard_min,  # type: ignore[arg-type]
        soft_min=soft_min,  # type: ignore[arg-type]
        soft_max=soft_max,  # type: ignore[arg-type]
        hard_max=hard_max,  # type: ignore[arg-type]
    )
    verdict = check_limits("continuous", value, limits, "mg/h").verdict
    if value < hard_min or value > hard_max:
        expected = Verdict.HARD_LOW if value < hard_min else Verdict.HARD_HIGH
    elif value < soft_min:
        expected = Verdict.SOFT_LOW
    elif value > soft_max:
        expected = Verdict.SOFT_HIGH
    else:
        expected = Verdict.OK
    assert verdict is expected


# --- check_dose: every verdict ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("dose", "weight", "verdict", "code"),
    [
        (D(18), D(80), Verdict.OK, None),
        (D(5), D(80), Verdict.SOFT_LOW, None),
        (D(30), D(80), Verdict.SOFT_HIGH, None),
        (D(1), D(80), Verdict.HARD_LOW, 9024),
        (D(50), D(80), Verdict.HARD_HIGH, 9024),
        (D(-1), D(80), Verdict.HARD_LOW, 9024),
        (D(18), None, Verdict.WEIGHT_REQUIRED, 9011),
        (D(18), D(20), Verdict.WEIGHT_OUT_OF_RANGE, 9005),
        (D(18), D(201), Verdict.WEIGHT_OUT_OF_RANGE, 9005),
    ],
)
def test_heparin_verdicts(
    library: DrugLibrary, dose: Decimal, weight: Decimal | None, verdict: Verdict, code: int | None
) -> None:
    result = check_dose(library, "ICU", "Heparin", dose, "units/kg/h", weight_kg=weight)
    assert result.verdict is verdict
    assert result.err_code == code
    assert result.entry is not None
    assert result.entry.code == "HEP25K"
    assert result.care_area is not None
    assert result.care_area.name == "ICU"


def test_ok_result(library: DrugLibrary) -> None:
    result = check_dose(library, "ICU", "Heparin", D(18), "units/kg/h", weight_kg=D(80))
    assert result.verdict is Verdict.OK
    assert not result.verdict.blocks
    assert result.message == "continuous 18 units/kg/h is within limits"
    (finding,) = result.findings
    assert finding.field == "continuous"
    assert finding.value == D(18)
    assert finding.unit == "units/kg/h"


def test_hard_high_message_and_limit(library: DrugLibrary) -> None:
    result = check_dose(library, "ICU", "Heparin", D(50), "units/kg/h", weight_kg=D(80))
    assert result.message == "continuous 50 units/kg/h is above hard max 40 units/kg/h"
    worst = [f for f in result.findings if f.verdict is Verdict.HARD_HIGH]
    assert [(f.value, f.limit) for f in worst] == [(D(50), D(40))]
    assert result.verdict.blocks


def test_negative_dose_is_hard_low(library: DrugLibrary) -> None:
    result = check_dose(library, "ICU", "Sodium chloride 0.9%", D(-10), "mL/h")
    assert result.verdict is Verdict.HARD_LOW
    assert result.err_code == 9024
    assert "is negative" in result.message


def test_nan_dose_never_passes(library: DrugLibrary) -> None:
    try:
        result = check_dose(library, "ICU", "Heparin", D("NaN"), "units/kg/h", weight_kg=D(80))
    except ArithmeticError:
        return  # refusing to compare is acceptable; passing is not
    assert result.verdict.blocks


def test_infinite_dose_is_hard_high(library: DrugLibrary) -> None:
    result = check_dose(library, "ICU", "Heparin", D("Infinity"), "units/kg/h", weight_kg=D(80))
    assert result.verdict is Verdict.HARD_HIGH


@pytest.mark.parametrize(
    ("area", "dose", "verdict"),
    [
        ("ICU", D(30), Verdict.SOFT_HIGH),
        ("Med-Surg", D(30), Verdict.HARD_HIGH),
        ("ICU", D(20), Verdict.OK),
        ("Med-Surg", D(20), Verdict.SOFT_HIGH),
        ("med-surg", D(25), Verdict.SOFT_HIGH),  # at Med-Surg's hard max
    ],
)
def test_limits_depend_on_the_care_area(
    library: DrugLibrary, area: str, dose: Decimal, verdict: Verdict
) -> None:
    result = check_dose(library, area, "Heparin", dose, "units/kg/h", weight_kg=D(80))
    assert result.verdict is verdict


def test_care_area_mismatch(library: DrugLibrary) -> None:
    result = check_dose(library, "NICU", "Heparin", D(18), "units/kg/h", weight_kg=D(80))
    assert result.verdict is Verdict.CARE_AREA_MISMATCH
    assert result.err_code == 9021
    assert result.entry is None
    assert result.care_area is None
    assert result.message == (
        "care area 'NICU' is not in library test-lib v3 (known: ICU, Med-Surg)"
    )


def test_care_area_is_case_insensitive(library: DrugLibrary) -> None:
    result = check_dose(library, " icu ", "Heparin", D(18), "units/kg/h", weight_kg=D(80))
    assert result.verdict is Verdict.OK
    assert result.care_area is not None
    assert result.care_area.name == "ICU"


def test_no_match_for_unknown_drug(library: DrugLibrary) -> None:
    result = check_dose(library, "ICU", "Propofol", D(20), "mcg/kg/min", weight_kg=D(70))
    assert result.verdict is Verdict.NO_MATCH
    assert result.err_code == 9010
    assert result.entry is None
    assert result.care_area is not None
    assert result.care_area.name == "ICU"
    assert result.candidates == ()
    assert result.message == "no entry for 'Propofol' in care area ICU"


def test_drug_in_another_care_area_only_is_no_match(library: DrugLibrary) -> None:
    result = check_dose(library, "Med-Surg", "Norepinephrine", D("0.1"), "mcg/kg/min")
    assert result.verdict is Verdict.NO_MATCH


@pytest.mark.parametrize("name", ["Heparin", "heparin", "HEPARIN", "  Heparin ", "HEP25K"])
def test_drug_by_name_in_any_case_or_exact_code(library: DrugLibrary, name: str) -> None:
    result = check_dose(library, "ICU", name, D(18), "units/kg/h", weight_kg=D(80))
    assert result.verdict is Verdict.OK
    assert result.entry is not None
    assert result.entry.code == "HEP25K"


@pytest.mark.parametrize("name", ["hep25k", "Hep25K", "HEP25", "Hepari"])
def test_codes_match_exactly(library: DrugLibrary, name: str) -> None:
    result = check_dose(library, "ICU", name, D(18), "units/kg/h", weight_kg=D(80))
    assert result.verdict is Verdict.NO_MATCH


# --- units -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "words"),
    [
        ("mg/kg/h", "Heparin is dosed in units/kg/h here, not mg/kg/h"),  # mass vs activity
        ("units/h", "Heparin is dosed in units/kg/h here, not units/h"),  # not per kg
        ("mL/h", "Heparin is dosed in units/kg/h here, not mL/h"),  # volume vs activity
        ("units/kg", "Heparin is dosed in units/kg/h here, not units/kg"),  # not a rate
        ("U/kg/h", "'U' is on the ISMP error-prone list"),
        ("IU/kg/h", "'IU' is on the ISMP error-prone list"),
        ("units/m2/h", "'m2' is neither 'kg' nor a time"),
        ("", "a dose unit is required"),
    ],
)
def test_units_mismatch(library: DrugLibrary, unit: str, words: str) -> None:
    result = check_dose(library, "ICU", "Heparin", D(18), unit, weight_kg=D(80))
    assert result.verdict is Verdict.UNITS_MISMATCH
    assert result.err_code == 9009
    assert words in result.message
    assert result.entry is not None  # the drug was found; its units were wrong


def test_dose_unit_may_be_a_parsed_unit(library: DrugLibrary) -> None:
    result = check_dose(
        library, "ICU", "Heparin", D(18), parse_dose_unit("units/kg/h"), weight_kg=D(80)
    )
    assert result.verdict is Verdict.OK


def test_compatible_units_are_converted_hourly_to_per_minute(library: DrugLibrary) -> None:
    # Heparin limits are in units/kg/h; 0.5 units/kg/min = 30 units/kg/h: above soft max 25
    result = check_dose(library, "ICU", "Heparin", D("0.5"), "units/kg/min", weight_kg=D(80))
    assert result.verdict is Verdict.SOFT_HIGH
    (finding,) = result.findings
    assert finding.value == D(30)
    assert finding.unit == "units/kg/h"


@pytest.mark.parametrize(
    ("dose", "unit", "value", "verdict"),
    [
        (D(6), "mg/h", D(100), Verdict.OK),  # 6 mg/h = 100 mcg/min
        (D(12), "mg/h", D(200), Verdict.OK),  # exactly at soft max 200 mcg/min
        (D("12.06"), "mg/h", D(201), Verdict.SOFT_HIGH),
        (D("0.2"), "mg/min", D(200), Verdict.OK),
        (D("0.4"), "mg/min", D(400), Verdict.SOFT_HIGH),  # exactly at hard max 400
        (D("0.401"), "mg/min", D(401), Verdict.HARD_HIGH),
        (D(30), "mg/h", D(500), Verdict.HARD_HIGH),
        (D("0.06"), "mg/h", D(1), Verdict.SOFT_LOW),
        (D(300_000), "ng/min", D(300), Verdict.SOFT_HIGH),
        (D("0.0003"), "g/min", D(300), Verdict.SOFT_HIGH),
    ],
)
def test_dose_in_mg_per_h_is_checked_against_mcg_per_min_entry(
    library: DrugLibrary, dose: Decimal, unit: str, value: Decimal, verdict: Verdict
) -> None:
    result = check_dose(library, "ICU", "Nitroglycerin", dose, unit)
    assert result.verdict is verdict
    (finding,) = result.findings
    assert finding.unit == "mcg/min"
    assert abs(finding.value - value) < D("1e-20")  # type: ignore[operator]


def test_dose_exactly_at_hard_max_after_conversion_is_not_crossing(library: DrugLibrary) -> None:
    result = check_dose(library, "ICU", "Nitroglycerin", D(24), "mg/h")
    assert result.verdict is Verdict.SOFT_HIGH


def test_continuous_dose_in_ml_per_h(library: DrugLibrary) -> None:
    assert check_dose(library, "ICU", "NS", D(125), "mL/h").verdict is Verdict.OK
    assert check_dose(library, "ICU", "NS", D(500), "mL/h").verdict is Verdict.SOFT_HIGH
    assert check_dose(library, "ICU", "NS", D(501), "mL/h").verdict is Verdict.HARD_HIGH
    # 8 mL/min = 480 mL/h
    assert check_dose(library, "ICU", "NS", D(8), "mL/min").verdict is Verdict.SOFT_HIGH
    assert check_dose(library, "ICU", "NS", D(10), "mL/min").verdict is Verdict.HARD_HIGH


# --- weight ------------------------------------------------------------------------------------


def test_weight_required_for_per_kg_dosing(library: DrugLibrary) -> None:
    result = check_dose(library, "ICU", "Heparin", D(18), "units/kg/h")
    assert result.verdict is Verdict.WEIGHT_REQUIRED
    assert result.err_code == 9011
    assert result.message == "units/kg/h dosing needs a weight"


def test_weight_required_outranks_a_hard_limit(library: DrugLibrary) -> None:
    result = check_dose(library, "ICU", "Heparin", D(50), "units/kg/h")
    verdicts = {f.verdict for f in result.findings}
    assert verdicts == {Verdict.WEIGHT_REQUIRED, Verdict.HARD_HIGH}
    assert result.verdict is Verdict.WEIGHT_REQUIRED


def test_weight_required_even_without_a_weight_range(library: DrugLibrary) -> None:
    result = check_dose(library, "ICU", "NOREPI4", D("0.1"), "mcg/kg/min")
    assert result.verdict is Verdict.WEIGHT_REQUIRED


@pytest.mark.parametrize(
    ("weight", "verdict"),
    [
        (D("29.9"), Verdict.WEIGHT_OUT_OF_RANGE),
        (D(30), Verdict.OK),  # at min_kg
        (D(200), Verdict.OK),  # at max_kg
        (D("200.1"), Verdict.WEIGHT_OUT_OF_RANGE),
        (D(0), Verdict.WEIGHT_OUT_OF_RANGE),
        (D(-80), Verdict.WEIGHT_OUT_OF_RANGE),
    ],
)
def test_weight_range_boundaries(library: DrugLibrary, weight: Decimal, verdict: Verdict) -> None:
    result = check_dose(library, "ICU", "Heparin", D(18), "units/kg/h", weight_kg=weight)
    assert result.verdict is verdict


def test_weight_out_of_range_message(library: DrugLibrary) -> None:
    result = check_dose(library, "ICU", "Heparin", D(18), "units/kg/h", weight_kg=D(20))
    assert result.err_code == 9005
    assert result.message == (
        "weight 20 kg is outside 30-200 kg for Heparin 25,000 units in 250 mL in ICU"
    )


def test_weight_out_of_range_outranks_a_hard_limit(library: DrugLibrary) -> None:
    result = check_dose(library, "ICU", "Heparin", D(50), "units/kg/h", weight_kg=D(20))
    assert result.verdict is Verdict.WEIGHT_OUT_OF_RANGE


@pytest.mark.parametrize("weight", [D(0), D(-70)])
def test_non_positive_weight_without_a_range(library: DrugLibrary, weight: Decimal) -> None:
    result = check_dose(library, "ICU", "NOREPI4", D("0.1"), "mcg/kg/min", weight_kg=weight)
    assert result.verdict is Verdict.WEIGHT_OUT_OF_RANGE
    assert result.message == "weight must be positive"


def test_weight_is_not_needed_for_a_dose_that_is_not_per_kg(library: DrugLibrary) -> None:
    assert check_dose(library, "ICU", "Nitroglycerin", D(50), "mcg/min").verdict is Verdict.OK


# --- concentrations ----------------------------------------------------------------------------


def test_two_concentrations_are_ambiguous(library: DrugLibrary) -> None:
    result = check_dose(library, "ICU", "Norepinephrine", D("0.1"), "mcg/kg/min", weight_kg=D(70))
    assert result.verdict is Verdict.NO_MATCH
    assert result.err_code == 9010
    assert result.entry is None
    assert result.candidates == (NOREPI_4MG, NOREPI_8MG)
    assert result.message == "'Norepinephrine' has 2 concentrations in ICU; name one"


@pytest.mark.parametrize(
    ("concentration", "code"),
    [
        (Concentration(D(4), AmountUnit.MG, D(250)), "NOREPI4"),
        (Concentration(D(8), AmountUnit.MG, D(250)), "NOREPI8"),
        (Concentration(D(16), AmountUnit.MCG, D(1)), "NOREPI4"),  # same per mL, other spelling
        (Concentration(D(16_000), AmountUnit.MCG, D(500)), "NOREPI8"),
        (Concentration(D("0.032"), AmountUnit.MG, D(1)), "NOREPI8"),
    ],
)
def test_naming_the_concentration_resolves(
    library: DrugLibrary, concentration: Concentration, code: str
) -> None:
    result = check_dose(
        library,
        "ICU",
        "norepinephrine",
        D("0.1"),
        "mcg/kg/min",
        weight_kg=D(70),
        concentration=concentration,
    )
    assert result.verdict is Verdict.OK
    assert result.entry is not None
    assert result.entry.code == code


def test_unknown_concentration_is_no_match(library: DrugLibrary) -> None:
    conc = Concentration(D(16), AmountUnit.MG, D(250))
    result = check_dose(
        library,
        "ICU",
        "Norepinephrine",
        D("0.1"),
        "mcg/kg/min",
        weight_kg=D(70),
        concentration=conc,
    )
    assert result.verdict is Verdict.NO_MATCH
    assert result.candidates == ()
    assert result.message == "no entry for 'Norepinephrine' in care area ICU at 16 mg in 250 mL"


def test_concentration_in_another_dimension_is_no_match(library: DrugLibrary) -> None:
    conc = Concentration(D(25000), AmountUnit.UNITS, D(250))
    result = check_dose(
        library, "ICU", "NOREPI4", D("0.1"), "mcg/kg/min", weight_kg=D(70), concentration=conc
    )
    assert result.verdict is Verdict.NO_MATCH


def test_code_resolves_without_concentration(library: DrugLibrary) -> None:
    result = check_dose(library, "ICU", "NOREPI8", D("0.1"), "mcg/kg/min", weight_kg=D(70))
    assert result.verdict is Verdict.OK
    assert result.entry is not None
    assert result.entry.label() == NOREPI_8MG


def test_resolve_entry(library: DrugLibrary) -> None:
    found = resolve_entry(library, "ICU", "Heparin")
    assert found.findings == ()
    assert found.verdict is Verdict.OK
    assert found.entry is not None
    assert found.entry.name == "Heparin"
    ambiguous = resolve_entry(library, "icu", "Norepinephrine")
    assert ambiguous.entry is None
    assert ambiguous.candidates == (NOREPI_4MG, NOREPI_8MG)
    assert ambiguous.care_area is not None
    assert ambiguous.care_area.name == "ICU"
    missing_area = resolve_entry(library, "ER", "Heparin")
    assert missing_area.verdict is Verdict.CARE_AREA_MISMATCH
    assert missing_area.care_area is None


# --- dose kinds --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dose", "unit", "verdict"),
    [
        (D(80), "units/kg", Verdict.OK),  # at the bolus soft max
        (D(90), "units/kg", Verdict.SOFT_HIGH),
        (D(100), "units/kg", Verdict.SOFT_HIGH),  # at the bolus hard max
        (D(101), "units/kg", Verdict.HARD_HIGH),
        (D(-1), "units/kg", Verdict.HARD_LOW),
        (D(90_000), "milliunits/kg", Verdict.SOFT_HIGH),
        (D(80), "units/kg/h", Verdict.UNITS_MISMATCH),  # a rate is not a bolus
        (D(6400), "units", Verdict.UNITS_MISMATCH),  # bolus rule is per kg
    ],
)
def test_bolus_uses_the_bolus_rule(
    library: DrugLibrary, dose: Decimal, unit: str, verdict: Verdict
) -> None:
    result = check_dose(library, "ICU", "Heparin", dose, unit, weight_kg=D(80), kind=DoseKind.BOLUS)
    assert result.verdict is verdict


def test_bolus_findings_are_labelled_bolus(library: DrugLibrary) -> None:
    # 50 units/kg/h would be hard-high as a continuous dose, but is fine as a bolus
    assert (
        check_dose(library, "ICU", "Heparin", D(50), "units/kg/h", weight_kg=D(80)).verdict
        is Verdict.HARD_HIGH
    )
    result = check_dose(
        library, "ICU", "Heparin", D(50), "units/kg", weight_kg=D(80), kind=DoseKind.BOLUS
    )
    assert result.verdict is Verdict.OK
    (finding,) = result.findings
    assert finding.field == "bolus"
    assert finding.unit == "units/kg"


def test_bolus_per_kg_still_needs_weight(library: DrugLibrary) -> None:
    result = check_dose(library, "ICU", "Heparin", D(50), "units/kg", kind=DoseKind.BOLUS)
    assert result.verdict is Verdict.WEIGHT_REQUIRED


@pytest.mark.parametrize(
    ("dose", "unit", "verdict"),
    [
        (D(25), "mcg", Verdict.OK),
        (D(50), "mcg", Verdict.OK),
        (D(60), "mcg", Verdict.SOFT_HIGH),
        (D(150), "mcg", Verdict.HARD_HIGH),
        (D("0.15"), "mg", Verdict.HARD_HIGH),  # 150 mcg
        (D("0.1"), "mg", Verdict.SOFT_HIGH),  # exactly 100 mcg: at the hard max
        (D(25), "mcg/h", Verdict.UNITS_MISMATCH),
    ],
)
def test_pca_demand_uses_the_pca_rule(
    library: DrugLibrary, dose: Decimal, unit: str, verdict: Verdict
) -> None:
    result = check_dose(library, "ICU", "FENT-PCA", dose, unit, kind=DoseKind.PCA_DEMAND)
    assert result.verdict is verdict
    if verdict is not Verdict.UNITS_MISMATCH:
        (finding,) = result.findings
        assert finding.field == "pca-demand"
        assert finding.unit == "mcg"


def test_pca_loading_dose_uses_the_loading_rule(library: DrugLibrary) -> None:
    def loading(dose: Decimal) -> Verdict:
        return check_dose(
            library, "ICU", "Fentanyl PCA", dose, "mcg", kind=DoseKind.LOADING
        ).verdict

    assert loading(D(40)) is Verdict.OK
    assert loading(D(75)) is Verdict.SOFT_HIGH
    assert loading(D(120)) is Verdict.HARD_HIGH


def test_pca_background_infusion_uses_the_continuous_rule(library: DrugLibrary) -> None:
    # 150 mcg/h background: above the continuous hard max 100 mcg/h
    result = check_dose(library, "ICU", "Fentanyl PCA", D(150), "mcg/h")
    assert result.verdict is Verdict.HARD_HIGH
    assert result.findings[-1].field == "continuous"


@pytest.mark.parametrize(
    ("drug", "kind"),
    [
        ("Heparin", DoseKind.PCA_DEMAND),
        ("Heparin", DoseKind.LOADING),
        ("Nitroglycerin", DoseKind.BOLUS),
        ("Fentanyl PCA", DoseKind.BOLUS),
    ],
)
def test_missing_rule_for_the_kind_is_no_match(
    library: DrugLibrary, drug: str, kind: DoseKind
) -> None:
    result = check_dose(library, "ICU", drug, D(1), "mcg", weight_kg=D(80), kind=kind)
    assert result.verdict is Verdict.NO_MATCH
    assert result.err_code == 9010
    assert f"has no {kind} rule in ICU" in result.message
    assert result.entry is not None


def test_loading_without_a_loading_rule_is_no_match(library_dict: dict[str, object]) -> None:
    areas = library_dict["care_areas"]
    assert isinstance(areas, list)
    del areas[0]["entries"][4]["pca"]["loading_dose"]
    lib = parse_library(library_dict)
    result = check_dose(lib, "ICU", "FENT-PCA", D(10), "mcg", kind=DoseKind.LOADING)
    assert result.verdict is Verdict.NO_MATCH


# --- properties --------------------------------------------------------------------------------


@given(dose=st.decimals(min_value=0, max_value=100, places=4))
def test_heparin_verdict_follows_the_limits(library: DrugLibrary, dose: Decimal) -> None:
    # independent reading of the ICU Heparin limits: hard 2 / soft 10-25 / hard 40
    result = check_dose(library, "ICU", "Heparin", dose, "units/kg/h", weight_kg=D(80))
    if dose < 2:
        assert result.verdict is Verdict.HARD_LOW
    elif dose < 10:
        assert result.verdict is Verdict.SOFT_LOW
    elif dose <= 25:
        assert result.verdict is Verdict.OK
    elif dose <= 40:
        assert result.verdict is Verdict.SOFT_HIGH
    else:
        assert result.verdict is Verdict.HARD_HIGH
