"""Units of amount, time and dose: strict parsing, ISMP refusals and exact conversion."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pumpguard.clinical import (
    AmountUnit,
    Dimension,
    DoseUnit,
    TimeUnit,
    UnitError,
    parse_amount_unit,
    parse_dose_unit,
)

D = Decimal


# --- amount units ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mL", AmountUnit.ML),
        ("ml", AmountUnit.ML),
        ("ML", AmountUnit.ML),
        ("g", AmountUnit.G),
        ("grams", AmountUnit.G),
        ("mg", AmountUnit.MG),
        ("MG", AmountUnit.MG),
        ("mcg", AmountUnit.MCG),
        ("ug", AmountUnit.MCG),  # UCUM spelling carried by HL7 messages
        ("µg", AmountUnit.MCG),  # micro sign U+00B5
        ("μg", AmountUnit.MCG),  # greek mu U+03BC
        ("micrograms", AmountUnit.MCG),
        ("ng", AmountUnit.NG),
        ("units", AmountUnit.UNITS),
        ("unit", AmountUnit.UNITS),
        ("Units", AmountUnit.UNITS),
        ("milliunits", AmountUnit.MILLIUNITS),
        ("mEq", AmountUnit.MEQ),
        ("meq", AmountUnit.MEQ),
        ("mmol", AmountUnit.MMOL),
        ("  mg  ", AmountUnit.MG),
    ],
)
def test_parse_amount_unit_accepts_known_spellings(text: str, expected: AmountUnit) -> None:
    assert parse_amount_unit(text) is expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("U", "'U' is on the ISMP error-prone list"),
        ("u", "'U' is on the ISMP error-prone list"),
        ("IU", "'IU' is on the ISMP error-prone list"),
        ("iu", "'IU' is on the ISMP error-prone list"),
        (" IU ", "'IU' is on the ISMP error-prone list"),
        ("cc", "'cc' is on the ISMP error-prone list"),
        ("CC", "'cc' is on the ISMP error-prone list"),
    ],
)
def test_parse_amount_unit_refuses_ismp_abbreviations(text: str, words: str) -> None:
    with pytest.raises(UnitError, match=words):
        parse_amount_unit(text)


def test_ismp_messages_say_what_to_write_instead() -> None:
    with pytest.raises(UnitError, match="write 'units'"):
        parse_amount_unit("U")
    with pytest.raises(UnitError, match="write 'units'"):
        parse_amount_unit("IU")
    with pytest.raises(UnitError, match="write 'mL'"):
        parse_amount_unit("cc")


@pytest.mark.parametrize("text", ["", "kg", "l", "mgs", "mu", "m2", "mcg/min", "gr", "dL"])
def test_parse_amount_unit_rejects_unknown(text: str) -> None:
    with pytest.raises(UnitError, match="unknown amount unit") as info:
        parse_amount_unit(text)
    # the message names the offending text and lists what is known
    assert repr(text) in str(info.value)
    assert "known: " in str(info.value)
    assert "mcg" in str(info.value)


def test_unit_error_is_a_value_error() -> None:
    assert issubclass(UnitError, ValueError)


def test_amount_unit_dimensions_and_bases() -> None:
    assert AmountUnit.ML.dimension is Dimension.VOLUME
    for mass in (AmountUnit.G, AmountUnit.MG, AmountUnit.MCG, AmountUnit.NG):
        assert mass.dimension is Dimension.MASS
    assert AmountUnit.UNITS.dimension is Dimension.ACTIVITY
    assert AmountUnit.MILLIUNITS.dimension is Dimension.ACTIVITY
    assert AmountUnit.MEQ.dimension is Dimension.EQUIVALENTS
    assert AmountUnit.MMOL.dimension is Dimension.SUBSTANCE
    # bases relative to mcg / units
    assert AmountUnit.G.base / AmountUnit.MG.base == 1000
    assert AmountUnit.MG.base / AmountUnit.MCG.base == 1000
    assert AmountUnit.MCG.base / AmountUnit.NG.base == 1000
    assert AmountUnit.UNITS.base / AmountUnit.MILLIUNITS.base == 1000
    assert TimeUnit.H.minutes == 60
    assert TimeUnit.MIN.minutes == 1


def test_amount_and_time_units_print_canonically() -> None:
    assert str(AmountUnit.MCG) == "mcg"
    assert str(AmountUnit.ML) == "mL"
    assert str(AmountUnit.MEQ) == "mEq"
    assert str(TimeUnit.H) == "h"
    assert str(TimeUnit.MIN) == "min"


# --- dose units -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "amount", "per_kg", "time", "canonical"),
    [
        ("mL/h", AmountUnit.ML, False, TimeUnit.H, "mL/h"),
        ("ml/hr", AmountUnit.ML, False, TimeUnit.H, "mL/h"),
        ("mcg/kg/min", AmountUnit.MCG, True, TimeUnit.MIN, "mcg/kg/min"),
        ("ug/kg/min", AmountUnit.MCG, True, TimeUnit.MIN, "mcg/kg/min"),
        ("MCG/KG/MIN", AmountUnit.MCG, True, TimeUnit.MIN, "mcg/kg/min"),
        (" mcg / kg / min ", AmountUnit.MCG, True, TimeUnit.MIN, "mcg/kg/min"),
        ("units/kg/h", AmountUnit.UNITS, True, TimeUnit.H, "units/kg/h"),
        ("units/kg/hour", AmountUnit.UNITS, True, TimeUnit.H, "units/kg/h"),
        ("milliunits/min", AmountUnit.MILLIUNITS, False, TimeUnit.MIN, "milliunits/min"),
        ("mg/minute", AmountUnit.MG, False, TimeUnit.MIN, "mg/min"),
        ("mEq/h", AmountUnit.MEQ, False, TimeUnit.H, "mEq/h"),
        ("mg", AmountUnit.MG, False, None, "mg"),
        ("mg/kg", AmountUnit.MG, True, None, "mg/kg"),
        ("units/kg", AmountUnit.UNITS, True, None, "units/kg"),
        ("mcg", AmountUnit.MCG, False, None, "mcg"),
    ],
)
def test_parse_dose_unit(
    text: str, amount: AmountUnit, per_kg: bool, time: TimeUnit | None, canonical: str
) -> None:
    unit = parse_dose_unit(text)
    assert unit == DoseUnit(amount, per_kg=per_kg, time=time)
    assert unit.amount is amount
    assert unit.per_kg is per_kg
    assert unit.time is time
    assert unit.is_rate is (time is not None)
    assert unit.dimension is amount.dimension
    assert str(unit) == canonical
    # the canonical text reads back as the same unit
    assert parse_dose_unit(str(unit)) == unit


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("U/kg/h", "'U' is on the ISMP error-prone list"),
        ("u/h", "'U' is on the ISMP error-prone list"),
        ("IU/h", "'IU' is on the ISMP error-prone list"),
        ("IU/kg/h", "'IU' is on the ISMP error-prone list"),
        ("cc/h", "'cc' is on the ISMP error-prone list"),
        ("CC/hr", "'cc' is on the ISMP error-prone list"),
        ("", "a dose unit is required"),
        ("   ", "a dose unit is required"),
        ("mg/m2", "'m2' is neither 'kg' nor a time"),
        ("mg/m2/h", "'m2' is neither 'kg' nor a time"),
        ("mg/kg/min/h", "expected amount\\[/kg\\]\\[/time\\]"),
        ("mg//h", "expected amount\\[/kg\\]\\[/time\\]"),
        ("mg/", "expected amount\\[/kg\\]\\[/time\\]"),
        ("/h", "expected amount\\[/kg\\]\\[/time\\]"),
        ("mg/h/kg", "unexpected 'kg'"),
        ("mg/min/h", "unexpected 'h'"),
        ("mg/kg/kg", "'kg' is neither 'kg' nor a time"),
        ("mg/kg/sec", "'sec' is neither 'kg' nor a time"),
        ("mg/day", "'day' is neither 'kg' nor a time"),
        ("kg/h", "unknown amount unit 'kg'"),
        ("mgs/h", "unknown amount unit 'mgs'"),
    ],
)
def test_parse_dose_unit_errors_name_the_offending_part(text: str, words: str) -> None:
    with pytest.raises(UnitError, match=words):
        parse_dose_unit(text)


def test_parse_dose_unit_rejects_non_string() -> None:
    with pytest.raises(UnitError, match="a dose unit is required"):
        parse_dose_unit(None)  # type: ignore[arg-type]


def test_unknown_dose_unit_message_quotes_the_whole_text() -> None:
    with pytest.raises(UnitError) as info:
        parse_dose_unit("mg/m2")
    assert "unknown dose unit 'mg/m2'" in str(info.value)


def test_dose_units_are_hashable_values() -> None:
    a = parse_dose_unit("mcg/kg/min")
    b = parse_dose_unit("ug/kg/minute")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b, parse_dose_unit("mcg/min")}) == 2


# --- compatibility and conversion -----------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "compatible"),
    [
        ("mcg/min", "mg/h", True),
        ("mcg/kg/min", "mg/kg/h", True),
        ("units/h", "milliunits/min", True),
        ("mg", "g", True),
        ("mg/kg", "mcg/kg", True),
        ("mL/h", "mL/min", True),
        ("mcg/kg/min", "mcg/min", False),  # per-kg vs not
        ("units/kg/h", "units/h", False),  # per-kg vs not
        ("mg/h", "units/h", False),  # mass vs activity
        ("mg/kg/h", "units/kg/h", False),  # mass vs activity
        ("mEq/h", "mmol/h", False),  # equivalents vs substance
        ("mg/h", "mL/h", False),  # mass vs volume
        ("mg", "mg/h", False),  # one-off vs rate
        ("mg/kg", "mg/kg/h", False),  # one-off vs rate
    ],
)
def test_compatible_with(a: str, b: str, compatible: bool) -> None:
    ua, ub = parse_dose_unit(a), parse_dose_unit(b)
    assert ua.compatible_with(ub) is compatible
    assert ub.compatible_with(ua) is compatible  # symmetric
    if not compatible:
        with pytest.raises(UnitError, match=f"cannot convert {ua} to {ub}"):
            ua.factor_to(ub)
        with pytest.raises(UnitError):
            ua.convert(D(1), ub)


@pytest.mark.parametrize(
    ("a", "b", "factor"),
    [
        ("mcg/min", "mg/h", D("0.06")),
        ("mg/h", "mg/min", Fraction(1, 60)),
        ("mg/min", "mg/h", D(60)),
        ("mg/h", "mcg/h", D(1000)),
        ("g/h", "mg/h", D(1000)),
        ("mcg/h", "ng/h", D(1000)),
        ("mcg/kg/min", "mg/kg/h", D("0.06")),
        ("units/h", "milliunits/min", Fraction(1000, 60)),
        ("milliunits/min", "units/h", D("0.06")),
        ("mg", "mcg", D(1000)),
        ("mcg/kg", "mg/kg", D("0.001")),
        ("mL/h", "mL/h", D(1)),
    ],
)
def test_factor_to(a: str, b: str, factor: Decimal) -> None:
    assert parse_dose_unit(a).factor_to(parse_dose_unit(b)) == factor


def test_convert_mcg_per_min_to_mg_per_h() -> None:
    mcg_min = parse_dose_unit("mcg/min")
    mg_h = parse_dose_unit("mg/h")
    assert mcg_min.convert(D(200), mg_h) == D(12)
    assert mcg_min.convert(D("16.5"), mg_h) == D("0.99")
    assert mg_h.convert(D(6), mcg_min) == D(100)
    assert mg_h.convert(D(0), mcg_min) == 0


def test_convert_per_kg_rate() -> None:
    assert parse_dose_unit("mcg/kg/min").convert(D("0.1"), parse_dose_unit("mg/kg/h")) == D("0.006")


def test_convert_mg_per_h_to_mcg_per_min_is_exact() -> None:
    # 24 mg/h is exactly 400 mcg/min; a dose exactly at a 400 mcg/min limit must not cross it.
    assert parse_dose_unit("mg/h").convert(D(24), parse_dose_unit("mcg/min")) == D(400)


@given(
    st.decimals(min_value=0, max_value=10_000, places=3),
    st.sampled_from(["mcg/min", "mg/h", "mg/min", "g/h", "ng/min"]),
    st.sampled_from(["mcg/min", "mg/h", "mg/min", "g/h", "ng/min"]),
)
def test_convert_round_trip_within_one_ulp(value: Decimal, a: str, b: str) -> None:
    ua, ub = parse_dose_unit(a), parse_dose_unit(b)
    back = ub.convert(ua.convert(value, ub), ua)
    # 28 significant digits: a round trip may only be off in the last digit
    assert abs(back - value) <= abs(value) * D("1e-25")


@given(
    st.decimals(min_value=0, max_value=10_000, places=3),
    st.sampled_from(["mcg/min", "mg/h", "mcg/h", "mg/min", "g/h", "ng/h"]),
)
def test_convert_is_linear_and_order_preserving(value: Decimal, a: str) -> None:
    ua, ub = parse_dose_unit(a), parse_dose_unit("mcg/min")
    factor = ua.factor_to(ub)
    assert factor > 0
    assert ua.convert(value, ub) == value * factor.numerator / factor.denominator
    assert ua.convert(value + 1, ub) > ua.convert(value, ub)
