"""A real pump's log, screen and alarms turned into IPEC, DEC and ACM messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tests.interop.messages import NOW, library, order
from tests.interop.test_order_check import PUMPS

from pumpguard.clinical import PumpKind
from pumpguard.clock import MS_PER_MINUTE, VirtualClock
from pumpguard.devices.infusion import (
    CommandSource,
    Confirm,
    InfusionPump,
    Pause,
    PowerOn,
    Program,
    SensorChange,
    SensorKind,
    SetCareArea,
)
from pumpguard.interop import (
    AlertPhase,
    ObservationReport,
    OrderContext,
    PumpEventKind,
    alert_from_alarm,
    build_alert,
    build_event,
    build_observations,
    check_order,
    event_from_log,
    observations_from_display,
    parse_alert,
    parse_event,
    parse_observations,
)

START_MS = 1_795_000_000_000


def _at(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def _running_pump() -> tuple[InfusionPump, VirtualClock]:
    clock = VirtualClock(START_MS)
    pump = InfusionPump(PumpKind.LVP, clock, serial="PUMP-0001", library=library())
    pump.handle(PowerOn())
    pump.handle(SetCareArea("ICU"))
    verdict = check_order(order(), OrderContext(PUMPS, library(), NOW))
    assert verdict.programme is not None
    assert pump.handle(Program(verdict.programme, CommandSource.AUTO_PROGRAMME)).accepted
    assert pump.handle(Confirm()).accepted
    return pump, clock


def test_delivery_start_and_stop_from_the_log_become_ipec_events() -> None:
    pump, clock = _running_pump()
    clock.advance(30 * MS_PER_MINUTE)
    pump.handle(Pause())
    events = [
        e
        for entry in pump.log
        if (
            e := event_from_log(
                entry,
                pump_id=pump.serial,
                patient_id="MRN-4711",
                occurred_at=_at(entry.time_ms),
                placer_order_number="ORD-1001",
                control_id=f"EVT-{entry.seq}",
            )
        )
        is not None
    ]
    assert [e.kind for e in events] == [PumpEventKind.DELIVERY_START, PumpEventKind.DELIVERY_STOP]
    stop = events[1]
    assert stop.volume_delivered_ml == Decimal("7.2")
    for event in events:
        assert parse_event(build_event(event)) == event


def test_the_screen_becomes_dec_observations() -> None:
    pump, clock = _running_pump()
    clock.advance(10 * MS_PER_MINUTE)
    observations = observations_from_display(pump.display(), _at(clock.now_ms()))
    by_code = {o.code: o for o in observations}
    assert by_code[184508].value == "pump-status-infusing"
    assert by_code[157784].value == Decimal("14.4")
    assert by_code[184516].value == "ICU"
    report = ObservationReport("PUMP-0001", "MRN-4711", observations, "DEC-1")
    assert parse_observations(build_observations(report)) == report


def test_an_occlusion_becomes_an_acm_alert() -> None:
    pump, clock = _running_pump()
    clock.advance(MS_PER_MINUTE)
    pump.handle(SensorChange(SensorKind.OCCLUSION, True))
    (alarm,) = pump.alarms
    alert = alert_from_alarm(
        alarm,
        alert_id="AL-1",
        pump_id=pump.serial,
        patient_id="MRN-4711",
        phase=AlertPhase.START,
        occurred_at=_at(alarm.since_ms),
        control_id="ACM-1",
    )
    assert alert is not None
    assert (alert.code, alert.ref, alert.priority) == (196940, "MDC_EVT_FLUID_LINE_OCCL", "high")
    assert parse_alert(build_alert(alert)) == alert
