"""A few attacks on a child with another seed, in the default run (the full variant matrix is
marked slow)."""

from __future__ import annotations

import pytest
from tests.lab.attacks.support import check_legacy, check_secure

from pumpguard.lab.attacks import get_attack
from pumpguard.link import LinkProfile


@pytest.mark.parametrize("name", ["forged-bolus", "spoofed-cgm", "replay-bolus"])
def test_child_other_seed(name: str) -> None:
    attack = get_attack(name)
    check_legacy(type(attack), attack.run(LinkProfile.LEGACY, "child#001", 2))
    attack = get_attack(name)
    check_secure(type(attack), attack.run(LinkProfile.SECURE, "child#001", 2))
