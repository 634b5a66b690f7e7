"""The attack matrix is run once per session and shared by the tests that read it."""

from __future__ import annotations

import pytest
from tests.lab.attacks.support import Matrix, run_matrix


@pytest.fixture(scope="session")
def matrix() -> Matrix:
    return run_matrix("adult#001", 1)
