"""Dose <-> flow and dose <-> volume conversion, and the rounding rules of dosing.py."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pumpguard.clinical import (
    ML_PER_H,
    AmountUnit,
    Concentration,
    DoseUnit,
    DosingError,
    TimeUnit,
    dose_to_flow,
    dose_to_volume,
    flow_to_dose,
    parse_dose_unit,
    round_down,
    volume_to_dose,
)

D = Decimal

HEPARIN = Concentration(D(25000), AmountUnit.UNITS, D(250))  # 100 units/mL
NOREPI = Concentration(D(4), AmountUnit.MG, D(250))  # 16 mcg/mL


# --- round_down -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "step", "expected"),
    [
        (D("26.25"), D("0.01"), D("26.25")),
        (D("13.125"), D("0.01"), D("13.12")),
        (D("13.125"), D("0.1"), D("13.1")),
        (D("13.125"), D(1), D(13)),
        (D("13.999"), D("0.5"), D("13.5")),
        (D("14.0"), D("0.5"), D(14)),
        (D("0.009"), D("0.01"), D(0)),
        (D(0), D("0.01"), D(0)),
        (D("1.05"), D("0.05"), D("1.05")),
        (D("7.77"), D("0.25"), D("7.75")),
    ],
)
def test_round_down_examples(value: Decimal, step: Decimal, expected: Decimal) -> None:
    assert round_down(value, step) == expected


def test_round_down_goes_towards_zero_for_negative_values() -> None:
    # documented as "towards zero"; a negative value is never a real flow
    assert round_down(D("-1.019"), D("0.01")) == D("-1.01")


@pytest.mark.parametrize("step", [D(0), D("-0.01")])
def test_round_down_rejects_non_positive_step(step: Decimal) -> None:
    with pytest.raises(ValueError, match="step must be positive"):
        round_down(D(1), step)


steps = st.sampled_from([D("0.001"), D("0.01"), D("0.05"), D("0.1"), D("0.25"), D(1), D(5)])


@given(st.decimals(min_value=0, max_value=100_000, places=6), steps)
def test_round_down_never_exceeds_input_and_loses_less_than_a_step(
    value: Decimal, step: Decimal
) -> None:
    rounded = round_down(value, step)
    assert rounded <= value
    assert value - rounded < step
    assert rounded >= 0
    # a multiple of the step, and a fixed point
    assert rounded % step == 0
    assert round_down(rounded, step) == rounded


# --- Concentration --------------------------------------------------------------------------


def test_concentration_per_ml() -> None:
    assert HEPARIN.per_ml(AmountUnit.UNITS) == D(100)
    assert HEPARIN.per_ml(AmountUnit.MILLIUNITS) == D(100_000)
    assert NOREPI.per_ml(AmountUnit.MCG) == D(16)
    assert NOREPI.per_ml(AmountUnit.MG) == D("0.016")
    assert NOREPI.per_ml(AmountUnit.NG) == D(16_000)


def test_concentration_per_ml_refuses_other_dimension() -> None:
    with pytest.raises(DosingError, match=r"dose in units cannot be given from .* mg/mL"):
        NOREPI.per_ml(AmountUnit.UNITS)
    with pytest.raises(DosingError, match="cannot be given"):
        HEPARIN.per_ml(AmountUnit.MG)


@pytest.mark.parametrize(
    ("amount", "unit", "volume", "words"),
    [
        (D(0), AmountUnit.MG, D(250), "positive amount and volume"),
        (D(-4), AmountUnit.MG, D(250), "positive amount and volume"),
        (D(4), AmountUnit.MG, D(0), "positive amount and volume"),
        (D(4), AmountUnit.MG, D(-1), "positive amount and volume"),
        (D(4), AmountUnit.ML, D(250), "not mL"),
    ],
)
def test_concentration_validation(
    amount: Decimal, unit: AmountUnit, volume: Decimal, words: str
) -> None:
    with pytest.raises(DosingError, match=words):
        Concentration(amount, unit, volume)


def test_concentration_str() -> None:
    assert str(HEPARIN) == "25,000 units in 250 mL"
    assert str(NOREPI) == "4 mg in 250 mL"


def test_dosing_error_is_a_value_error() -> None:
    assert issubclass(DosingError, ValueError)


def test_ml_per_h_constant() -> None:
    assert DoseUnit(AmountUnit.ML, time=TimeUnit.H) == ML_PER_H
    assert str(ML_PER_H) == "mL/h"


# --- dose -> flow -> dose -------------------------------------------------------------------


def test_heparin_weight_based_flow() -> None:
    # 18 units/kg/h x 80 kg = 1,440 units/h; at 100 units/mL that is 14.4 mL/h
    unit = parse_dose_unit("units/kg/h")
    flow = dose_to_flow(D(18), unit, HEPARIN, D(80))
    assert flow == D("14.4")
    assert dose_to_flow(D(18), unit, HEPARIN, D(80), step=D("0.1")) == D("14.4")
    assert flow_to_dose(flow, unit, HEPARIN, D(80)) == D(18)


def test_norepinephrine_weight_based_flow() -> None:
    # 0.1 mcg/kg/min x 70 kg = 7 mcg/min = 420 mcg/h; at 16 mcg/mL that is 26.25 mL/h
    unit = parse_dose_unit("mcg/kg/min")
    assert dose_to_flow(D("0.1"), unit, NOREPI, D(70)) == D("26.25")
    assert dose_to_flow(D("0.1"), unit, NOREPI, D(70), step=D("0.01")) == D("26.25")
    assert flow_to_dose(D("26.25"), unit, NOREPI, D(70)) == D("0.1")


def test_flow_is_rounded_down_to_the_step() -> None:
    # 0.05 mcg/kg/min x 70 kg at 16 mcg/mL = 13.125 mL/h exactly
    unit = parse_dose_unit("mcg/kg/min")
    assert dose_to_flow(D("0.05"), unit, NOREPI, D(70)) == D("13.125")
    assert dose_to_flow(D("0.05"), unit, NOREPI, D(70), step=D("0.01")) == D("13.12")
    assert dose_to_flow(D("0.05"), unit, NOREPI, D(70), step=D("0.1")) == D("13.1")
    assert dose_to_flow(D("0.05"), unit, NOREPI, D(70), step=D(1)) == D(13)
    # the rounded rate delivers slightly less than ordered, never more
    delivered = flow_to_dose(D("13.12"), unit, NOREPI, D(70))
    assert delivered < D("0.05")
    assert D("0.05") - delivered < D("0.0001")


def test_unit_conversion_inside_dose_to_flow() -> None:
    # the same 7 mcg/min, ordered three ways, is the same 26.25 mL/h
    assert dose_to_flow(D(7), parse_dose_unit("mcg/min"), NOREPI) == D("26.25")
    assert dose_to_flow(D("0.42"), parse_dose_unit("mg/h"), NOREPI) == D("26.25")
    assert dose_to_flow(D(7000), parse_dose_unit("ng/min"), NOREPI) == D("26.25")
    # 1,000 units/h of heparin is 10 mL/h; 1,000,000 milliunits/h likewise
    assert dose_to_flow(D(1000), parse_dose_unit("units/h"), HEPARIN) == D(10)
    assert dose_to_flow(D(1_000_000), parse_dose_unit("milliunits/h"), HEPARIN) == D(10)


def test_ml_per_h_needs_no_concentration() -> None:
    assert dose_to_flow(D(125), ML_PER_H, None) == D(125)
    assert dose_to_flow(D("2.5"), parse_dose_unit("mL/min"), None) == D(150)
    assert flow_to_dose(D(150), parse_dose_unit("mL/min"), None) == D("2.5")
    # a weight is ignored for a dose that is not per kg
    assert dose_to_flow(D(125), ML_PER_H, None, D(70)) == D(125)
    assert dose_to_flow(D(2), parse_dose_unit("mL/kg/h"), None, D(70)) == D(140)


def test_weight_is_ignored_when_the_dose_is_not_per_kg() -> None:
    unit = parse_dose_unit("units/h")
    assert dose_to_flow(D(1000), unit, HEPARIN, D(80)) == dose_to_flow(D(1000), unit, HEPARIN)


@pytest.mark.parametrize("weight", [None, D(0), D(-70)])
def test_per_kg_dose_needs_a_positive_weight(weight: Decimal | None) -> None:
    unit = parse_dose_unit("units/kg/h")
    with pytest.raises(DosingError, match="units/kg/h needs the patient's weight"):
        dose_to_flow(D(18), unit, HEPARIN, weight)
    with pytest.raises(DosingError, match="needs the patient's weight"):
        flow_to_dose(D("14.4"), unit, HEPARIN, weight)


def test_drug_dose_needs_a_concentration() -> None:
    with pytest.raises(DosingError, match="mg/h needs the drug's concentration"):
        dose_to_flow(D(1), parse_dose_unit("mg/h"), None)
    with pytest.raises(DosingError, match="needs the drug's concentration"):
        flow_to_dose(D(1), parse_dose_unit("mg/h"), None)


def test_dose_and_concentration_in_different_dimensions() -> None:
    with pytest.raises(DosingError, match="cannot be given from a concentration"):
        dose_to_flow(D(1), parse_dose_unit("units/h"), NOREPI)
    with pytest.raises(DosingError, match="cannot be given from a concentration"):
        flow_to_dose(D(1), parse_dose_unit("mg/h"), HEPARIN)


def test_dose_to_flow_needs_a_rate() -> None:
    with pytest.raises(DosingError, match="mg is not a rate"):
        dose_to_flow(D(1), parse_dose_unit("mg"), NOREPI)
    with pytest.raises(DosingError, match="mg/kg is not a rate"):
        flow_to_dose(D(1), parse_dose_unit("mg/kg"), NOREPI, D(70))


# --- bolus: dose <-> volume -----------------------------------------------------------------


def test_bolus_volume() -> None:
    # 80 units/kg x 80 kg = 6,400 units = 64 mL at 100 units/mL
    unit = parse_dose_unit("units/kg")
    assert dose_to_volume(D(80), unit, HEPARIN, D(80)) == D(64)
    assert volume_to_dose(D(64), unit, HEPARIN, D(80)) == D(80)
    # 5,000 units flat is 50 mL
    assert dose_to_volume(D(5000), parse_dose_unit("units"), HEPARIN) == D(50)


def test_bolus_volume_is_rounded_down_to_the_step() -> None:
    # 50 mcg of norepinephrine at 16 mcg/mL = 3.125 mL
    unit = parse_dose_unit("mcg")
    assert dose_to_volume(D(50), unit, NOREPI) == D("3.125")
    assert dose_to_volume(D(50), unit, NOREPI, step=D("0.01")) == D("3.12")
    assert dose_to_volume(D(50), unit, NOREPI, step=D("0.1")) == D("3.1")
    assert volume_to_dose(D("3.12"), unit, NOREPI) == D("49.92")


def test_bolus_in_ml_needs_no_concentration() -> None:
    assert dose_to_volume(D(250), parse_dose_unit("mL"), None) == D(250)
    assert dose_to_volume(D(10), parse_dose_unit("mL/kg"), None, D(7)) == D(70)


def test_bolus_functions_refuse_rates() -> None:
    with pytest.raises(DosingError, match="mcg/min is a rate; a bolus dose has no time base"):
        dose_to_volume(D(1), parse_dose_unit("mcg/min"), NOREPI)
    with pytest.raises(DosingError, match="mcg/min is a rate"):
        volume_to_dose(D(1), parse_dose_unit("mcg/min"), NOREPI)


def test_bolus_per_kg_needs_weight() -> None:
    with pytest.raises(DosingError, match="needs the patient's weight"):
        dose_to_volume(D(80), parse_dose_unit("units/kg"), HEPARIN)
    with pytest.raises(DosingError, match="needs the patient's weight"):
        volume_to_dose(D(64), parse_dose_unit("units/kg"), HEPARIN)


# --- properties -----------------------------------------------------------------------------

# Concentrations whose per-mL value and its reciprocal are both exact decimals (2^a * 5^b),
# so exact decimal arithmetic is actually possible and the rounding rules must hold exactly.
exact_per_ml = st.sampled_from(
    [D("0.016"), D("0.1"), D("0.2"), D("0.5"), D(1), D(2), D(4), D(10), D(16), D(100), D(200)]
)
volumes = st.sampled_from([D(50), D(100), D(250), D(500)])
weights = st.decimals(min_value=D("0.5"), max_value=D(250), places=1)
doses = st.decimals(min_value=D("0.001"), max_value=D(5000), places=3)
rate_units = st.sampled_from(
    ["mcg/kg/min", "mg/kg/h", "mg/h", "mcg/min", "ng/kg/min", "mg/min", "g/h"]
)


@given(doses, rate_units, exact_per_ml, volumes, weights, steps)
def test_rounded_flow_never_delivers_more_than_ordered(
    dose: Decimal,
    unit_text: str,
    per_ml: Decimal,
    volume: Decimal,
    weight: Decimal,
    step: Decimal,
) -> None:
    unit = parse_dose_unit(unit_text)
    conc = Concentration(per_ml * volume, AmountUnit.MG, volume)
    exact = dose_to_flow(dose, unit, conc, weight)
    flow = dose_to_flow(dose, unit, conc, weight, step=step)
    assert flow <= exact
    assert exact - flow < step
    assert flow_to_dose(flow, unit, conc, weight) <= dose
    # and, unrounded, flow_to_dose inverts dose_to_flow exactly
    assert flow_to_dose(exact, unit, conc, weight) == dose


@given(doses, exact_per_ml, volumes, weights, steps)
def test_rounded_volume_never_holds_more_than_ordered(
    dose: Decimal, per_ml: Decimal, volume: Decimal, weight: Decimal, step: Decimal
) -> None:
    unit = parse_dose_unit("mcg/kg")
    conc = Concentration(per_ml * volume, AmountUnit.MG, volume)
    exact = dose_to_volume(dose, unit, conc, weight)
    rounded = dose_to_volume(dose, unit, conc, weight, step=step)
    assert rounded <= exact
    assert exact - rounded < step
    assert volume_to_dose(rounded, unit, conc, weight) <= dose
    assert volume_to_dose(exact, unit, conc, weight) == dose


@given(
    st.decimals(min_value=D("0.001"), max_value=D(1000), places=3),
    st.decimals(min_value=D("0.001"), max_value=D(1000), places=3),
    st.integers(min_value=1, max_value=5000),
    st.integers(min_value=1, max_value=1000),
)
def test_dose_to_flow_is_monotonic(a: Decimal, b: Decimal, amount: int, volume: int) -> None:
    unit = parse_dose_unit("mg/h")
    conc = Concentration(D(amount), AmountUnit.MG, D(volume))
    low, high = sorted((a, b))
    assert dose_to_flow(low, unit, conc) <= dose_to_flow(high, unit, conc)
    assert dose_to_flow(low, unit, conc, step=D("0.1")) <= dose_to_flow(
        high, unit, conc, step=D("0.1")
    )


# --- rounding bugs with concentrations whose reciprocal is not an exact decimal -------------


def _exact_flow(dose: Decimal, per_ml_mg: Fraction) -> Fraction:
    """mL/h for a dose in mg/h, computed with exact rationals."""
    return Fraction(dose) / per_ml_mg


def test_flow_that_is_an_exact_step_multiple_is_not_rounded_down_a_step() -> None:
    conc = Concentration(D(750), AmountUnit.MG, D(250))  # 3 mg/mL
    unit = parse_dose_unit("mg/h")
    assert dose_to_flow(D(3), unit, conc, step=D("0.1")) == D("1.0")
    assert dose_to_flow(D(3), unit, conc, step=D("0.01")) == D("1.00")


def test_flow_to_dose_of_rounded_flow_never_exceeds_the_order_example() -> None:
    conc = Concentration(D(3), AmountUnit.MG, D(1))
    unit = parse_dose_unit("mg/h")
    flow = dose_to_flow(D(6), unit, conc, step=D("0.1"))
    assert flow == D(2)
    assert flow_to_dose(flow, unit, conc) <= D(6)


@given(
    st.decimals(min_value=D("0.01"), max_value=D(1000), places=2),
    st.decimals(min_value=D("0.1"), max_value=D(1000), places=1),
    st.sampled_from([D(1), D(10), D(50), D(100), D(250)]),
    steps,
)
@example(D(6), D(3), D(1), D("0.1"))
@example(D(3), D(750), D(250), D("0.1"))
def test_rounded_flow_never_delivers_more_than_ordered_any_concentration(
    dose: Decimal, amount: Decimal, volume: Decimal, step: Decimal
) -> None:
    unit = parse_dose_unit("mg/h")
    conc = Concentration(amount, AmountUnit.MG, volume)
    flow = dose_to_flow(dose, unit, conc, step=step)
    exact = _exact_flow(dose, Fraction(amount) / Fraction(volume))
    expected = (exact // Fraction(step)) * Fraction(step)
    assert Fraction(flow) == expected
    assert flow_to_dose(flow, unit, conc) <= dose
