"""Shared data for the physiology tests: the stored simglucose reference traces."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pumpguard.cli.reference import SimglucoseUnavailable, simglucose_python

REFERENCE = Path(__file__).with_name("data") / "simglucose_reference.npz"
"""Made by scripts/make_physiology_reference.py from simglucose 0.2.11's T1DPatient."""


@pytest.fixture(scope="session")
def reference() -> dict[str, Any]:
    with np.load(REFERENCE, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture
def simglucose() -> str:
    """The interpreter that has simglucose, or skip the test saying how to get one."""
    try:
        return simglucose_python()
    except SimglucoseUnavailable as exc:
        pytest.skip(f"simglucose not available: {exc}")
