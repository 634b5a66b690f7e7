"""After a CGM gap the AID adds insulin cautiously: for a recovery period, half the added rate,
no SMB and no correction above range at meals."""

from __future__ import annotations

import pytest
from tests.devices.controller.test_aid_safety import Rig

from pumpguard.clock import MS_PER_MINUTE
from pumpguard.devices.controller.aid import RECOVERY_MIN


def _gap(rig: Rig, minutes: int) -> None:
    rig.minutes(minutes)  # no readings: the CGM (or the link) is lost


def test_recovery_halves_the_added_rate_and_drops_smb() -> None:
    rig = Rig(smb=True)
    rig.minutes(30, bg=110.0)
    _gap(rig, 60)
    rig.minutes(20, bg=250.0)
    assert rig.aid.recovering()
    half = rig.aid.decisions[-1]
    assert half.rate_u_h is not None and half.eventual_mgdl is not None and half.iob_u is not None
    s = rig.settings
    req = min((half.eventual_mgdl - s.target_mgdl) / s.isf_mgdl_per_u, s.max_iob_u - half.iob_u)
    full = min(s.basal_u_h + 2 * req, s.max_safe_basal_u_h)
    assert half.rate_u_h == pytest.approx(s.basal_u_h + (full - s.basal_u_h) / 2)
    assert half.smb_u == 0.0


def test_recovery_leaves_out_the_meal_correction_and_ends() -> None:
    rig = Rig()
    rig.minutes(30, bg=110.0)
    _gap(rig, 60)
    rig.minutes(20, bg=250.0)
    rec, _ = rig.aid.announce_meal(30.0)
    assert rec.correction_u == 0.0 and rec.carb_u == 3.0
    rig.minutes(RECOVERY_MIN, bg=110.0)
    assert not rig.aid.recovering()


def test_the_start_of_a_run_is_not_a_loss() -> None:
    rig = Rig()
    rig.clock.advance(30 * MS_PER_MINUTE)
    rig.minutes(20, bg=250.0)
    assert not rig.aid.recovering()
