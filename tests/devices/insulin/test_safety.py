"""Scenario tests of the insulin pump's safety behaviour: suspend and resume, reservoir,
occlusion, battery, who may change the limits, idempotent command ids and reconciliation from
history, the IDS response codes, the log."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from pumpguard.clinical import BasalProfile
from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE, VirtualClock
from pumpguard.devices.insulin import (
    DEFAULT_LIMITS,
    HARD_CAPS,
    AcknowledgeAlarm,
    AlarmKind,
    AlarmPriority,
    Bolus,
    BolusStatus,
    CancelBolus,
    CancelTempBasal,
    ChangeReservoir,
    EventKind,
    ExtendedBolus,
    HistoryQuery,
    IdsOpcode,
    IdsResponseCode,
    InsulinLimits,
    InsulinPump,
    InsulinPumpModel,
    Occlusion,
    Outcome,
    PumpState,
    Rejection,
    Resume,
    SetCharging,
    SetLimits,
    SetTempBasal,
    SetUtcOffset,
    Suspend,
    reconcile,
)

from .audit import LogAudit
from .conftest import (
    AUTOMATED,
    DAY_PROFILE,
    FLAT_ZERO,
    LOCAL,
    REMOTE,
    SYSTEM,
    PumpFactory,
    limits,
    minutes,
    u,
    units,
)


def audit(pump: InsulinPump, clock: VirtualClock) -> None:
    auditor = LogAudit(pump.limits, cancel_window_ms=pump.model.remote_cancel_window_ms)
    auditor.check_iob(pump, clock.now_ms())


# -- suspend and resume --------------------------------------------------------------------


def test_suspend_cancels_boluses_and_temp_basal_and_resume_restarts_basal_only(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump()
    normal = pump.handle(Bolus(u("5")))
    extended = pump.handle(ExtendedBolus(u("3"), 60))
    assert pump.handle(SetTempBasal(60, rate_u_h=u("2"))).accepted
    clock.advance(30_000)
    assert pump.handle(Suspend(REMOTE, "s1")).accepted
    assert pump.state is PumpState.SUSPENDED
    assert pump.total_u_h == 0
    delivered = units("0.75") + units("0.025") + units("2") * 30 / 3600
    assert pump.delivered_u == delivered
    for result in (normal, extended):
        assert result.bolus_id is not None
        view = pump.bolus(result.bolus_id)
        assert view is not None and view.status is BolusStatus.CANCELLED
    assert pump.temp_basal is None
    assert [a.kind for a in pump.alarms] == [AlarmKind.REMOTE_SUSPEND]
    clock.advance(MS_PER_HOUR)
    assert pump.delivered_u == delivered
    assert pump.handle(Bolus(u("1"))).rejection is Rejection.SUSPENDED
    assert pump.handle(SetTempBasal(30, rate_u_h=u("1"))).rejection is Rejection.SUSPENDED
    assert pump.handle(Suspend()).rejection is Rejection.WRONG_STATE
    assert pump.handle(Resume(REMOTE, "r1")).accepted
    assert pump.state is PumpState.RUNNING
    assert pump.total_u_h == units("0.9")  # scheduled basal; nothing else comes back
    assert pump.alarms == ()
    audit(pump, clock)


@pytest.mark.parametrize(
    ("suspender", "resumer", "allowed"),
    [
        (LOCAL, REMOTE, False),
        (LOCAL, AUTOMATED, False),
        (REMOTE, AUTOMATED, False),
        (AUTOMATED, REMOTE, False),
        (AUTOMATED, AUTOMATED, True),
        (REMOTE, REMOTE, True),
        (REMOTE, LOCAL, True),
        (AUTOMATED, LOCAL, True),
    ],
)
def test_a_suspend_is_resumed_by_its_source_or_at_the_pump(
    make_pump: PumpFactory,
    suspender: object,
    resumer: object,
    allowed: bool,
) -> None:
    pump = make_pump()
    assert pump.handle(Suspend(suspender, "s")).accepted  # type: ignore[arg-type]
    result = pump.handle(Resume(resumer, "r"))  # type: ignore[arg-type]
    assert result.accepted is allowed
    if not allowed:
        assert result.rejection is Rejection.NOT_PERMITTED
        assert pump.state is PumpState.SUSPENDED


def test_resume_when_running_and_suspend_from_the_pump_itself(make_pump: PumpFactory) -> None:
    pump = make_pump()
    assert pump.handle(Resume()).rejection is Rejection.WRONG_STATE
    assert pump.handle(Suspend(SYSTEM)).rejection is Rejection.NOT_PERMITTED
    assert pump.handle(Suspend()).accepted
    assert pump.alarms == ()  # suspended at the pump: nobody to warn


# -- reservoir ----------------------------------------------------------------------------


def test_reservoir_low_alarm_at_the_exact_millisecond(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump(BasalProfile.flat("1"), reservoir_u=u("21"))
    clock.advance(MS_PER_HOUR - 1)
    assert pump.alarms == ()
    clock.advance(1)
    assert pump.reservoir_u == 20
    assert [(a.kind, a.kind.priority) for a in pump.alarms] == [
        (AlarmKind.RESERVOIR_LOW, AlarmPriority.MEDIUM)
    ]
    assert pump.state is PumpState.RUNNING


def test_empty_reservoir_stops_at_the_last_whole_millisecond(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """0.05 U at 91 U/h (a bolus plus 1 U/h basal) lasts 1978.02 ms: the pump stops after
    1978 ms with 0.00000056 U left, never below zero, and the bolus is cancelled, not resumed."""
    pump = make_pump(BasalProfile.flat("1"), reservoir_u=u("0.05"))
    start = clock.now_ms()
    bolus = pump.handle(Bolus(u("0.05")))
    assert bolus.accepted and bolus.bolus_id is not None
    clock.advance(10_000)
    assert pump.state is PumpState.STOPPED
    stop = next(e for e in pump.log if e.kind is EventKind.DELIVERY_STOP)
    assert stop.time_ms == start + 1978
    assert pump.reservoir_u == units("0.05") - Fraction(91 * 1978, MS_PER_HOUR)
    assert 0 < pump.reservoir_u < Fraction(91, MS_PER_HOUR)
    view = pump.bolus(bolus.bolus_id)
    assert view is not None and view.status is BolusStatus.CANCELLED
    assert AlarmKind.RESERVOIR_EMPTY in [a.kind for a in pump.alarms]
    assert pump.handle(Resume()).rejection is Rejection.ALARM_ACTIVE
    audit(pump, clock)


def test_reservoir_changed_at_the_pump_while_suspended(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump(BasalProfile.flat("1"), reservoir_u=u("1"))
    clock.advance(MS_PER_HOUR)
    assert pump.reservoir_u == 0
    assert pump.state is PumpState.STOPPED
    assert pump.handle(ChangeReservoir(u("300"), REMOTE, "c")).rejection is Rejection.NOT_PERMITTED
    assert pump.handle(ChangeReservoir(u("300.05"))).rejection is Rejection.OUT_OF_RANGE
    assert pump.handle(ChangeReservoir(u("NaN"))).rejection is Rejection.INVALID
    assert pump.handle(ChangeReservoir(u("200"))).accepted
    assert pump.alarms == ()
    assert pump.handle(Resume()).accepted
    assert pump.handle(ChangeReservoir(u("300"))).rejection is Rejection.WRONG_STATE
    clock.advance(MS_PER_HOUR)
    assert pump.reservoir_u == 199
    audit(pump, clock)


# -- occlusion ----------------------------------------------------------------------------


def test_occlusion_stops_everything_and_latches(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump(BasalProfile.flat("1"))
    bolus = pump.handle(Bolus(u("5")))
    clock.advance(60_000)
    assert pump.handle(Occlusion(True)).accepted
    assert pump.state is PumpState.STOPPED
    assert pump.total_u_h == 0
    assert pump.delivered_u == units("1.5") + Fraction(1, 60)
    assert bolus.bolus_id is not None
    view = pump.bolus(bolus.bolus_id)
    assert view is not None and view.status is BolusStatus.CANCELLED
    assert pump.alarms[0].kind is AlarmKind.OCCLUSION
    assert pump.alarms[0].kind.priority is AlarmPriority.HIGH
    assert pump.handle(Resume()).rejection is Rejection.ALARM_ACTIVE
    pump.handle(AcknowledgeAlarm())
    assert pump.handle(Resume()).rejection is Rejection.ALARM_ACTIVE  # still occluded
    assert pump.handle(Occlusion(False)).accepted
    assert pump.handle(Resume()).rejection is Rejection.ALARM_ACTIVE  # acknowledge first
    pump.handle(AcknowledgeAlarm())
    assert pump.alarms == ()
    assert pump.handle(Resume(AUTOMATED, "aid")).rejection is Rejection.NOT_PERMITTED
    assert pump.handle(Resume()).accepted
    assert pump.total_u_h == 1  # the bolus is not resumed
    audit(pump, clock)


def test_a_stop_cancels_a_remote_bolus_still_in_its_window(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump(FLAT_ZERO)
    pending = pump.handle(Bolus(u("3"), REMOTE, "phone"))
    clock.advance(10_000)
    pump.handle(Occlusion(True))
    clock.advance(MS_PER_HOUR)
    assert pending.bolus_id is not None
    view = pump.bolus(pending.bolus_id)
    assert view is not None and view.status is BolusStatus.CANCELLED
    assert pump.delivered_u == 0
    audit(pump, clock)


def test_an_occlusion_is_reported_by_the_pump_only(make_pump: PumpFactory) -> None:
    pump = make_pump()
    for source in (LOCAL, REMOTE, AUTOMATED):
        occlusion = Occlusion(False, source, f"o-{source}")
        assert pump.handle(occlusion).rejection is Rejection.NOT_PERMITTED
        charging = SetCharging(True, source, f"c-{source}")
        assert pump.handle(charging).rejection is Rejection.NOT_PERMITTED


def test_an_occlusion_while_suspended_makes_it_an_alarm_stop(make_pump: PumpFactory) -> None:
    pump = make_pump()
    assert pump.handle(Suspend(AUTOMATED, "lgs")).accepted
    pump.handle(Occlusion(True))
    assert pump.state is PumpState.STOPPED
    pump.handle(Occlusion(False))
    pump.handle(AcknowledgeAlarm())
    assert pump.handle(Resume(AUTOMATED, "lgs-end")).rejection is Rejection.NOT_PERMITTED
    assert pump.handle(Resume()).accepted


# -- battery ------------------------------------------------------------------------------


def test_battery_low_then_depleted_stops_and_charging_recovers(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """60 mAh at 2 mA while delivering: low (24 h left, 48 mAh) after 6 h, flat after 30 h."""
    pump = make_pump(BasalProfile.flat("1"), model=InsulinPumpModel(battery_capacity_mah=u("60")))
    clock.advance(6 * MS_PER_HOUR - 1)
    assert pump.alarms == ()
    clock.advance(1)
    assert [a.kind for a in pump.alarms] == [AlarmKind.BATTERY_LOW]
    clock.advance(24 * MS_PER_HOUR)
    assert pump.state is PumpState.STOPPED
    assert pump.alarms[0].kind is AlarmKind.BATTERY_DEPLETED
    assert pump.delivered_u == 30
    assert pump.handle(SetCharging(True)).accepted
    clock.advance(MS_PER_MINUTE)
    pump.handle(AcknowledgeAlarm())
    assert pump.alarms == ()
    assert pump.handle(Resume()).accepted
    audit(pump, clock)


# -- limits: who, what, and checks --------------------------------------------------------


def test_defaults_and_caps() -> None:
    """Defaults: AndroidAPS adult hard limits (bolus 17 U, IOB 22 U, basal 10 U/h); caps:
    Loop's 30 U bolus and 30 U/h basal guardrails, AndroidAPS's largest max IOB (30 U)."""
    assert InsulinLimits(u("17"), u("10"), u("22"), u("25"), u("100")) == DEFAULT_LIMITS
    assert InsulinLimits(u("30"), u("30"), u("30"), u("90"), u("300")) == HARD_CAPS


@pytest.mark.parametrize("source", [REMOTE, AUTOMATED, SYSTEM])
def test_limits_are_changed_at_the_pump_only(
    make_pump: PumpFactory, clock: VirtualClock, source: object
) -> None:
    pump = make_pump()
    result = pump.handle(SetLimits(limits(max_bolus_u="25"), source, "lim"))  # type: ignore[arg-type]
    assert result.rejection is Rejection.NOT_PERMITTED
    assert result.ids_code is IdsResponseCode.PROCEDURE_NOT_APPLICABLE
    assert pump.limits == DEFAULT_LIMITS
    rejected = pump.log.since(0)[-1]
    assert (rejected.kind, rejected.source, rejected.command_id) == (
        EventKind.COMMAND_REJECTED,
        source,
        "lim",
    )
    assert pump.handle(SetLimits(limits(max_bolus_u="10"))).accepted
    assert pump.limits.max_bolus_u == 10
    change = pump.log.since(0)[-1]
    assert change.kind is EventKind.LIMITS and change.source is LOCAL
    assert pump.handle(Bolus(u("10.05"))).rejection is Rejection.MAX_BOLUS


@pytest.mark.parametrize(
    ("changes", "rejection"),
    [
        ({"max_bolus_u": "30.05"}, Rejection.OUT_OF_RANGE),
        ({"max_bolus_u": "NaN"}, Rejection.INVALID),
        ({"max_bolus_u": "0"}, Rejection.OUT_OF_RANGE),
        ({"max_bolus_u": "-1"}, Rejection.OUT_OF_RANGE),
        ({"max_bolus_u": "10.03"}, Rejection.INVALID),
        ({"max_basal_u_h": "5.01"}, Rejection.INVALID),
        ({"max_basal_u_h": "31"}, Rejection.OUT_OF_RANGE),
        ({"max_2h_u": "95"}, Rejection.OUT_OF_RANGE),
        ({"max_tdd_u": "350"}, Rejection.OUT_OF_RANGE),
        ({"max_bolus_u": "23"}, Rejection.INCONSISTENT),  # above max IOB 22
        ({"max_2h_u": "120", "max_tdd_u": "100"}, Rejection.OUT_OF_RANGE),
        ({"max_2h_u": "30", "max_tdd_u": "28"}, Rejection.INCONSISTENT),
        ({"max_2h_u": "19"}, Rejection.INCONSISTENT),  # 2.4 U basal + 17 U bolus in 2 h
        ({"max_tdd_u": "42"}, Rejection.INCONSISTENT),  # 25.8 U basal + 17 U bolus a day
        ({"max_basal_u_h": "1"}, Rejection.INCONSISTENT),  # the profile reaches 1.2 U/h
    ],
)
def test_limit_checks(
    make_pump: PumpFactory, changes: dict[str, str], rejection: Rejection
) -> None:
    pump = make_pump()
    result = pump.handle(SetLimits(limits(**changes)))
    assert result.rejection is rejection, result.message
    assert pump.limits == DEFAULT_LIMITS


def test_limits_cannot_be_set_below_what_is_already_delivered_or_during_a_bolus(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump(FLAT_ZERO)
    pump.handle(ExtendedBolus(u("16"), 30))
    assert pump.handle(SetLimits(limits(max_bolus_u="10"))).rejection is Rejection.WRONG_STATE
    clock.advance(minutes(30))
    lower = limits(max_bolus_u="10", max_2h_u="15")
    result = pump.handle(SetLimits(lower))
    assert result.rejection is Rejection.INCONSISTENT
    assert "already delivered" in result.message


def test_limits_refused_while_a_temp_basal_runs_above_the_new_max(make_pump: PumpFactory) -> None:
    pump = make_pump()
    pump.handle(SetTempBasal(60, rate_u_h=u("6")))
    result = pump.handle(SetLimits(limits(max_basal_u_h="5")))
    assert result.rejection is Rejection.INCONSISTENT
    pump.handle(CancelTempBasal())
    assert pump.handle(SetLimits(limits(max_basal_u_h="5"))).accepted


def test_a_misconfigured_pump_does_not_start(clock: VirtualClock) -> None:
    with pytest.raises(ValueError, match="above max basal"):
        InsulinPump(clock, BasalProfile.flat("12"))
    with pytest.raises(ValueError, match="UTC offset"):
        InsulinPump(clock, DAY_PROFILE, utc_offset_min=1000)
    with pytest.raises(ValueError, match="reservoir"):
        InsulinPump(clock, DAY_PROFILE, reservoir_u=u("301"))


# -- command ids: idempotency and reconciliation ------------------------------------------


def test_a_repeated_command_id_never_delivers_twice(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump(FLAT_ZERO)
    first = pump.handle(Bolus(u("2"), REMOTE, "bolus-42"))
    clock.advance(10_000)
    again = pump.handle(Bolus(u("2"), REMOTE, "bolus-42"))
    assert again.replayed and again.bolus_id == first.bolus_id and again.accepted
    clock.advance(MS_PER_HOUR)
    late = pump.handle(Bolus(u("2"), REMOTE, "bolus-42"))
    assert late.replayed
    clock.advance(MS_PER_HOUR)
    assert pump.delivered_u == 2
    replays = [e for e in pump.log if e.kind is EventKind.COMMAND_REPLAYED]
    assert len(replays) == 2 and all(e.command_id == "bolus-42" for e in replays)
    audit(pump, clock)


def test_a_repeated_temp_basal_is_not_restarted_after_it_ended(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump()
    command = SetTempBasal(30, rate_u_h=u("3"), source=AUTOMATED, command_id="tb-7")
    assert pump.handle(command).accepted
    clock.advance(minutes(45))
    assert pump.handle(command).replayed
    assert pump.temp_basal is None
    assert pump.basal_u_h == units("0.9")


def test_a_refusal_is_remembered_too(make_pump: PumpFactory) -> None:
    pump = make_pump()
    command = Bolus(u("20"), REMOTE, "too-much")
    assert pump.handle(command).rejection is Rejection.MAX_BOLUS
    again = pump.handle(command)
    assert again.replayed and again.rejection is Rejection.MAX_BOLUS


def test_a_command_id_is_required_from_the_phone_and_the_controller(
    make_pump: PumpFactory,
) -> None:
    pump = make_pump()
    for command in (
        Bolus(u("1"), REMOTE),
        SetTempBasal(30, rate_u_h=u("1"), source=AUTOMATED),
        Suspend(REMOTE),
        Bolus(u("1"), REMOTE, ""),
        Bolus(u("1"), REMOTE, "x" * 65),
        Bolus(u("1"), REMOTE, "line\nbreak"),
    ):
        result = pump.handle(command)
        assert result.rejection is Rejection.INVALID
        assert result.ids_code is IdsResponseCode.INVALID_OPERAND
    assert pump.handle(Bolus(u("1"))).accepted  # the buttons need none


def test_a_command_id_reused_for_another_command_is_refused(make_pump: PumpFactory) -> None:
    pump = make_pump()
    assert pump.handle(Bolus(u("1"), REMOTE, "dup")).accepted
    for other in (
        Bolus(u("2"), REMOTE, "dup"),
        Suspend(REMOTE, "dup"),
        Bolus(u("1"), AUTOMATED, "dup"),
    ):
        result = pump.handle(other)
        assert result.rejection is Rejection.ID_REUSED
        assert result.ids_code is IdsResponseCode.PLAUSIBILITY_CHECK_FAILED
    assert pump.state is PumpState.RUNNING


def test_a_lost_confirmation_is_reconciled_from_history(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    """The phone sends a bolus and the answer is lost: it asks the pump what happened and
    follows the bolus to the end without ever sending a new one."""
    pump = make_pump(FLAT_ZERO)
    seen = pump.log.last_seq
    pump.handle(Bolus(u("3"), REMOTE, "lost-1"))  # the answer never arrives

    def ask() -> tuple[Outcome, Fraction | None, bool]:
        reply = pump.history(HistoryQuery(command_id="lost-1"))
        found = reconcile(reply, "lost-1", seen)
        return found.outcome, found.delivered_u, found.resend_same_id

    assert ask() == (Outcome.PENDING, 0, False)
    clock.advance(30_000 + 60_000)
    assert ask() == (Outcome.DELIVERING, units("1.5"), False)
    clock.advance(60_000)
    assert ask() == (Outcome.DELIVERED, 3, False)


def test_a_command_that_never_arrived_is_resent_with_the_same_id(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump(FLAT_ZERO)
    seen = pump.log.last_seq
    command = Bolus(u("2"), REMOTE, "lost-2")  # lost on the way to the pump
    found = reconcile(pump.history(HistoryQuery(command_id="lost-2")), "lost-2", seen)
    assert found.outcome is Outcome.NOT_RECEIVED and found.resend_same_id
    assert pump.handle(command).accepted  # the resend
    assert pump.handle(command).replayed  # the first copy arrives late after all
    clock.advance(MS_PER_HOUR)
    assert pump.delivered_u == 2


def test_refused_and_non_bolus_commands_reconcile(make_pump: PumpFactory) -> None:
    pump = make_pump()
    seen = pump.log.last_seq
    pump.handle(Bolus(u("50"), REMOTE, "big"))
    pump.handle(SetTempBasal(30, rate_u_h=u("1"), source=REMOTE, command_id="tb"))
    big = reconcile(pump.history(HistoryQuery(command_id="big")), "big", seen)
    assert big.outcome is Outcome.REFUSED and not big.resend_same_id
    temp = reconcile(pump.history(HistoryQuery(command_id="tb")), "tb", seen)
    assert temp.outcome is Outcome.APPLIED


def test_beyond_the_history_the_outcome_is_unknown_and_nothing_is_resent(
    make_pump: PumpFactory,
) -> None:
    pump = make_pump(model=InsulinPumpModel(history_capacity=3))
    seen = pump.log.last_seq
    pump.handle(Bolus(u("1"), REMOTE, "old"))
    for n in range(3):
        pump.handle(SetTempBasal(30, rate_u_h=u("1"), source=REMOTE, command_id=f"t{n}"))
    reply = pump.history(HistoryQuery(command_id="old"))
    assert reply.command is None and reply.complete_since_seq > seen
    found = reconcile(reply, "old", seen)
    assert found.outcome is Outcome.UNKNOWN and not found.resend_same_id
    recent_seen = pump.log.last_seq
    fresh = reconcile(pump.history(HistoryQuery(command_id="new")), "new", recent_seen)
    assert fresh.outcome is Outcome.NOT_RECEIVED


def test_history_since_a_sequence_number(make_pump: PumpFactory, clock: VirtualClock) -> None:
    pump = make_pump()
    cursor = pump.log.last_seq
    pump.handle(Bolus(u("1"), AUTOMATED, "smb"))
    clock.advance(MS_PER_MINUTE)
    reply = pump.history(HistoryQuery(since_seq=cursor))
    assert [e.kind for e in reply.entries] == [EventKind.BOLUS_START, EventKind.BOLUS_COMPLETE]
    assert reply.last_seq == reply.entries[-1].seq
    assert reply.entries[0].source is AUTOMATED and reply.entries[0].command_id == "smb"


# -- IDS codes, log and display -----------------------------------------------------------

IDS_CODES = {
    Rejection.INVALID: 0x71,
    Rejection.OUT_OF_RANGE: 0x73,
    Rejection.MAX_BOLUS: 0x73,
    Rejection.MAX_BASAL: 0x73,
    Rejection.MAX_IOB: 0x75,
    Rejection.TWO_HOUR_LIMIT: 0x75,
    Rejection.DAILY_LIMIT: 0x75,
    Rejection.RESERVOIR: 0x74,
    Rejection.BOLUS_ACTIVE: 0x76,
    Rejection.SUSPENDED: 0x74,
    Rejection.WRONG_STATE: 0x74,
    Rejection.NOTHING_TO_CANCEL: 0x74,
    Rejection.ALARM_ACTIVE: 0x74,
    Rejection.NOT_PERMITTED: 0x74,
    Rejection.INCONSISTENT: 0x75,
    Rejection.ID_REUSED: 0x75,
    Rejection.UNSUPPORTED: 0x70,
}


def test_every_rejection_has_its_ids_response_code() -> None:
    assert set(IDS_CODES) == set(Rejection)
    for rejection, code in IDS_CODES.items():
        assert rejection.ids_code == code


def test_commands_name_their_ids_opcodes() -> None:
    assert Bolus.IDS_OPCODE == ExtendedBolus.IDS_OPCODE == IdsOpcode.SET_BOLUS == 0x114B
    assert CancelBolus.IDS_OPCODE == 0x1178
    assert SetTempBasal.IDS_OPCODE == 0x0FFF
    assert CancelTempBasal.IDS_OPCODE == 0x1111
    assert Suspend.IDS_OPCODE == Resume.IDS_OPCODE == 0x0F5A
    assert SetLimits.IDS_OPCODE == 0x148D
    assert SetUtcOffset.IDS_OPCODE is None


def test_accepted_is_ids_success_and_unknown_commands_are_unsupported(
    make_pump: PumpFactory,
) -> None:
    pump = make_pump()
    assert pump.handle(Bolus(u("1"))).ids_code is IdsResponseCode.SUCCESS
    odd = pump.handle("prime the pump")  # type: ignore[arg-type]
    assert odd.rejection is Rejection.UNSUPPORTED
    assert odd.ids_code is IdsResponseCode.OPCODE_NOT_SUPPORTED


def test_log_is_gapless_and_every_delivery_names_its_source(
    make_pump: PumpFactory, clock: VirtualClock
) -> None:
    pump = make_pump()
    pump.handle(Bolus(u("1"), AUTOMATED, "a"))
    pump.handle(SetTempBasal(30, percent=50, source=REMOTE, command_id="b"))
    pump.handle(ExtendedBolus(u("1"), 30, REMOTE, "c"))
    clock.advance(MS_PER_HOUR)
    pump.tick()  # the log records what the pump has caught up with
    log = list(pump.log)
    assert [e.seq for e in log] == list(range(1, len(log) + 1))
    sources = {(e.kind, e.source, e.command_id) for e in log if e.command_id}
    assert (EventKind.BOLUS_START, AUTOMATED, "a") in sources
    assert (EventKind.TEMP_BASAL_START, REMOTE, "b") in sources
    assert (EventKind.BOLUS_REQUESTED, REMOTE, "c") in sources
    assert (EventKind.BOLUS_START, REMOTE, "c") in sources
    assert (EventKind.TEMP_BASAL_END, SYSTEM, "b") in sources
    audit(pump, clock)


def test_status_screen_shows_a_pending_remote_bolus(make_pump: PumpFactory) -> None:
    pump = make_pump()
    pump.handle(Bolus(u("2.5"), REMOTE, "x"))
    lines = pump.status().lines()
    assert lines[0].startswith("RUNNING  22:13")
    assert "normal bolus #1: 0 of 2.5 U, pending (from remote)" in lines
    assert lines[-1] == "ALARM MEDIUM: remote-bolus-pending"


class SteppableClock:
    def __init__(self, now: int) -> None:
        self.now = now

    def now_ms(self) -> int:
        return self.now


def test_a_clock_stepped_back_does_not_repeat_delivery() -> None:
    clock = SteppableClock(1_700_000_000_000)
    pump = InsulinPump(clock, BasalProfile.flat("1"))
    clock.now += MS_PER_HOUR
    assert pump.delivered_u == 1
    clock.now -= MS_PER_HOUR // 2
    assert pump.delivered_u == 1
    assert pump.handle(Bolus(u("1"))).accepted
    clock.now += MS_PER_HOUR // 2 + 40_000
    assert pump.delivered_u == 2 + Fraction(40, 3600)


def test_decimal_places_of_the_model_are_whole_milliseconds() -> None:
    with pytest.raises(ValueError, match="whole number of milliseconds"):
        InsulinPumpModel(bolus_speed_u_h=Decimal(7))
