"""Shared pieces for the insulin pump tests.

The clock starts at 2023-11-14 22:13:20 UTC (epoch 1_700_000_000_000 ms), so with a UTC offset
of zero the first midnight is 1 h 46 min 40 s away. ``FLAT_ZERO`` (no basal) lets a test land
exactly on a limit: with no basal running, what is delivered is exactly the boluses.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from pumpguard.clinical import BasalProfile
from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE, VirtualClock
from pumpguard.devices.insulin import CommandSource, InsulinLimits, InsulinPump

START_MS = 1_700_000_000_000
MS_TO_MIDNIGHT = (24 * MS_PER_HOUR) - START_MS % (24 * MS_PER_HOUR)
FLAT_ZERO = BasalProfile.flat("0")
DAY_PROFILE = BasalProfile.from_schedule({"00:00": "0.8", "06:00": "1.2", "22:00": "0.9"})

LOCAL = CommandSource.LOCAL
REMOTE = CommandSource.REMOTE
AUTOMATED = CommandSource.AUTOMATED
SYSTEM = CommandSource.SYSTEM

PumpFactory = Callable[..., InsulinPump]


def u(text: str) -> Decimal:
    return Decimal(text)


def units(value: str) -> Fraction:
    return Fraction(Decimal(value))


def limits(**changes: str) -> InsulinLimits:
    values = {
        "max_bolus_u": "17",
        "max_basal_u_h": "10",
        "max_iob_u": "22",
        "max_2h_u": "25",
        "max_tdd_u": "100",
    }
    values.update(changes)
    return InsulinLimits(**{name: Decimal(v) for name, v in values.items()})


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START_MS)


@pytest.fixture
def make_pump(clock: VirtualClock) -> PumpFactory:
    """An insulin pump on ``clock``; the basal profile is ``DAY_PROFILE`` unless given."""

    def build(profile: BasalProfile = DAY_PROFILE, **kwargs: Any) -> InsulinPump:
        return InsulinPump(clock, profile, **kwargs)

    return build


def minutes(n: int | float) -> int:
    return int(n * MS_PER_MINUTE)
