"""The hospital ward of ``lab detect``: real pumps, real live detection, injected trials."""

from __future__ import annotations

import itertools

import pytest

from pumpguard.clock import MS_PER_MINUTE
from pumpguard.lab.attacks.hospital_ward import START_MS
from pumpguard.lab.ward import (
    WARD_ATTRIBUTION_MIN,
    WardConfig,
    WardError,
    plan_ward_attacks,
    run_ward,
    run_ward_evaluation,
)
from pumpguard.link import LinkProfile
from pumpguard.monitor.live import LiveSettings

SMALL = WardConfig(days=1, seed=2, icu=2, medsurg=1)


def test_the_nurses_make_the_ward_work_and_every_record_reaches_the_detection() -> None:
    run = run_ward(SMALL)
    activity = dict(run.activity)
    # statuses every 10 s from three pumps for a day, minus the dead zones
    assert 0.9 * 3 * 8640 < activity["status"] <= 3 * 8640
    assert activity["programmed"] >= 10 and activity["delivery-start"] >= 5
    assert activity["library-installed"] == 3  # the update reached every pump
    assert run.records == sum(activity.values())


def test_attack_free_false_alerts_are_what_the_live_detection_raised() -> None:
    """A one-outage threshold turns each dead zone into a PG-NET-001 alert: the count in the
    report is the alert book's, not a constant, and it is zero with the server's defaults."""
    strict = LiveSettings(loss_min_burst=1)
    report = run_ward_evaluation(SMALL, strict)
    assert report.attack_free.findings > 0
    assert report.false_alerts_attack_free == len(report.attack_free.alerts) > 0
    assert set(report.false_by_analytic) == {"PG-NET-001"}
    windows = [(o.attack.start_ms, o.attack.until_ms) for o in report.outcomes]
    outside = [t for t, _ in report.attacked.alerts if not any(a <= t <= b for a, b in windows)]
    assert report.false_alerts_attacked == len(outside)
    false = report.false_alerts_attack_free + report.false_alerts_attacked
    assert report.false_alerts_per_pump_day == round(false / report.clean_pump_days, 4)
    assert run_ward(SMALL).alerts == ()


def test_an_injected_hospital_attack_is_detected_in_the_wards_time() -> None:
    attacks = plan_ward_attacks(SMALL)
    assert len(attacks) >= 5
    for earlier, later in itertools.pairwise(attacks):
        assert earlier.until_ms < later.start_ms  # windows never overlap
    attack = next(a for a in attacks if a.name == "order-beyond-hard-limit")
    assert attack.start_ms > START_MS and attack.device_id in {"PUMP-0001", "PUMP-0002"}
    assert all(e.time_ms >= attack.start_ms for e in attack.events)
    run = run_ward(SMALL, (attack,))
    inside = [(t, a) for t, a in run.detections if attack.launch_ms <= t <= attack.until_ms]
    assert inside and inside[0][1] == "PG-HL7-003"
    assert run.detections == tuple(inside)  # nothing else fired on the ward
    assert attack.until_ms - attack.last_event_ms == WARD_ATTRIBUTION_MIN * MS_PER_MINUTE


def test_bad_ward_configurations_are_refused() -> None:
    with pytest.raises(WardError, match="days"):
        WardConfig(days=0)
    with pytest.raises(WardError, match="ICU"):
        WardConfig(days=1, icu=0)


def test_a_dose_the_trial_got_through_reaches_the_ward_pump() -> None:
    """Legacy: the tampered order's dose (a multiple of the prescription) is entered on the
    ward pump at the launch, so the attacked ward's records differ from its twin's."""
    legacy = WardConfig(days=1, seed=2, icu=2, medsurg=1, profile=LinkProfile.LEGACY)
    attack = next(a for a in plan_ward_attacks(legacy) if a.name == "order-tampered-in-transit")
    assert attack.succeeded and attack.dose_factor is not None and attack.dose_factor > 1
    attacked = dict(run_ward(legacy, (attack,)).activity)
    free = dict(run_ward(legacy).activity)
    # one more programming attempt on the ward: taken, or refused by the ward pump's library
    tried = attacked["programmed"] + attacked.get("command-rejected", 0)
    assert tried == free["programmed"] + free.get("command-rejected", 0) + 1
