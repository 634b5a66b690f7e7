"""Live detection on what pumps report: each analytic fires on its pattern and not on habit."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pumpguard.monitor import RuleEngine
from pumpguard.monitor.live import ActivityWatch, LiveEvent, LiveSettings, PumpActivity
from pumpguard.monitor.ruleset import DEFAULT_RULES
from pumpguard.security_events import Component, SecurityEvent, Severity
from pumpguard.server.errors import ServerEventCode

HOUR = 3_600_000
DAY = 24 * HOUR
MIN = 60_000


def act(kind: str, at: int, device: str = "PUMP-0001", **kw: object) -> PumpActivity:
    return PumpActivity(device, kind, at, at, **kw)  # type: ignore[arg-type]


def codes(watch: ActivityWatch, *activities: PumpActivity) -> list[str]:
    return [e.code for a in activities for e in watch.observe(a)]


def day_shift(watch: ActivityWatch, days: int = 4, hours: range = range(8, 18, 2)) -> list[str]:
    return codes(
        watch, *(act("programmed", d * DAY + h * HOUR) for d in range(days) for h in hours)
    )


def test_programming_at_an_hour_never_seen_is_flagged_once_learned() -> None:
    watch = ActivityWatch()
    assert codes(watch, act("programmed", 20 * HOUR)) == []  # nothing learned yet
    assert day_shift(watch) == []
    night = codes(watch, act("programmed", 4 * DAY + 3 * HOUR))
    assert night == [LiveEvent.OFF_HOURS_PROGRAMMING]
    assert codes(watch, act("programmed", 4 * DAY + 7 * HOUR)) == []  # next to 08 h: usual


def test_a_new_hour_alarms_once_then_is_learnt() -> None:
    watch = ActivityWatch()
    assert day_shift(watch) == []
    assert codes(watch, act("programmed", 4 * DAY + 3 * HOUR)) == [LiveEvent.OFF_HOURS_PROGRAMMING]
    assert codes(watch, act("programmed", 5 * DAY + 3 * HOUR)) == []
    assert codes(watch, act("programmed", 5 * DAY + 23 * HOUR)) == [LiveEvent.OFF_HOURS_PROGRAMMING]


def test_a_pump_programmed_around_the_clock_is_never_off_hours() -> None:
    watch = ActivityWatch()
    assert day_shift(watch, hours=range(0, 24, 3)) == []
    assert codes(watch, act("programmed", 5 * DAY + 4 * HOUR)) == []


def test_the_local_hour_follows_the_configured_offset() -> None:
    watch = ActivityWatch(LiveSettings(utc_offset_min=-10 * 60))
    assert day_shift(watch) == []  # 08-16 UTC is 22-06 local, learned as such
    assert codes(watch, act("programmed", 4 * DAY + 12 * HOUR)) == []


def test_override_bursts_are_judged_against_the_pumps_own_busiest_hour() -> None:
    watch = ActivityWatch()
    assert codes(watch, *(act("soft-limit-override", h * HOUR) for h in range(5))) == []
    busy = [act("soft-limit-override", DAY + m * MIN) for m in (0, 5, 10)]
    assert codes(watch, *busy) == [LiveEvent.OVERRIDE_BURST]
    watch = ActivityWatch()
    usual = [act("soft-limit-override", m * MIN) for m in (0, 5, 10)]
    codes(watch, *usual)  # a new pump's first busy hour alerts; the next one must beat it
    assert codes(watch, *(act("soft-limit-override", DAY + m * MIN) for m in (0, 5, 10))) == [
        LiveEvent.OVERRIDE_BURST
    ]


def _dose(at: int, mg: str, patient: str = "100001") -> PumpActivity:
    return act("pca-dose", at, dose=Decimal(mg), dose_unit="mg", patient_id=patient)


def test_a_dose_far_above_the_patients_history_is_flagged_and_not_learned() -> None:
    watch = ActivityWatch()
    history = [_dose(i * 2 * HOUR, "1" if i % 2 else "1.5") for i in range(20)]
    assert codes(watch, *history) == []
    big = codes(watch, _dose(41 * HOUR, "10"))
    assert LiveEvent.BOLUS_OUTLIER in big
    assert LiveEvent.BOLUS_OUTLIER in codes(watch, _dose(44 * HOUR, "10"))
    other_patient = codes(watch, _dose(45 * HOUR, "10", patient="100002"))
    assert other_patient == []  # no history for that patient yet: nothing to compare with


def test_telemetry_gaps_alert_only_when_they_repeat() -> None:
    watch = ActivityWatch()
    steady = [act("status", i * 10_000) for i in range(30)]
    assert codes(watch, *steady) == []
    gaps = [act("status", 300_000 + g * 5 * MIN) for g in range(3)]
    assert codes(watch, *gaps) == []  # two outages: 5 min between the 2nd, 3rd and 4th
    assert codes(watch, act("connection", 320_000 + 15 * MIN, connected=False)) == [
        LiveEvent.LOSS_BURST
    ]


@pytest.mark.parametrize(
    ("code", "rule"),
    [
        (LiveEvent.BOLUS_OUTLIER, "PG-DOSE-001"),
        (LiveEvent.BOLUS_BURST, "PG-DOSE-001"),
        (LiveEvent.OVERRIDE_BURST, "PG-DOSE-002"),
        (LiveEvent.OFF_HOURS_PROGRAMMING, "PG-DOSE-003"),
        (LiveEvent.LOSS_BURST, "PG-NET-001"),
        (ServerEventCode.INGEST_UNKNOWN_DEVICE, "PG-SRV-001"),
        (ServerEventCode.INGEST_DEVICE_NOT_ADMITTED, "PG-SRV-001"),
        (ServerEventCode.TOTP_REPLAY, "PG-AUTH-002"),
    ],
)
def test_each_finding_has_its_rule(code: str, rule: str) -> None:
    found: list[str] = []
    engine = RuleEngine(DEFAULT_RULES, lambda d: found.append(d.analytic_id))
    engine.emit(
        SecurityEvent(
            time_ms=1,
            component=Component.DEVICE,
            code=code,
            severity=Severity.HIGH,
            message="m",
            device_id="PUMP-0001",
        )
    )
    assert found == [rule]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="utc_offset_min"):
        LiveSettings(utc_offset_min=24 * 60)
    with pytest.raises(ValueError, match="loss_min_burst"):
        LiveSettings(loss_min_burst=0)
