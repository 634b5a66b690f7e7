"""Property tests: random sequences of commands from every source (the buttons, the phone, the
automated controller, the pump's own sensors), faults, replays and clock advances.

After every step the machine checks, from outside the firmware, with ``LogAudit`` reading the
event log and the pump's public readings (see ``audit.py`` for the full list):

* the insulin delivered in any rolling 2 h stays within max 2 h, in any rolling 24 h within the
  total daily dose, at every instant;
* no bolus is above max bolus; when each bolus was accepted (and a remote one again when it
  started) insulin on board recomputed from the log, plus the bolus insulin committed and the
  bolus, was within max IOB (basal may raise IOB afterwards: max IOB limits what a bolus adds);
* the basal rate is never above max basal; nothing is delivered unless the pump is running,
  in particular while suspended or while an occlusion is reported;
* a remote bolus never starts before its cancel window has ended;
* a repeated command id is answered from history with the original outcome and never delivers
  twice; a reused id with another command is refused;
* every change of delivery is logged with its source; the insulin delivered between two entries
  is exactly rate times time; the pump delivers what the log says and its IOB is the log's;
* what a controller reconciles from history agrees with what it was told.

Strategies are biased so that most commands succeed and limits are reached often: the pump runs
with small limits (max bolus 4 U, max basal 3 U/h, and max IOB, 2-hour and daily totals chosen
so that each in turn is the one that binds first), a
50 U reservoir and a 100 mAh battery (low after 26 h, flat after 50 h of delivery); a run starts
with a new pump or one that has been delivering its basal for about a day.
"""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from fractions import Fraction

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from pumpguard.clinical import BasalProfile, BasalSegment
from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE, VirtualClock
from pumpguard.devices.insulin import (
    AcknowledgeAlarm,
    Bolus,
    BolusStatus,
    CancelBolus,
    CancelTempBasal,
    ChangeReservoir,
    Command,
    CommandResult,
    CommandSource,
    ExtendedBolus,
    HistoryQuery,
    InsulinLimits,
    InsulinPump,
    InsulinPumpModel,
    Occlusion,
    Outcome,
    PumpState,
    Rejection,
    Resume,
    SetBasalProfile,
    SetCharging,
    SetLimits,
    SetTempBasal,
    SetUtcOffset,
    Suspend,
    reconcile,
)

from .audit import LogAudit
from .conftest import START_MS

LOCAL, REMOTE, AUTOMATED, SYSTEM = (
    CommandSource.LOCAL,
    CommandSource.REMOTE,
    CommandSource.AUTOMATED,
    CommandSource.SYSTEM,
)
SOURCES = st.sampled_from([LOCAL, REMOTE, AUTOMATED])
"""Who sends therapy commands; the system source and malformed commands are in ``fuzz``."""


def _limits(iob: int, two_hours: int, day: int, basal: str = "3") -> InsulinLimits:
    return InsulinLimits(Decimal(4), Decimal(basal), Decimal(iob), Decimal(two_hours), Decimal(day))


STARTING_LIMITS = st.sampled_from(
    [_limits(7, 8, 25), _limits(12, 8, 40, basal="2"), _limits(20, 14, 25, basal="1.5")]
)
"""Each run starts with one limit binding first: max IOB, the 2-hour total, or the daily total
(the scheduled basal alone is 20.1 U a day, so 25 U leaves 4.9 U of boluses); with max basal
1.5 or 2 U/h, a 200 % temp basal of the 1.2 U/h segment is above it."""
PROFILE = BasalProfile.from_schedule({"00:00": "0.5", "06:00": "1.2", "12:00": "0.8", "22:30": "1"})
MODEL = InsulinPumpModel(
    battery_capacity_mah=Decimal(100), remote_cancel_window_ms=10 * MS_PER_MINUTE
)
"""A 10-minute cancel window: long enough for the basal given meanwhile (at least 0.08 U) to
matter when a remote bolus is checked again as its window ends."""
STEP = MODEL.bolus_step_u


def _steps(low: str, high: str, step: str) -> st.SearchStrategy[Decimal]:
    count = int((Decimal(high) - Decimal(low)) / Decimal(step))
    return st.integers(0, count).map(lambda n: Decimal(low) + n * Decimal(step))


