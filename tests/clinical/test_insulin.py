"""The insulin action curve and basal profiles (pumpguard.clinical.insulin)."""

from __future__ import annotations

import itertools
from decimal import Decimal
from fractions import Fraction

import pytest

from pumpguard.clinical import (
    RAPID_ACTING_ADULT,
    BasalProfile,
    BasalSegment,
    InsulinCurve,
    InsulinDelivery,
    InsulinError,
)

CURVE = InsulinCurve(action_min=360, peak_min=75)
EPS = Decimal("1e-25")
"""The tests' own Decimal arithmetic runs at the default 28 digits."""


def test_iob_is_one_at_the_start_and_zero_at_the_end() -> None:
    assert CURVE.iob_fraction(0) == 1
    assert CURVE.iob_fraction(360) == 0
    assert CURVE.iob_fraction(1000) == 0
    assert abs(CURVE.iob_fraction(Fraction(35999999, 100000))) < Decimal("1e-12")


def test_iob_decreases_and_activity_peaks_at_the_peak_time() -> None:
    values = [CURVE.iob_fraction(t) for t in range(0, 361, 5)]
    assert all(a > b for a, b in itertools.pairwise(values))
    activity = [CURVE.activity(t) for t in range(0, 361)]
    assert max(range(361), key=lambda t: activity[t]) == 75


def test_activity_is_minus_the_slope_of_iob() -> None:
    h = Fraction(1, 10**6)
    for t in (10, 75, 200, 300):
        slope = (CURVE.iob_fraction(t + h) - CURVE.iob_fraction(t - h)) / (
            2 * Decimal(h.numerator) / h.denominator
        )
        assert abs(slope + CURVE.activity(t)) < Decimal("1e-9")


def test_activity_integrates_to_one() -> None:
    """Simpson's rule over 0-360 min in 1-minute steps."""
    f = [CURVE.activity(t) for t in range(361)]
    total = (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2])) / 3
    assert abs(total - 1) < Decimal("1e-6")


def test_closed_form_integral_matches_simpson() -> None:
    f = [CURVE.iob_fraction(t) for t in range(0, 181)]
    simpson = (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2])) / 3
    assert abs(CURVE.iob_minutes(180) - simpson) < Decimal("1e-6")


def test_delay_keeps_a_dose_whole_then_shifts_the_curve() -> None:
    delayed = RAPID_ACTING_ADULT
    assert (delayed.action_min, delayed.peak_min, delayed.delay_min) == (360, 75, 10)
    assert delayed.iob_fraction(10) == 1
    assert delayed.iob_fraction(100) == CURVE.iob_fraction(90)
    assert delayed.iob_minutes(7) == 7
    assert abs(delayed.iob_minutes(100) - 10 - CURVE.iob_minutes(90)) < EPS
    assert delayed.total_ms == 370 * 60_000


def test_iob_of_bolus_and_infusion() -> None:
    bolus = InsulinDelivery(0, 0, Fraction(4))
    assert CURVE.iob([bolus], 0) == 4
    assert abs(CURVE.iob([bolus], 120 * 60_000) - 4 * CURVE.iob_fraction(120)) < EPS
    assert CURVE.iob([bolus], -1) == 0  # not given yet
    # 1 U/h for an hour, seen at its end: the integral of the curve over the last hour
    infusion = InsulinDelivery(0, 3_600_000, Fraction(1))
    expected = CURVE.iob_minutes(60) / 60
    assert abs(CURVE.iob([infusion], 3_600_000) - expected) < EPS
    # halfway through only half has been given
    halfway = CURVE.iob([infusion], 1_800_000)
    assert abs(halfway - CURVE.iob_minutes(30) / 60) < EPS


def test_an_infusion_is_the_limit_of_many_small_boluses() -> None:
    infusion = InsulinDelivery(0, 3_600_000, Fraction(6))
    pieces = [
        InsulinDelivery(i * 60_000 + 30_000, i * 60_000 + 30_000, Fraction(1, 10))
        for i in range(60)
    ]
    at = 4 * 3_600_000
    assert abs(CURVE.iob([infusion], at) - CURVE.iob(pieces, at)) < Decimal("1e-4")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"peak_min": 180}, "half"),
        ({"peak_min": 0}, "half"),
        ({"delay_min": -1}, "negative"),
        ({"action_min": 360.0}, "whole"),
    ],
)
def test_curve_parameters_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InsulinError, match=message):
        InsulinCurve(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("minutes", [Decimal("NaN"), Decimal(-1), 1.5, "3"])
def test_time_must_be_a_finite_number_not_negative(minutes: object) -> None:
    with pytest.raises(InsulinError):
        CURVE.iob_fraction(minutes)  # type: ignore[arg-type]


def test_deliveries_are_checked() -> None:
    with pytest.raises(InsulinError):
        InsulinDelivery(10, 5, Fraction(1))
    with pytest.raises(InsulinError):
        InsulinDelivery(0, 5, Decimal("NaN"))
    with pytest.raises(InsulinError):
        InsulinDelivery(0, 5, Fraction(-1))


# -- basal profile ------------------------------------------------------------------------

PROFILE = BasalProfile.from_schedule({"00:00": "0.5", "06:00": "1.0", "23:00": "3.0"})


def test_rate_at_and_next_start() -> None:
    assert PROFILE.rate_at(0) == Decimal("0.5")
    assert PROFILE.rate_at(Fraction(21599, 60)) == Decimal("0.5")
    assert PROFILE.rate_at(360) == 1
    assert PROFILE.rate_at(1439) == 3
    assert PROFILE.rate_at(1440 + 10) == Decimal("0.5")
    assert PROFILE.next_start_after(0) == 360
    assert PROFILE.next_start_after(360) == 1380
    assert PROFILE.next_start_after(1380) == 1440


def test_totals_are_exact() -> None:
    assert PROFILE.daily_total_u == Fraction(3) + 17 + 3
    assert PROFILE.max_rate_u_h == 3
    # the busiest 2 hours end at midnight: 22:00-00:00 is 1 + 3 (23:00-01:00 is only 3.5)
    assert PROFILE.max_total_in(120) == 4
    # here they run across midnight: 23:00-01:00 is 3 + 2
    night = BasalProfile.from_schedule({"00:00": "2", "06:00": "0.5", "23:00": "3"})
    assert night.max_total_in(120) == 5
    assert PROFILE.max_total_in(1440) == PROFILE.daily_total_u
    assert BasalProfile.flat("0.025").max_total_in(60) == Fraction(1, 40)
    with pytest.raises(InsulinError):
        PROFILE.max_total_in(0)


def test_profile_structure_errors_are_all_reported() -> None:
    with pytest.raises(InsulinError) as caught:
        BasalProfile((BasalSegment(60, Decimal("-1")), BasalSegment(30, Decimal("NaN"))))
    text = str(caught.value)
    for part in ("not negative", "increasing", "00:00"):
        assert part in text
    with pytest.raises(InsulinError):
        BasalProfile(())
    with pytest.raises(InsulinError):
        BasalProfile(tuple(BasalSegment(i * 30, Decimal(1)) for i in range(49)))
    with pytest.raises(InsulinError, match="within the day"):
        BasalProfile((BasalSegment(0, Decimal(1)), BasalSegment(1440, Decimal(1))))