BOLUS_U = st.one_of(
    _steps("0.05", "2", "0.05"),
    _steps("0.05", "4.5", "0.05"),
    st.sampled_from([Decimal("3.95"), Decimal("4"), Decimal("4.05")]),  # around max bolus
)
RATES = _steps("0", "3.2", "0.025")
PERCENTS = st.integers(0, 20).map(lambda n: n * 10)
TEMP_MINUTES = st.sampled_from([30, 60, 120, 240, 600])
EXTENDED_MINUTES = st.sampled_from([30, 60, 90, 240, 480])
PROFILES = st.lists(
    st.tuples(st.integers(1, 47).map(lambda n: n * 30), _steps("0", "1.5", "0.025")),
    max_size=4,
).map(lambda extra: _profile(extra))


def _profile(extra: list[tuple[int, Decimal]]) -> BasalProfile:
    starts = sorted({s for s, _ in extra})
    rates = dict(extra)
    first = rates[starts[0]] if starts else Decimal("0.6")
    segments = [BasalSegment(0, first)] + [BasalSegment(s, rates[s]) for s in starts]
    return BasalProfile(tuple(segments))


LIMIT_SETS = st.builds(
    InsulinLimits,
    max_bolus_u=st.sampled_from([Decimal(n) for n in (2, 3, 4, 5, 6)]),
    max_basal_u_h=st.sampled_from([Decimal(n) for n in ("1.5", "2", "3", "4")]),
    max_iob_u=st.sampled_from([Decimal(n) for n in (5, 7, 10)]),
    max_2h_u=st.sampled_from([Decimal(n) for n in (6, 8, 10, 12)]),
    max_tdd_u=st.sampled_from([Decimal(n) for n in (25, 30, 40)]),
)
ADVANCE = st.one_of(
    st.integers(0, 40_000),
    st.integers(1, 60).map(lambda m: m * MS_PER_MINUTE),
    st.tuples(st.integers(1, 26), st.integers(0, MS_PER_HOUR)).map(
        lambda t: t[0] * MS_PER_HOUR - t[1]
    ),
)
WAIT = st.one_of(st.just(0), st.integers(1, 20).map(lambda m: m * MS_PER_MINUTE), ADVANCE)
"""After a therapy command, time often passes, so that what was asked for is delivered."""
BAD_RATES = [Decimal("NaN"), Decimal("-1"), Decimal("0.07"), Decimal("1E+9")]
BAD = st.sampled_from([*BAD_RATES, Decimal("0")])
FUZZ = st.one_of(
    st.builds(Bolus, BAD, st.just(REMOTE), st.just("fz")),
    st.builds(Bolus, BOLUS_U, st.just(SYSTEM)),
    st.builds(Bolus, BOLUS_U, st.sampled_from([REMOTE, AUTOMATED])),  # no command id
    st.builds(ExtendedBolus, BOLUS_U, st.sampled_from([0, 45, 600]), st.just(LOCAL)),
    st.builds(ExtendedBolus, BOLUS_U, EXTENDED_MINUTES, st.just(AUTOMATED), st.just("fz")),
    st.builds(SetTempBasal, st.sampled_from([15, 45, 2000]), st.just(Decimal(1))),
    st.builds(SetTempBasal, TEMP_MINUTES, st.sampled_from(BAD_RATES)),  # 0 U/h is allowed
    st.builds(SetTempBasal, TEMP_MINUTES, st.just(Decimal("4.025"))),  # above any max basal
    st.builds(SetTempBasal, TEMP_MINUTES, st.none(), st.sampled_from([15, 250, -10])),
    st.builds(SetTempBasal, TEMP_MINUTES, RATES, PERCENTS),  # both
    st.builds(Suspend, st.just(SYSTEM)),
    st.builds(Resume, st.just(SYSTEM)),
    st.builds(ChangeReservoir, BAD),
    st.builds(SetUtcOffset, st.sampled_from([7, -1000])),
)
"""Malformed commands and commands from a source that may not send them."""


class InsulinPumpMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = VirtualClock(START_MS)
        self.start(_limits(7, 8, 25))
        self.ids = itertools.count(1)
        self.sent: dict[str, tuple[Command, CommandResult, int]] = {}
        self.bolus_ids: list[int] = []
        self.occluded = False

    @initialize(limits=STARTING_LIMITS, warm_up=st.sampled_from([0, 0, 23, 25]))
    def start(self, limits: InsulinLimits, warm_up: int = 0) -> None:
        """A new pump, or (``warm_up`` hours) one that has run its basal for about a day, so
        that the daily total starts nearly full."""
        self.pump = InsulinPump(
            self.clock, PROFILE, limits=limits, model=MODEL, reservoir_u=Decimal(50)
        )
        self.audit = LogAudit(limits, cancel_window_ms=MODEL.remote_cancel_window_ms)
        self.wait(warm_up * MS_PER_HOUR)

    # ---------------------------------------------------------------- sending

    def _id(self, source: CommandSource, data: st.DataObject) -> str | None:
        """Commands from afar carry an id; the buttons sometimes do."""
        if source is LOCAL:
            return data.draw(st.sampled_from([None, None, f"k{next(self.ids)}"]))
        return f"c{next(self.ids)}"

    def send(self, command: Command) -> CommandResult:
        seen = self.pump.log.last_seq
        result = self.pump.handle(command)
        cid = command.command_id
        if cid is not None and cid in self.sent:
            original, answer, _ = self.sent[cid]
            if original == command:
                assert result.replayed
                assert (result.accepted, result.rejection, result.bolus_id) == (
                    answer.accepted,
                    answer.rejection,
                    answer.bolus_id,
                )
            else:
                assert result.rejection is Rejection.ID_REUSED
            return result
        assert not result.replayed
        if cid is not None:
            self.sent[cid] = (command, result, seen)
        if result.bolus_id is not None:
            self.bolus_ids.append(result.bolus_id)
        if result.accepted and isinstance(command, SetLimits):
            self.audit.note_limits(self.pump.log, self.pump.limits)
        if result.accepted and isinstance(command, Occlusion):
            self.occluded = command.active
        return result

    def wait(self, ms: int) -> None:
        self.clock.advance(ms)
        self.pump.tick()

    # ---------------------------------------------------------------- boluses

    @rule(data=st.data(), source=SOURCES, amount=BOLUS_U, wait=WAIT)
    def bolus(self, data: st.DataObject, source: CommandSource, amount: Decimal, wait: int) -> None:
        self.send(Bolus(amount, source, self._id(source, data)))
        self.wait(wait)

    @rule(
        data=st.data(),
        source=SOURCES,
        later=BOLUS_U,
        minutes=EXTENDED_MINUTES,
        now=st.one_of(st.none(), BOLUS_U),
        wait=WAIT,
    )
    def extended_bolus(
        self,
        data: st.DataObject,
        source: CommandSource,
        later: Decimal,
        minutes: int,
        now: Decimal | None,
        wait: int,
    ) -> None:
        """An extended bolus, often with a normal one at once (a dual wave): two committed."""
        self.send(ExtendedBolus(later, minutes, source, self._id(source, data)))
        if now is not None:
            self.send(Bolus(now, source, self._id(source, data)))
        self.wait(wait)

    @rule(
        data=st.data(),
        source=SOURCES,
        amounts=st.lists(BOLUS_U, min_size=2, max_size=4),
        gap=st.integers(0, 20).map(lambda m: m * MS_PER_MINUTE),
    )
    def boluses_in_a_row(
        self, data: st.DataObject, source: CommandSource, amounts: list[Decimal], gap: int
    ) -> None:
        """A meal and corrections: boluses minutes apart, running into IOB and 2-hour limits."""
        for amount in amounts:
            self.send(Bolus(amount, source, self._id(source, data)))
            self.wait(gap)

    @rule(
        data=st.data(),
        source=SOURCES,
        over=st.sampled_from([0, 0, 1]),
        extended_first=st.one_of(st.none(), BOLUS_U),
        as_extended=st.booleans(),
        wait=WAIT,
    )
    def bolus_up_to_the_limits(
        self,
        data: st.DataObject,
        source: CommandSource,
        over: int,
        extended_first: Decimal | None,
        as_extended: bool,
        wait: int,
    ) -> None:
        """A bolus calculator asking for all the room the limits leave (or one step more), from
        the pump's readings: boundary values for every limit, often with an extended bolus
        already committed."""
        if extended_first is not None:
            self.send(ExtendedBolus(extended_first, 120, source, self._id(source, data)))
        status = self.pump.status()
        limits = status.limits
        committed = sum(
            (v.remaining_u for v in (status.bolus, status.extended) if v is not None), Fraction(0)
        )
        room = min(
            Fraction(limits.max_bolus_u),
            Fraction(limits.max_iob_u) - Fraction(status.iob_u) - committed,
            Fraction(limits.max_2h_u) - status.delivered_2h_u - committed,
            Fraction(limits.max_tdd_u) - status.delivered_24h_u - committed,
        )
        steps = math.floor(room / Fraction(STEP)) + over
        if steps > 0:
            cid = self._id(source, data)
            if as_extended and extended_first is None:
                self.send(ExtendedBolus(steps * STEP, 30, source, cid))
            else:
                self.send(Bolus(steps * STEP, source, cid))
        self.wait(wait)

    @rule(data=st.data(), source=SOURCES, pick=st.integers(0, 4))
    def cancel(self, data: st.DataObject, source: CommandSource, pick: int) -> None:
        if pick == 4:
            self.send(CancelTempBasal(source, self._id(source, data)))
            return
        wanted = [None, *self.bolus_ids[-2:], 999][min(pick, len(self.bolus_ids[-2:]) + 1)]
        self.send(CancelBolus(wanted, source, self._id(source, data)))

    # ---------------------------------------------------------------- basal

    @rule(
        data=st.data(),
        source=SOURCES,
        minutes=TEMP_MINUTES,
        rate=RATES,
        percent=PERCENTS,
        how=st.sampled_from(["rate", "percent", "max", "max+1"]),
        wait=WAIT,
    )
    def temp_basal(
        self,
        data: st.DataObject,
        source: CommandSource,
        minutes: int,
        rate: Decimal,
        percent: int,
        how: str,
        wait: int,
    ) -> None:
        """A temp basal; "max" asks for the highest max basal allows now (a controller at its
        ceiling), as a rate or a percent, and "max+1" one step more."""
        cid = self._id(source, data)
        if how.startswith("max"):
            status = self.pump.status()
            over = 1 if how == "max+1" else 0
            highest = status.limits.max_basal_u_h
            if rate > 1 and status.scheduled_u_h > 0:
                percent = min(200, int(highest * 10 / status.scheduled_u_h) * 10 + 10 * over)
                how = "percent"
            else:
                rate = highest + over * MODEL.basal_step_u_h
                how = "rate"
        if how == "percent":
            self.send(SetTempBasal(minutes, percent=percent, source=source, command_id=cid))
        else:
            self.send(SetTempBasal(minutes, rate_u_h=rate, source=source, command_id=cid))
        self.wait(wait)

    @rule(data=st.data(), source=SOURCES, profile=PROFILES)
    def basal_profile(
        self, data: st.DataObject, source: CommandSource, profile: BasalProfile
    ) -> None:
        self.send(SetBasalProfile(profile, source, self._id(source, data)))

    # ---------------------------------------------------------------- suspend and resume

    @rule(
        data=st.data(),
        source=SOURCES,
        wait=WAIT,
        then=st.sampled_from([None, LOCAL, REMOTE, AUTOMATED]),
    )
    def suspend(
        self, data: st.DataObject, source: CommandSource, wait: int, then: CommandSource | None
    ) -> None:
        """Suspend (the user, the phone, or the controller's low-glucose suspend), and perhaps a
        resume afterwards from any source, the right one or not."""
        self.send(Suspend(source, self._id(source, data)))
        self.wait(wait)
        if then is not None:
            self.send(Resume(then, self._id(then, data)))

    @rule(data=st.data(), source=SOURCES)
    def resume(self, data: st.DataObject, source: CommandSource) -> None:
        self.send(Resume(source, self._id(source, data)))

    @rule(data=st.data(), acknowledge=st.booleans(), wait=WAIT)
    def whoever_suspended_resumes(self, data: st.DataObject, acknowledge: bool, wait: int) -> None:
        """The controller ends its low-glucose suspend, the phone its own, the user the rest
        (after acknowledging the alarms)."""
        if acknowledge:
            self.send(AcknowledgeAlarm())
        last = next(e for e in reversed(list(self.pump.log)) if e.after is not None)
        assert last.after is not None
        by = last.after.suspended_by
        source = LOCAL if by in (None, SYSTEM) else by
        self.send(Resume(source, self._id(source, data)))
        self.wait(wait)

    @rule(units=_steps("5", "300", "5"))
    def user_changes_the_reservoir(self, units: Decimal) -> None:
        if self.pump.state is PumpState.RUNNING:
            self.send(Suspend())
        self.send(ChangeReservoir(units))
        self.send(AcknowledgeAlarm())
        self.send(Resume())

    # ---------------------------------------------------------------- settings and faults

    @rule(
        data=st.data(),
        source=st.sampled_from([LOCAL] * 5 + [REMOTE, AUTOMATED, SYSTEM]),
        limits=LIMIT_SETS,
    )
    def set_limits(self, data: st.DataObject, source: CommandSource, limits: InsulinLimits) -> None:
        self.send(SetLimits(limits, source, None if source is SYSTEM else self._id(source, data)))

    @rule(
        source=st.sampled_from([LOCAL] * 3 + [REMOTE]),
        offset=st.sampled_from([-300, -60, 0, 60, 330, 7]),
        data=st.data(),
    )
    def set_time_zone(self, data: st.DataObject, source: CommandSource, offset: int) -> None:
        self.send(SetUtcOffset(offset, source, self._id(source, data)))

    @rule(
        event=st.sampled_from(["occlusion", "charger", "no-charger"] + ["occlusion-clear"] * 3),
        source=st.sampled_from([SYSTEM] * 5 + [REMOTE]),
    )
    def fault(self, event: str, source: CommandSource) -> None:
        cid = None if source is SYSTEM else f"f{next(self.ids)}"
        if event.startswith("occlusion"):
            self.send(Occlusion(event == "occlusion", source, cid))
        else:
            self.send(SetCharging(event == "charger", source, cid))

    @rule(command=FUZZ)
    def fuzz(self, command: Command) -> None:
        assert not self.send(command).accepted

    # ---------------------------------------------------------------- the radio

    @precondition(lambda self: bool(self.sent))
    @rule(pick=st.integers(0, 10**6), same=st.booleans())
    def replay(self, pick: int, same: bool) -> None:
        """A command id again: a retry, a late duplicate, an attacker's replay (``same``), or a
        buggy or forged sender reusing an id for another command."""
        ids = sorted(self.sent)
        cid = ids[pick % len(ids)]
        command, _, _ = self.sent[cid]
        if same:
            self.send(command)
            return
        other = Bolus(Decimal("0.05"), REMOTE, cid)
        if other != command:
            assert self.send(other).rejection is Rejection.ID_REUSED

    @precondition(lambda self: bool(self.sent))
    @rule(pick=st.integers(0, 10**6))
    def controller_reconciles(self, pick: int) -> None:
        """A controller that lost a confirmation asks the history; the pump's IOB reading is
        the one its log implies."""
        ids = sorted(self.sent)
        cid = ids[pick % len(ids)]
        _, answer, seen = self.sent[cid]
        found = reconcile(self.pump.history(HistoryQuery(command_id=cid)), cid, seen)
        assert not found.resend_same_id
        if not answer.accepted:
            assert found.outcome is Outcome.REFUSED
        elif answer.bolus_id is None:
            assert found.outcome is Outcome.APPLIED
        else:
            view = self.pump.bolus(answer.bolus_id)
            assert view is not None
            assert found.delivered_u == view.delivered_u <= view.amount_u
            expected = {
                BolusStatus.PENDING: Outcome.PENDING,
                BolusStatus.DELIVERING: Outcome.DELIVERING,
                BolusStatus.COMPLETED: Outcome.DELIVERED,
                BolusStatus.CANCELLED: Outcome.CANCELLED,
            }[view.status]
            assert found.outcome is expected
        never = reconcile(
            self.pump.history(HistoryQuery(command_id="never-sent")), "never-sent", seen
        )
        assert never.outcome is Outcome.NOT_RECEIVED and never.resend_same_id
        self.audit.check_iob(self.pump, self.clock.now_ms())

    @rule(ms=ADVANCE)
    def advance(self, ms: int) -> None:
        self.wait(ms)

    # ---------------------------------------------------------------- invariants

    @invariant()
    def the_log_accounts_for_everything_and_limits_hold(self) -> None:
        self.audit.check_now(self.pump, self.clock.now_ms())

    @invariant()
    def nothing_delivered_unless_running(self) -> None:
        state = self.pump.state
        if self.occluded:
            assert state is PumpState.STOPPED
        if state is not PumpState.RUNNING:
            assert self.pump.total_u_h == 0


TestInsulinPump = InsulinPumpMachine.TestCase
TestInsulinPump.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class InsulinPumpSoak(InsulinPumpMachine):
    """The same machine, longer: run with ``--run-slow`` (a few minutes)."""


TestInsulinPumpSoak = pytest.mark.slow(InsulinPumpSoak.TestCase)
TestInsulinPumpSoak.settings = settings(
    max_examples=2000,
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
