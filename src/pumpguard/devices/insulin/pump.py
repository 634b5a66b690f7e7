"""Insulin pump firmware as a deterministic state machine.

The pump is driven by commands and by a ``Clock``; between commands it integrates delivery
exactly (fractions of units, integer milliseconds) and stops exactly at the next event: a basal
segment boundary at a time of day, the end of a bolus, an extended bolus or a temp basal, the end
of a remote bolus's cancel window, the reservoir running low or dry, the battery crossing a
threshold, a rolling delivery limit about to be crossed. It never sleeps, spawns threads or
opens sockets.

Safety properties the firmware keeps whatever the source of a command (the state-machine tests
check them, from the log, on random sequences of commands, faults and clock advances):

* limits hold for every source (buttons, phone, automated controller): a bolus is refused above
  max bolus, or if insulin on board, the rolling 2-hour total or the rolling 24-hour total
  (each counting the bolus insulin committed but not yet delivered) would go above its limit;
  a basal profile or temp basal is refused above max basal;
* whatever happens afterwards, the pump never *delivers* beyond the 2-hour and 24-hour totals:
  at the last whole millisecond before a total would be crossed, all delivery stops with a
  high-priority alarm (and likewise before the reservoir would run dry); after such a limit
  stop the pump restarts the scheduled basal by itself, at the first millisecond the schedule
  fits both limits for good (a stop that waits for the user risks ketoacidosis), and accepts
  nothing else from afar until the alarm is acknowledged at the pump;
* limits are changed with the buttons on the pump only;
* a bolus from the phone waits out a cancel window, with an alert on the pump, before any
  insulin moves; the user can cancel it with a button;
* suspend stops everything: running and pending boluses and the temp basal are cancelled, never
  resumed; an occlusion, an empty reservoir, a flat battery or a reached limit stops everything
  the same way and latches until the user at the pump has acknowledged it and resumes (the
  limit stop's fallback to the schedule above excepted);
* a repeated command id is answered from history and never acts twice;
* every change to delivery is in the append-only log with its source, command id, time and the
  delivery state before and after; the insulin delivered between two entries is exactly the
  earlier entry's total rate times the time between them.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from pumpguard.clinical import BasalProfile, round_down
from pumpguard.clock import MS_PER_HOUR, MS_PER_MINUTE, Clock
from pumpguard.devices.insulin._ledger import Ledger
from pumpguard.devices.insulin._running import RunningBolus, TempBasal, Window
from pumpguard.devices.insulin._running import units_text as _text
from pumpguard.devices.insulin.alarms import Alarm, AlarmKind
from pumpguard.devices.insulin.commands import (
    AcknowledgeAlarm,
    Bolus,
    CancelBolus,
    CancelTempBasal,
    ChangeReservoir,
    Command,
    CommandResult,
    CommandSource,
    ExtendedBolus,
    MeterGlucose,
    Occlusion,
    Rejection,
    Resume,
    SetBasalProfile,
    SetCharging,
    SetLimits,
    SetTempBasal,
    SetUtcOffset,
    StartLimitedMode,
    Suspend,
)
from pumpguard.devices.insulin.history import CommandRecord, HistoryQuery, HistoryReply
from pumpguard.devices.insulin.limits import (
    DEFAULT_LIMITS,
    InsulinLimits,
    LimitIssue,
    limit_problems,
)
from pumpguard.devices.insulin.log import (
    BolusKind,
    BolusStatus,
    BolusView,
    DeliverySnapshot,
    EventKind,
    EventLog,
    TempBasalView,
)
from pumpguard.devices.insulin.meter import METER_RANGE_MGDL, MeterReading, MeterSuspendRule
from pumpguard.devices.insulin.model import InsulinPumpModel, PumpState
from pumpguard.devices.power import Battery

__all__ = ["InsulinPump", "Status"]

_ZERO = Fraction(0)
_DAY_MS = 24 * MS_PER_HOUR
_LOCAL = CommandSource.LOCAL
_REMOTE = CommandSource.REMOTE
_AUTOMATED = CommandSource.AUTOMATED
_SYSTEM = CommandSource.SYSTEM
_LIMIT_ALARMS = (AlarmKind.TWO_HOUR_LIMIT, AlarmKind.DAILY_LIMIT)
_UTC_OFFSETS = (-720, 840, 15)
LIMITED_MODE_MINUTES = 240
"""How long limited mode runs before the pump reverts to the scheduled basal and alarms: 4 h,
as the MiniMed 780G, which leaves SmartGuard after four hours of basal delivered from its
insulin history instead of sensor glucose (Medtronic 780G support, "Returning to SmartGuard").
Bounded because the adaptive rate is a guess from the past: it can be too little for a day
that changed (illness, a missed meal bolus), and a lasting silent reduction risks ketosis;
after 4 h a person has to look (the alarm), and the schedule is what the clinician set."""
ADAPTIVE_WINDOW_MS = 4 * MS_PER_HOUR
"""The adaptive rate is the mean basal delivery (scheduled and temp basal, no boluses) over
the last 4 hours: long enough to average the AID's 5-minute swings and the suspensions
around a meal, short enough to follow the day (Omnipod 5 learns its adaptive rate from the
insulin history of earlier pods; this pump has only its own log)."""
"""UTC-12:00 to UTC+14:00 in quarter hours (the offsets in use world-wide)."""


@dataclass(frozen=True, slots=True)
class Status:
    """What the pump's screen shows, computed from the delivery engine at the instant asked."""

    state: PumpState
    time_of_day: str
    basal_u_h: Fraction
    scheduled_u_h: Decimal
    temp: TempBasalView | None
    bolus: BolusView | None
    extended: BolusView | None
    total_u_h: Fraction
    iob_u: Decimal
    delivered_2h_u: Fraction
    delivered_24h_u: Fraction
    reservoir_u: Fraction
    limits: InsulinLimits
    alarms: tuple[AlarmKind, ...]
    battery_percent: int

    def lines(self) -> list[str]:
        out = [f"{self.state.value.upper()}  {self.time_of_day}  battery {self.battery_percent}%"]
        basal = f"basal {_text(self.basal_u_h)} U/h"
        if self.temp is not None:
            what = f"{self.temp.percent} %" if self.temp.percent is not None else "absolute"
            basal += f" (temp basal, {what})"
        out.append(basal)
        for bolus in (self.bolus, self.extended):
            if bolus is not None:
                out.append(
                    f"{bolus.kind} bolus #{bolus.bolus_id}: {_text(bolus.delivered_u)} of "
                    f"{_text(bolus.amount_u)} U, {bolus.status} (from {bolus.source})"
                )
        out.append(
            f"IOB {_text(self.iob_u)} U; last 2 h {_text(self.delivered_2h_u)} of "
            f"{self.limits.max_2h_u} U; last 24 h {_text(self.delivered_24h_u)} of "
            f"{self.limits.max_tdd_u} U"
        )
        out.append(f"reservoir {_text(self.reservoir_u)} U")
        out.extend(f"ALARM {a.priority.name}: {a.text}" for a in self.alarms)
        return out


class InsulinPump:
    """One insulin pump's firmware. Feed it commands with ``handle``; read it with ``status``."""

    def __init__(
        self,
        clock: Clock,
        profile: BasalProfile,
        *,
        limits: InsulinLimits = DEFAULT_LIMITS,
        model: InsulinPumpModel | None = None,
        utc_offset_min: int = 0,
        reservoir_u: Decimal | None = None,
        charging: bool = False,
        serial: str = "INSULIN-0001",
        meter_rule: MeterSuspendRule | None = None,
    ) -> None:
        self.model = model or InsulinPumpModel()
        self.serial = serial
        self.log = EventLog()
        self._clock = clock
        self._t = clock.now_ms()
        reservoir = self.model.reservoir_capacity_u if reservoir_u is None else reservoir_u
        problems = [m for _, m in self._profile_problems(profile, limits)]
        problems += [m for _, m in self._limit_problems(limits, profile)]
        offset = self._offset_problem(utc_offset_min)
        fill = self._decimal_problem(
            reservoir, "reservoir", self.model.bolus_step_u, self.model.reservoir_capacity_u
        )
        problems += [r.message for r in (offset, fill) if r is not None]
        if problems:
            raise ValueError("cannot start the pump: " + "; ".join(dict.fromkeys(problems)))
        self._profile = profile
        self._limits = limits
        self._offset_min = utc_offset_min
        self._ledger = Ledger(self._t)
        self._fill = Fraction(reservoir)
        self._fill_mark = self._ledger.total_u
        self._temp: TempBasal | None = None
        self._bolus: RunningBolus | None = None
        self._extended: RunningBolus | None = None
        self._suspended_by: CommandSource | None = None
        self._alarms: dict[AlarmKind, Alarm] = {}
        self._occluded = False
        self._basal = _ZERO
        self._boluses: OrderedDict[int, RunningBolus] = OrderedDict()
        self._next_bolus_id = 1
        self._commands: OrderedDict[str, CommandRecord] = OrderedDict()
        self._complete_since_seq = 0
        self._steady: tuple[int, Fraction, Decimal] | None = None
        """Until the next event: its time, the total rate and the battery load."""
        self._windows_of: tuple[InsulinLimits, tuple[Window, Window]] | None = None
        self._stop_cause: AlarmKind | None = None
        """Why the pump stopped itself (a limit stop may fall back to the scheduled basal)."""
        self._limited_id: str | None = None
        """Command id of the running limited-mode temp basal, if one runs."""
        self._limited_over = False
        """Limited mode ran its bounded time: no new limited mode until automation resumes (an
        automated dose command accepted) or the user acknowledges the alarm at the pump."""
        self.meter_rule = meter_rule or MeterSuspendRule()
        """Set at the pump with the therapy settings (threshold, bottom of the range)."""
        self._meter: list[MeterReading] = []
        self._meter_hold_ms: int | None = None
        """Until when keypad fingersticks hold the limited-mode basal at zero."""
        self.battery = Battery(self.model.battery_capacity_mah, mains=charging)
        with self._changing(EventKind.STARTED, _LOCAL, f"{self.model.name} {serial}"):
            self._basal = self._target_basal()
        self._timed_events()

    # ------------------------------------------------------------------ reading

    @property
    def state(self) -> PumpState:
        self.tick()
        return self._state()

    @property
    def total_u_h(self) -> Fraction:
        """The rate the mechanism is driven at right now (basal plus boluses)."""
        self.tick()
        return self._rate()

    @property
    def basal_u_h(self) -> Fraction:
        self.tick()
        return self._basal

    @property
    def delivered_u(self) -> Fraction:
        """Everything delivered since the pump started."""
        self.tick()
        return self._ledger.total_u

    @property
    def reservoir_u(self) -> Fraction:
        self.tick()
        return self._reservoir

    @property
    def iob_u(self) -> Decimal:
        """Insulin on board from everything delivered (basal included), by the pump's curve."""
        self.tick()
        return self._iob()

    @property
    def limits(self) -> InsulinLimits:
        return self._limits

    @property
    def profile(self) -> BasalProfile:
        return self._profile

    @property
    def utc_offset_min(self) -> int:
        return self._offset_min

    @property
    def alarms(self) -> tuple[Alarm, ...]:
        """Active alarms, highest priority first."""
        self.tick()
        return tuple(sorted(self._alarms.values(), key=lambda a: (-a.kind.priority, a.since_ms)))

    @property
    def temp_basal(self) -> TempBasalView | None:
        self.tick()
        return None if self._temp is None else self._temp.view()

    def delivered_in_last(self, ms: int) -> Fraction:
        """Units delivered in the ``ms`` milliseconds up to now (2 h and 24 h are the limits)."""
        self.tick()
        return self._ledger.between(self._t - ms, self._t)

    def bolus(self, bolus_id: int) -> BolusView | None:
        self.tick()
        found = self._boluses.get(bolus_id)
        return None if found is None else found.view()

    def status(self) -> Status:
        self.tick()
        return Status(
            self._state(),
            _hh_mm(self._ms_of_day(self._t)),
            self._basal,
            self._scheduled(self._t),
            None if self._temp is None else self._temp.view(),
            None if self._bolus is None else self._bolus.view(),
            None if self._extended is None else self._extended.view(),
            self._rate(),
            self._iob(),
            self._ledger.between(self._t - 2 * MS_PER_HOUR, self._t),
            self._ledger.between(self._t - _DAY_MS, self._t),
            self._reservoir,
            self._limits,
            tuple(a.kind for a in self.alarms),
            int(self.battery.fraction * 100),
        )

    def history(self, query: HistoryQuery) -> HistoryReply:
        """What a controller reconciles with: log entries since a cursor, the fate of a command."""
        self.tick()
        entries = () if query.since_seq is None else self.log.since(query.since_seq)
        record = None if query.command_id is None else self._commands.get(query.command_id)
        bolus = None
        if record is not None and record.result.bolus_id is not None:
            found = self._boluses.get(record.result.bolus_id)
            bolus = None if found is None else found.view()
        return HistoryReply(
            self._t, self.log.last_seq, self._complete_since_seq, entries, record, bolus
        )

    # ------------------------------------------------------------------ driving

    def tick(self) -> None:
        """Catch up with the clock: integrate delivery and fire timed events up to now.

        The next event is an absolute time that stays exact while nothing but delivery at a
        constant rate happens (every headroom shrinks by exactly the time delivered), so it is
        computed once per change rather than once per call; timed events are looked at only
        when one is due, because none can fire before the earliest of them.
        """
        now = self._clock.now_ms()
        while self._t < now:
            steady = self._steady
            if steady is None:
                steady = self._steady = (self._next_event_ms(), self._rate(), self._load_ma())
            event, rate, load = steady
            until = min(now, event)
            self._deliver(until - self._t, rate, load)
            self._t = until
            if until >= event:
                self._steady = None
                self._timed_events()
        self._ledger.forget_before(self._t - _DAY_MS - MS_PER_HOUR)

    def handle(self, command: Command) -> CommandResult:
        """Apply one command at the pump's current time and say what became of it."""
        self.tick()
        source = getattr(command, "source", _SYSTEM)
        command_id = getattr(command, "command_id", None)
        problem = self._command_id_problem(source, command_id)
        if problem is not None:
            return self._rejected(command, source, None, problem)
        if command_id is not None and command_id in self._commands:
            record = self._commands[command_id]
            if record.command == command:
                outcome = "accepted" if record.result.accepted else "refused"
                self.log.append(
                    self._t,
                    EventKind.COMMAND_REPLAYED,
                    source,
                    f"{type(command).__name__} {outcome} at {record.time_ms}: answered from "
                    "history, nothing done again",
                    command_id=command_id,
                    bolus_id=record.result.bolus_id,
                )
                return replace(record.result, replayed=True)
            refusal = _refuse(
                Rejection.ID_REUSED, f"command id {command_id!r} was used for another command"
            )
            return self._rejected(command, source, command_id, refusal)
        seq = self.log.last_seq
        self._steady = None
        result = replace(self._dispatch(command), command_id=command_id)
        if (
            result.accepted
            and source is _AUTOMATED
            and isinstance(command, SetTempBasal | CancelTempBasal | Bolus)
        ):
            self._limited_over = False  # automation is back: its alarm clears itself
        if not result.accepted:
            self._rejected(command, source, command_id, result)
        self._timed_events()
        if command_id is not None:
            self._remember(CommandRecord(command_id, command, source, seq, self._t, result))
        return result

    def _rejected(
        self, command: object, source: CommandSource, command_id: str | None, result: CommandResult
    ) -> CommandResult:
        self.log.append(
            self._t,
            EventKind.COMMAND_REJECTED,
            source if isinstance(source, CommandSource) else _SYSTEM,
            f"{type(command).__name__}: {result.message}",
            command_id=command_id,
        )
        return replace(result, command_id=command_id)

    def _remember(self, record: CommandRecord) -> None:
        self._commands[record.command_id] = record
        while len(self._commands) > self.model.history_capacity:
            _, forgotten = self._commands.popitem(last=False)
            self._complete_since_seq = forgotten.seq + 1

    def _command_id_problem(self, source: object, command_id: object) -> CommandResult | None:
        if not isinstance(source, CommandSource):
            return _refuse(Rejection.INVALID, f"unknown command source {source!r}")
        if command_id is None:
            if source in (_REMOTE, _AUTOMATED):
                return _refuse(
                    Rejection.INVALID,
                    "a command from the phone or the controller needs a command id "
                    "(it is what makes a retry safe)",
                )
            return None
        if (
            not isinstance(command_id, str)
            or not command_id.strip()
            or len(command_id) > self.model.max_command_id_length
            or not command_id.isprintable()
        ):
            return _refuse(
                Rejection.INVALID,
                f"a command id is 1 to {self.model.max_command_id_length} printable characters",
            )
        return None

    def _dispatch(self, command: Command) -> CommandResult:
        match command:
            case Bolus() | ExtendedBolus():
                return self._start_bolus(command)
            case CancelBolus():
                return self._cancel_bolus(command)
            case SetTempBasal():
                return self._set_temp(command)
            case CancelTempBasal():
                return self._cancel_temp(command)
            case Suspend():
                return self._suspend(command)
            case Resume():
                return self._resume(command)
            case StartLimitedMode():
                return self._start_limited(command)
            case SetBasalProfile():
                return self._set_profile(command)
            case SetLimits():
                return self._set_limits(command)
            case SetUtcOffset():
                return self._set_offset(command)
            case AcknowledgeAlarm():
                return self._acknowledge(command)
            case MeterGlucose():
                return self._meter_glucose(command)
            case ChangeReservoir():
                return self._change_reservoir(command)
            case Occlusion():
                return self._occlusion(command)
            case SetCharging():
                return self._charging(command)
        return _refuse(Rejection.UNSUPPORTED, f"not an insulin pump command: {command!r}")

    # ------------------------------------------------------------------ delivery engine

    def _state(self) -> PumpState:
        if self._suspended_by is None:
            return PumpState.RUNNING
        return PumpState.STOPPED if self._suspended_by is _SYSTEM else PumpState.SUSPENDED

    def _rate(self) -> Fraction:
        rate = self._basal
        for bolus in (self._bolus, self._extended):
            if bolus is not None:
                rate += bolus.rate()
        return rate

    @property
    def _reservoir(self) -> Fraction:
        """What the last fill holds minus everything delivered since (the ledger is exact)."""
        return self._fill - (self._ledger.total_u - self._fill_mark)

    def _ms_of_day(self, when_ms: int) -> int:
        return (when_ms + self._offset_min * MS_PER_MINUTE) % _DAY_MS

    def _scheduled(self, when_ms: int) -> Decimal:
        return self._profile.rate_at(Fraction(self._ms_of_day(when_ms), MS_PER_MINUTE))

    def _next_boundary(self, when_ms: int) -> int:
        """The next time the schedule moves to another segment (at or after midnight)."""
        of_day = self._ms_of_day(when_ms)
        start = self._profile.next_start_after(Fraction(of_day, MS_PER_MINUTE))
        return when_ms + start * MS_PER_MINUTE - of_day

    def _scheduled_rates(self, start_ms: int, end_ms: int) -> list[Decimal]:
        """Every scheduled rate in force at some time in ``[start_ms, end_ms)``."""
        rates = [self._scheduled(start_ms)]
        when = self._next_boundary(start_ms)
        while when < end_ms:
            rates.append(self._scheduled(when))
            when = self._next_boundary(when)
        return rates

    def _percent_rate(self, scheduled: Decimal, percent: int) -> Decimal:
        """A percent temp basal rounds down to the pump's basal step: never more than asked."""
        return round_down(scheduled * percent / 100, self.model.basal_step_u_h)

    def _target_basal(self) -> Fraction:
        """What the basal should be now: nothing when suspended, else temp or scheduled."""
        if self._suspended_by is not None:
            return _ZERO
        if self._meter_holds():
            return _ZERO
        temp = self._temp
        if temp is None:
            return Fraction(self._scheduled(self._t))
        if temp.rate_u_h is not None:
            return Fraction(temp.rate_u_h)
        assert temp.percent is not None
        return Fraction(self._percent_rate(self._scheduled(self._t), temp.percent))

    def _iob(self) -> Decimal:
        curve = self.model.insulin
        return curve.iob(self._ledger.deliveries_since(self._t - curve.total_ms), self._t)

    def _windows(self, limits: InsulinLimits | None = None) -> tuple[Window, Window]:
        if limits is None:
            cached = self._windows_of
            if cached is not None and cached[0] is self._limits:
                return cached[1]
            windows = self._windows(self._limits)
            self._windows_of = (self._limits, windows)
            return windows
        return (
            Window(
                "2-hour",
                2 * MS_PER_HOUR,
                Fraction(limits.max_2h_u),
                AlarmKind.TWO_HOUR_LIMIT,
                Rejection.TWO_HOUR_LIMIT,
            ),
            Window(
                "24-hour",
                _DAY_MS,
                Fraction(limits.max_tdd_u),
                AlarmKind.DAILY_LIMIT,
                Rejection.DAILY_LIMIT,
            ),
        )

    def _room(self, rate: Fraction) -> list[tuple[int, AlarmKind, Rejection]]:
        """Whole milliseconds of delivery at ``rate`` each constraint still allows from now.

        For the reservoir, what is left over the rate. For a rolling window, the headroom over
        the rate at which the window's total grows: ``rate`` minus the rate delivered one window
        ago (which leaves the window). That rate is constant until the next change of the
        delivery record, one window length ago; the engine has an event there, so the answer is
        exact up to the next event.
        """
        if rate <= 0:
            return []
        ledger = self._ledger
        per_ms = ledger.scaled(rate)
        per_unit = ledger.per_unit
        left = self._reservoir
        room = [
            (
                left.numerator * per_unit // (left.denominator * per_ms),
                AlarmKind.RESERVOIR_EMPTY,
                Rejection.RESERVOIR,
            )
        ]
        for window in self._windows():
            since = self._t - window.length_ms
            growth = per_ms - ledger.rate_units_at(since)
            if growth > 0:
                limit = window.limit
                done = ledger.units_between(since, self._t)
                headroom = limit.numerator * per_unit - limit.denominator * done
                room.append(
                    (headroom // (limit.denominator * growth), window.alarm, window.rejection)
                )
        return room

    def _room_refusal(self, rate: Fraction) -> CommandResult | None:
        """Refuse a change that could not deliver for even one millisecond at ``rate``."""
        for ms, _, rejection in self._room(rate):
            if ms < 1:
                what = {
                    Rejection.RESERVOIR: "the reservoir is empty",
                    Rejection.TWO_HOUR_LIMIT: "the 2-hour total is at its limit",
                    Rejection.DAILY_LIMIT: "the 24-hour total is at its limit",
                }[rejection]
                return _refuse(rejection, what)
        return None

    def _next_event_ms(self) -> int:
        """The next time anything can happen without a command (delivery stopping exactly at
        a limit, a bolus or temp basal ending, a basal segment, a threshold crossed)."""
        t = self._t
        candidates = [t + _DAY_MS]
        for bolus in (self._bolus, self._extended):
            if bolus is not None:
                pending = bolus.status is BolusStatus.PENDING
                candidates.append(bolus.start_ms + (0 if pending else bolus.duration_ms))
        if self._temp is not None:
            candidates.append(self._temp.end_ms)
        if self._meter_holds():
            assert self._meter_hold_ms is not None
            candidates.append(self._meter_hold_ms)
        if self._suspended_by is None and len(self._profile.segments) > 1:
            candidates.append(self._next_boundary(t))
        rate = self._rate()
        if rate > 0:
            candidates.extend(t + ms for ms, _, _ in self._room(rate))
            low = Fraction(self.model.low_reservoir_u)
            if self._reservoir > low:
                candidates.append(t + math.ceil((self._reservoir - low) * MS_PER_HOUR / rate))
            for window in self._windows():
                change = self._ledger.next_change_after(t - window.length_ms)
                if change is not None:
                    candidates.append(change + window.length_ms)
        fallback = self._fallback_ms()
        if fallback is not None:
            candidates.append(fallback)
            for window in self._windows():
                change = self._ledger.next_change_after(t - window.length_ms)
                if change is not None:
                    candidates.append(change + window.length_ms)
        load = self._load_ma()
        for level in (self._low_battery_mah(), Decimal(0)):
            ms = self.battery.ms_until(level, load)
            if ms is not None:
                candidates.append(t + ms)
        return max(t + 1, min(candidates))

    def _deliver(self, dt_ms: int, rate: Fraction, load_ma: Decimal) -> None:
        self.battery.advance(dt_ms, load_ma)
        for bolus in (self._bolus, self._extended):
            if bolus is not None and bolus.status is BolusStatus.DELIVERING:
                bolus.delivered += bolus.amount * dt_ms / bolus.duration_ms
        self._ledger.add(self._t, self._t + dt_ms, rate)

    def _load_ma(self) -> Decimal:
        if self._rate() <= 0:
            return self.model.idle_draw_ma
        draw = self.model.delivering_draw_ma
        if self._bolus is not None and self._bolus.status is BolusStatus.DELIVERING:
            draw += self.model.bolus_draw_ma
        return draw

    def _low_battery_mah(self) -> Decimal:
        """Low battery: less than ``low_battery_hours`` of delivering left."""
        return self.model.delivering_draw_ma * self.model.low_battery_hours

    def _timed_events(self) -> None:
        self._start_due_boluses()
        self._finish_boluses()
        temp = self._temp
        if temp is not None and self._t >= temp.end_ms:
            if temp.command_id is not None and temp.command_id == self._limited_id:
                self._limited_id = None
                self._limited_over = True
                self._raise(AlarmKind.LIMITED_MODE_ENDED, _SYSTEM)
            with self._changing(
                EventKind.TEMP_BASAL_END,
                _SYSTEM,
                f"{temp.describe()} ended",
                command_id=temp.command_id,
            ):
                self._temp = None
                self._basal = self._target_basal()
        self._fall_back_to_schedule()
        self._follow_schedule()
        self._guard()
        if self._reservoir <= self.model.low_reservoir_u:
            self._raise(AlarmKind.RESERVOIR_LOW, _SYSTEM)
        self._battery_events()
        for kind in [k for k in self._alarms if k.self_clearing]:
            if not self._condition_present(kind):
                del self._alarms[kind]
                self.log.append(self._t, EventKind.ALARM_OFF, _SYSTEM, kind.text)

    def _start_due_boluses(self) -> None:
        for bolus in (self._bolus, self._extended):
            if bolus is None or bolus.status is not BolusStatus.PENDING or bolus.start_ms > self._t:
                continue
            refusal = self._dose_refusal(bolus.amount, exclude=bolus)
            if refusal is not None:
                with self._changing(
                    EventKind.BOLUS_CANCEL,
                    bolus.source,
                    f"{bolus.describe()} not started at the end of its cancel window: "
                    f"{refusal.message}",
                    command_id=bolus.command_id,
                    bolus_id=bolus.bolus_id,
                ):
                    self._end_bolus(bolus, BolusStatus.CANCELLED, refusal.message)
                continue
            with self._changing(
                EventKind.BOLUS_START,
                bolus.source,
                f"{bolus.describe()} from {bolus.source}, after its cancel window",
                command_id=bolus.command_id,
                bolus_id=bolus.bolus_id,
            ):
                bolus.status = BolusStatus.DELIVERING
                bolus.start_ms = self._t

    def _finish_boluses(self) -> None:
        for bolus in (self._bolus, self._extended):
            if (
                bolus is not None
                and bolus.status is BolusStatus.DELIVERING
                and self._t >= bolus.start_ms + bolus.duration_ms
            ):
                with self._changing(
                    EventKind.BOLUS_COMPLETE,
                    bolus.source,
                    f"{bolus.describe()} delivered",
                    command_id=bolus.command_id,
                    bolus_id=bolus.bolus_id,
                ):
                    self._end_bolus(bolus, BolusStatus.COMPLETED, "delivered")

    def _follow_schedule(self) -> None:
        target = self._target_basal()
        if target == self._basal:
            return
        detail = (
            f"{_hh_mm(self._ms_of_day(self._t))} segment: scheduled {self._scheduled(self._t)} U/h"
        )
        if self._temp is not None and self._temp.percent is not None:
            detail += f", {self._temp.percent} % temp basal"
        if self._meter_hold_ms is not None and self._t >= self._meter_hold_ms:
            self._meter_hold_ms = None
            detail = "no fingerstick for the meter hold: the limited-mode basal resumes"
        with self._changing(EventKind.BASAL_CHANGE, _SYSTEM, detail):
            self._basal = target

    def _guard(self) -> None:
        """Stop everything if the next millisecond would cross a limit or empty the reservoir."""
        for ms, alarm, _ in self._room(self._rate()):
            if ms < 1:
                self._stop(alarm)
                return

    def _battery_events(self) -> None:
        if self.battery.mains:
            return
        if self.battery.at_or_below(Decimal(0)):
            self._stop(AlarmKind.BATTERY_DEPLETED)
        elif self.battery.at_or_below(self._low_battery_mah()):
            self._raise(AlarmKind.BATTERY_LOW, _SYSTEM)

    def _dose_refusal(
        self, amount: Fraction, exclude: RunningBolus | None = None
    ) -> CommandResult | None:
        """The limits a new bolus must fit, counting what is committed but not yet delivered."""
        committed = sum(
            (
                b.remaining
                for b in (self._bolus, self._extended)
                if b is not None and b is not exclude
            ),
            _ZERO,
        )
        if committed + amount > self._reservoir:
            return _refuse(
                Rejection.RESERVOIR,
                f"the reservoir holds {_text(self._reservoir)} U, {_text(committed)} U "
                "already committed",
            )
        iob = Fraction(self._iob())
        max_iob = self._limits.max_iob_u
        if iob + committed + amount > max_iob:
            return _refuse(
                Rejection.MAX_IOB,
                f"insulin on board {_text(iob)} U + {_text(committed)} U committed + "
                f"{_text(amount)} U would exceed max IOB {max_iob} U",
            )
        for window in self._windows():
            done = self._ledger.between(self._t - window.length_ms, self._t)
            if done + committed + amount > window.limit:
                return _refuse(
                    window.rejection,
                    f"{_text(done)} U delivered in the last {window.name[:-5]} h + "
                    f"{_text(committed)} U committed + {_text(amount)} U would exceed the "
                    f"{window.name} limit {_text(window.limit)} U",
                )
        return None

    def _snapshot(self) -> DeliverySnapshot:
        bolus, extended = self._bolus, self._extended
        return DeliverySnapshot(
            self._state(),
            self._suspended_by,
            self._basal,
            self._scheduled(self._t),
            None if self._temp is None else self._temp.view(),
            None if bolus is None else bolus.view(),
            None if extended is None else extended.view(),
            _ZERO if bolus is None else bolus.rate(),
            _ZERO if extended is None else extended.rate(),
            self._ledger.total_u,
            self._reservoir,
        )

    @contextmanager
    def _changing(
        self,
        kind: EventKind,
        source: CommandSource,
        detail: str = "",
        *,
        command_id: str | None = None,
        bolus_id: int | None = None,
    ) -> Iterator[list[str]]:
        """Log the change made inside the block, with the delivery state before and after."""
        before = self._snapshot()
        notes: list[str] = []
        yield notes
        text = "; ".join(part for part in (detail, *notes) if part)
        self.log.append(
            self._t,
            kind,
            source,
            text,
            command_id=command_id,
            bolus_id=bolus_id,
            before=before,
            after=self._snapshot(),
        )

    def _end_bolus(self, bolus: RunningBolus, status: BolusStatus, reason: str) -> None:
        bolus.status = status
        bolus.end_ms = self._t
        bolus.end_reason = reason
        if self._bolus is bolus:
            self._bolus = None
        if self._extended is bolus:
            self._extended = None

    def _stop_everything(self, reason: str) -> list[str]:
        """Cancel every bolus (running or pending) and the temp basal; say what was cancelled."""
        notes = []
        for bolus in (self._bolus, self._extended):
            if bolus is not None:
                notes.append(
                    f"{bolus.describe()} cancelled ({bolus.status}, {_text(bolus.delivered)} U "
                    "delivered)"
                )
                self._end_bolus(bolus, BolusStatus.CANCELLED, reason)
        if self._temp is not None:
            notes.append(f"{self._temp.describe()} cancelled")
            self._temp = None
        return notes

    def _keep(self, bolus: RunningBolus) -> None:
        self._boluses[bolus.bolus_id] = bolus
        while len(self._boluses) > self.model.history_capacity:
            oldest = next(iter(self._boluses.values()))
            if oldest.active:
                break
            self._boluses.popitem(last=False)

    # ------------------------------------------------------------------ alarms

    def _raise(self, kind: AlarmKind, source: CommandSource) -> None:
        if kind in self._alarms:
            return
        self._alarms[kind] = Alarm(kind, self._t)
        self.log.append(self._t, EventKind.ALARM_ON, source, f"{kind.priority.name} {kind.text}")

    def _stop(self, kind: AlarmKind) -> None:
        """A stopping alarm: halt all delivery now (fail safe), latch and alarm."""
        if self._suspended_by is not _SYSTEM:
            with self._changing(
                EventKind.DELIVERY_STOP, _SYSTEM, f"stopped by the {kind.text} alarm"
            ) as notes:
                notes.extend(self._stop_everything(kind.text))
                self._suspended_by = _SYSTEM
                self._basal = _ZERO
            self._stop_cause = kind
        elif kind not in _LIMIT_ALARMS:
            self._stop_cause = kind
        self._raise(kind, _SYSTEM)

    def _fallback_ms(self) -> int | None:
        """The latest time the scheduled basal takes to fit the limits again after a limit stop
        (None: not stopped by a limit, or never by itself); ``_schedule_fits`` often finds an
        earlier one.

        While stopped nothing enters the rolling windows and what was delivered leaves them; the
        schedule surely fits once, for each window, what is still in it plus the most the
        schedule can give in a window length is within the limit: any later window holds part of
        the present one plus at most one window length of schedule.
        """
        if (
            self._suspended_by is not _SYSTEM
            or self._stop_cause not in _LIMIT_ALARMS
            or self._occluded
            or any(k.stops_delivery and k not in _LIMIT_ALARMS for k in self._alarms)
        ):
            return None
        due = self._t
        for window in self._windows():
            since = self._t - window.length_ms
            busiest = self._profile.max_total_in(window.length_ms // MS_PER_MINUTE)
            excess = self._ledger.between(since, self._t) + busiest - window.limit
            if excess > 0:
                leaves = self._ledger.reach(since, excess)
                if leaves is None:
                    return None
                due = max(due, leaves + window.length_ms)
        return due

    def _schedule_fits(self) -> bool:
        """Whether the scheduled basal, restarted now and alone, keeps every later window within
        its limit, counting the insulin that will leave the window meanwhile.

        For a window of length L the total at a later time T is what the ledger holds from
        T - L to now plus the schedule from now to T; both are piecewise linear in T, so the
        largest total is at a corner: a schedule boundary, a ledger change one window length
        on, or T = now + L (after that the window holds schedule only, within the limit by the
        coherence rule of the limits).
        """
        t = self._t
        points = [t]
        while (boundary := self._next_boundary(points[-1])) < t + _DAY_MS:
            points.append(boundary)
        given = [_ZERO]
        for start, end in zip(points, [*points[1:], t + _DAY_MS], strict=True):
            given.append(given[-1] + Fraction(self._scheduled(start)) * (end - start) / MS_PER_HOUR)

        def scheduled_until(when: int) -> Fraction:
            i = bisect.bisect_right(points, when) - 1
            rate = Fraction(self._scheduled(points[i]))
            return given[i] + rate * (when - points[i]) / MS_PER_HOUR

        for window in self._windows():
            length = window.length_ms
            corners = {t, t + length}
            corners.update(p for p in points if p <= t + length)
            corners.update(c + length for c in self._ledger.changes_in(t - length, t))
            for when in corners:
                total = self._ledger.between(when - length, t) + scheduled_until(when)
                if total > window.limit:
                    return False
        return True

    def _fall_back_to_schedule(self) -> None:
        """After a limit stop, restart the scheduled basal (only) once it fits the limits: a
        stop that lasted until someone reached the pump would leave the user without basal
        insulin, on the way to ketoacidosis. The alarm stays until acknowledged at the pump, and
        until then nothing but the schedule runs from afar (see ``_limit_latched``).

        The exact test (``_schedule_fits``) runs at every event while stopped, and the events
        include each time insulin starts or stops leaving a window; ``_fallback_ms`` is the
        latest it can take (from then the test always passes)."""
        due = self._fallback_ms()
        if due is None or (due > self._t and not self._schedule_fits()):
            return
        if self._room_refusal(Fraction(self._scheduled(self._t))) is not None:
            return
        cause = self._stop_cause
        with self._changing(
            EventKind.RESUME,
            _SYSTEM,
            f"scheduled basal resumed by the pump after the {cause} stop: it fits the limits again",
        ):
            self._suspended_by = None
            self._basal = self._target_basal()
        self._stop_cause = None

    def _limit_latched(self, source: CommandSource) -> CommandResult | None:
        """Refuse extra insulin from afar while a limit alarm waits for the user at the pump."""
        latched = next((k for k in _LIMIT_ALARMS if k in self._alarms), None)
        if latched is None or source is _LOCAL:
            return None
        return _refuse(
            Rejection.ALARM_ACTIVE,
            f"the {latched.text} alarm is acknowledged at the pump first: scheduled basal only",
        )

    def _condition_present(self, kind: AlarmKind) -> bool:
        step = self.model.bolus_step_u
        match kind:
            case AlarmKind.OCCLUSION:
                return self._occluded
            case AlarmKind.RESERVOIR_EMPTY:
                return self._reservoir < step
            case AlarmKind.RESERVOIR_LOW:
                return self._reservoir <= self.model.low_reservoir_u
            case AlarmKind.BATTERY_DEPLETED:
                return self.battery.at_or_below(Decimal(0)) and not self.battery.mains
            case AlarmKind.BATTERY_LOW:
                low = self._low_battery_mah()
                return self.battery.at_or_below(low) and not self.battery.mains
            case AlarmKind.TWO_HOUR_LIMIT | AlarmKind.DAILY_LIMIT:
                window = next(w for w in self._windows() if w.alarm is kind)
                done = self._ledger.between(self._t - window.length_ms, self._t)
                return done > window.limit - Fraction(step)
            case AlarmKind.REMOTE_BOLUS:
                return any(
                    b is not None and b.source is _REMOTE and b.status is BolusStatus.PENDING
                    for b in (self._bolus, self._extended)
                )
            case AlarmKind.REMOTE_SUSPEND:
                return self._suspended_by in (_REMOTE, _AUTOMATED)
            case AlarmKind.LIMITED_MODE_ENDED:
                return self._limited_over
        return False  # pragma: no cover

    def _stopping_alarm(self) -> AlarmKind | None:
        """What forbids delivery now: an occlusion present, or a latched stopping alarm."""
        if self._occluded:
            return AlarmKind.OCCLUSION
        return next((k for k in self._alarms if k.stops_delivery), None)

    # ------------------------------------------------------------------ checks

    def _limit_problems(
        self, limits: InsulinLimits, profile: BasalProfile
    ) -> list[tuple[LimitIssue, str]]:
        return limit_problems(
            limits,
            profile,
            bolus_step=self.model.bolus_step_u,
            basal_step=self.model.basal_step_u_h,
        )

    def _decimal_problem(
        self,
        value: object,
        name: str,
        step: Decimal,
        maximum: Decimal,
        *,
        above: Rejection = Rejection.OUT_OF_RANGE,
        allow_zero: bool = False,
    ) -> CommandResult | None:
        """A dose or rate must be a finite decimal, positive, at most ``maximum``, on the step."""
        if isinstance(value, bool) or not isinstance(value, Decimal | int):
            return _refuse(
                Rejection.INVALID, f"{name} must be a decimal number, not {type(value).__name__}"
            )
        number = Decimal(value)
        if not number.is_finite():
            return _refuse(Rejection.INVALID, f"{name} must be a finite number")
        if number < 0 or (number == 0 and not allow_zero):
            floor = "zero or more" if allow_zero else "more than zero"
            return _refuse(Rejection.OUT_OF_RANGE, f"{name} {number} must be {floor}")
        if number > maximum:
            return _refuse(above, f"{name} {number} is above the maximum {maximum}")
        try:
            off_step = number % step != 0
        except InvalidOperation:
            off_step = True
        if off_step:
            return _refuse(
                Rejection.INVALID,
                f"{name} {number} is not a multiple of {step} (too many decimals)",
            )
        return None

    @staticmethod
    def _minutes_problem(
        value: object, name: str, bounds: tuple[int, int, int]
    ) -> CommandResult | None:
        shortest, longest, step = bounds
        if isinstance(value, bool) or not isinstance(value, int):
            return _refuse(Rejection.INVALID, f"{name} must be whole minutes")
        if not shortest <= value <= longest:
            return _refuse(
                Rejection.OUT_OF_RANGE, f"{name} {value} min is outside {shortest}-{longest} min"
            )
        if value % step:
            return _refuse(Rejection.INVALID, f"{name} {value} min is not a multiple of {step} min")
        return None

    def _offset_problem(self, value: object) -> CommandResult | None:
        west, east, step = _UTC_OFFSETS
        if isinstance(value, bool) or not isinstance(value, int):
            return _refuse(Rejection.INVALID, "the UTC offset must be whole minutes")
        if not west <= value <= east:
            return _refuse(
                Rejection.OUT_OF_RANGE, f"UTC offset {value} min is outside {west}-{east}"
            )
        if value % step:
            return _refuse(Rejection.INVALID, f"UTC offset {value} min is not in quarter hours")
        return None

    def _profile_problems(
        self, profile: object, limits: InsulinLimits
    ) -> list[tuple[Rejection, str]]:
        if not isinstance(profile, BasalProfile):
            return [(Rejection.INVALID, "a basal profile must be a BasalProfile")]
        problems = []
        grid = self.model.profile_step_minutes
        for segment in profile.segments:
            if segment.start_min % grid:
                problems.append(
                    (
                        Rejection.INVALID,
                        f"segment start {segment.start_min} min is not on the {grid}-minute grid",
                    )
                )
            if Decimal(segment.rate_u_h) % self.model.basal_step_u_h:
                problems.append(
                    (
                        Rejection.INVALID,
                        f"rate {segment.rate_u_h} U/h is not a multiple of "
                        f"{self.model.basal_step_u_h} U/h",
                    )
                )
        if profile.max_rate_u_h > limits.max_basal_u_h:
            problems.append(
                (
                    Rejection.MAX_BASAL,
                    f"rate {profile.max_rate_u_h} U/h is above max basal "
                    f"{limits.max_basal_u_h} U/h",
                )
            )
        if not problems:
            problems += [
                (Rejection(issue.value), message)
                for issue, message in self._limit_problems(limits, profile)
            ]
        return problems

    def _only(
        self, source: CommandSource, allowed: tuple[CommandSource, ...], what: str
    ) -> CommandResult | None:
        if source in allowed:
            return None
        return _refuse(Rejection.NOT_PERMITTED, f"{what} is not accepted from the {source} source")

    # ------------------------------------------------------------------ commands

    def _start_bolus(self, command: Bolus | ExtendedBolus) -> CommandResult:
        extended = isinstance(command, ExtendedBolus)
        source = command.source
        allowed = (_LOCAL, _REMOTE) if extended else (_LOCAL, _REMOTE, _AUTOMATED)
        refusal = self._only(source, allowed, "an extended bolus" if extended else "a bolus")
        refusal = refusal or self._decimal_problem(
            command.amount_u,
            "bolus",
            self.model.bolus_step_u,
            self._limits.max_bolus_u,
            above=Rejection.MAX_BOLUS,
        )
        if refusal is None and isinstance(command, ExtendedBolus):
            refusal = self._minutes_problem(
                command.duration_min, "extended bolus duration", self.model.extended_minutes
            )
        if refusal is not None:
            return refusal
        if self._suspended_by is not None:
            return _refuse(Rejection.SUSPENDED, f"delivery is {self._state()}")
        refusal = self._limit_latched(source)
        if refusal is not None:
            return refusal
        slot = self._extended if extended else self._bolus
        if slot is not None:
            return _refuse(Rejection.BOLUS_ACTIVE, f"{slot.describe()} is {slot.status}")
        amount = Fraction(command.amount_u)
        refusal = self._dose_refusal(amount)
        if refusal is not None:
            return refusal
        if isinstance(command, ExtendedBolus):
            duration = command.duration_min * MS_PER_MINUTE
        else:
            duration = int(amount * MS_PER_HOUR / Fraction(self.model.bolus_speed_u_h))
        remote = source is _REMOTE
        window = self.model.remote_cancel_window_ms if remote else 0
        bolus = RunningBolus(
            self._next_bolus_id,
            BolusKind.EXTENDED if extended else BolusKind.NORMAL,
            source,
            command.command_id,
            amount,
            self._t,
            self._t + window,
            duration,
            BolusStatus.PENDING if remote else BolusStatus.DELIVERING,
        )
        self._next_bolus_id += 1
        self._keep(bolus)
        kind = EventKind.BOLUS_REQUESTED if remote else EventKind.BOLUS_START
        detail = f"{bolus.describe()} from {source}"
        if remote:
            detail += f": starts in {window // 1000} s unless cancelled at the pump"
        with self._changing(
            kind, source, detail, command_id=command.command_id, bolus_id=bolus.bolus_id
        ):
            if extended:
                self._extended = bolus
            else:
                self._bolus = bolus
        if remote:
            self._raise(AlarmKind.REMOTE_BOLUS, source)
        return CommandResult(True, detail, bolus_id=bolus.bolus_id)

    def _cancel_bolus(self, command: CancelBolus) -> CommandResult:
        source = command.source
        refusal = self._only(source, (_LOCAL, _REMOTE, _AUTOMATED), "cancelling a bolus")
        if refusal is not None:
            return refusal
        wanted = command.bolus_id
        if wanted is not None and (isinstance(wanted, bool) or not isinstance(wanted, int)):
            return _refuse(Rejection.INVALID, "a bolus id is a whole number")
        active = [
            b
            for b in (self._bolus, self._extended)
            if b is not None and (wanted is None or b.bolus_id == wanted)
        ]
        if not active:
            known = None if wanted is None else self._boluses.get(wanted)
            what = (
                "no bolus is active" if known is None else f"{known.describe()} is {known.status}"
            )
            return _refuse(Rejection.NOTHING_TO_CANCEL, what)
        mine = [b for b in active if source is _LOCAL or b.source is source]
        if not mine:
            return _refuse(
                Rejection.NOT_PERMITTED,
                f"a bolus from the {active[0].source} source is cancelled by it or at the pump",
            )
        with self._changing(
            EventKind.BOLUS_CANCEL,
            source,
            command_id=command.command_id,
            bolus_id=mine[0].bolus_id if len(mine) == 1 else None,
        ) as notes:
            for bolus in mine:
                notes.append(
                    f"{bolus.describe()} cancelled ({bolus.status}, {_text(bolus.delivered)} U "
                    "delivered)"
                )
                self._end_bolus(bolus, BolusStatus.CANCELLED, f"cancelled by {source}")
        return _ok("; ".join(f"bolus #{b.bolus_id} cancelled" for b in mine))

    def _set_temp(self, command: SetTempBasal) -> CommandResult:
        source = command.source
        refusal = self._only(source, (_LOCAL, _REMOTE, _AUTOMATED), "a temp basal")
        refusal = refusal or self._minutes_problem(
            command.duration_min, "temp basal duration", self.model.temp_basal_minutes
        )
        if refusal is not None:
            return refusal
        rate, percent = command.rate_u_h, command.percent
        max_basal = self._limits.max_basal_u_h
        if (rate is None) == (percent is None):
            return _refuse(Rejection.INVALID, "a temp basal is a rate or a percent (exactly one)")
        if rate is not None:
            refusal = self._decimal_problem(
                rate,
                "temp basal rate",
                self.model.basal_step_u_h,
                max_basal,
                above=Rejection.MAX_BASAL,
                allow_zero=True,
            )
        else:
            highest, step = self.model.temp_basal_percent
            if isinstance(percent, bool) or not isinstance(percent, int):
                refusal = _refuse(Rejection.INVALID, "a temp basal percent is a whole number")
            elif not 0 <= percent <= highest:
                refusal = _refuse(
                    Rejection.OUT_OF_RANGE, f"temp basal {percent} % is outside 0-{highest} %"
                )
            elif percent % step:
                refusal = _refuse(
                    Rejection.INVALID, f"temp basal {percent} % is not in {step} % steps"
                )
        if refusal is not None:
            return refusal
        if self._suspended_by is not None:
            return _refuse(Rejection.SUSPENDED, f"delivery is {self._state()}")
        refusal = self._limit_latched(source)
        if refusal is not None:
            return refusal
        current = self._temp
        if current is not None and source is not _LOCAL and current.source is not source:
            return _refuse(
                Rejection.NOT_PERMITTED,
                f"a temp basal from the {current.source} source is replaced by it or at the pump",
            )
        end = self._t + command.duration_min * MS_PER_MINUTE
        temp = TempBasal(source, command.command_id, rate, percent, self._t, end)
        if percent is not None:
            highest_rate = max(
                self._percent_rate(r, percent) for r in self._scheduled_rates(self._t, end)
            )
            if highest_rate > max_basal:
                return _refuse(
                    Rejection.MAX_BASAL,
                    f"{percent} % of the schedule reaches {highest_rate} U/h, above max basal "
                    f"{max_basal} U/h",
                )
            new_basal = Fraction(self._percent_rate(self._scheduled(self._t), percent))
        else:
            new_basal = Fraction(rate or 0)
        refusal = self._room_refusal(self._rate() - self._basal + new_basal)
        if refusal is not None:
            return refusal
        with self._changing(
            EventKind.TEMP_BASAL_START, source, temp.describe(), command_id=command.command_id
        ) as notes:
            if current is not None:
                notes.append(f"replaces the {current.describe()} from {current.source}")
            self._temp = temp
            self._basal = self._target_basal()
        return _ok(temp.describe())

    def _cancel_temp(self, command: CancelTempBasal) -> CommandResult:
        source = command.source
        refusal = self._only(source, (_LOCAL, _REMOTE, _AUTOMATED), "cancelling a temp basal")
        if refusal is not None:
            return refusal
        temp = self._temp
        if temp is None:
            return _refuse(Rejection.NOTHING_TO_CANCEL, "no temp basal is running")
        if source is not _LOCAL and temp.source is not source:
            return _refuse(
                Rejection.NOT_PERMITTED,
                f"a temp basal from the {temp.source} source is cancelled by it or at the pump",
            )
        with self._changing(
            EventKind.TEMP_BASAL_CANCEL,
            source,
            f"{temp.describe()} cancelled",
            command_id=command.command_id,
        ):
            self._temp = None
            self._basal = self._target_basal()
        return _ok("temp basal cancelled")

    @property
    def limited_mode(self) -> bool:
        """Limited mode runs (its temp basal has not ended or been replaced)."""
        self.tick()
        temp, limited = self._temp, self._limited_id
        return temp is not None and limited is not None and temp.command_id == limited

    def adaptive_percent(self) -> int:
        """The limited-mode rate as a percent of the scheduled basal, in the pump's temp basal
        steps, rounded down, at most 100: the mean basal delivered over ``ADAPTIVE_WINDOW_MS``
        (or since start, if shorter) against the scheduled rate now. With no history yet, 100."""
        self.tick()
        now = self._t
        start = now - ADAPTIVE_WINDOW_MS
        scheduled = Fraction(self._scheduled(now))
        entries = [e for e in self.log if e.after is not None]
        if not entries or now <= entries[0].time_ms or scheduled == 0:
            return 100
        begin = max(start, entries[0].time_ms)
        total = _ZERO
        for entry, nxt in zip(entries, [*entries[1:], None], strict=True):
            assert entry.after is not None
            seg_end = now if nxt is None else min(nxt.time_ms, now)
            seg_start = max(entry.time_ms, begin)
            if seg_end > seg_start:
                total += entry.after.basal_u_h * (seg_end - seg_start) / MS_PER_HOUR
        mean = total * MS_PER_HOUR / (now - begin)
        _, step = self.model.temp_basal_percent
        percent = math.floor(mean / scheduled * 100 / step) * step
        return max(0, min(100, percent))

    def _limited_running(self) -> bool:
        temp, limited = self._temp, self._limited_id
        return temp is not None and limited is not None and temp.command_id == limited

    def _meter_holds(self) -> bool:
        """Keypad fingersticks hold the basal at zero: only limited mode's, only until the
        hold runs out (a fingerstick says nothing after ``METER_MAX_AGE_MIN``)."""
        hold = self._meter_hold_ms
        return hold is not None and self._t < hold and self._limited_running()

    def _meter_glucose(self, command: MeterGlucose) -> CommandResult:
        """Take a fingerstick from the keypad. In limited mode the pump applies its
        ``meter_rule``: a zero basal while the values show or predict a low; the value never
        adds insulin, and outside limited mode it is only logged."""
        if command.source is not _LOCAL:
            return _refuse(Rejection.NOT_PERMITTED, "glucose values are entered at the pump only")
        value = command.glucose_mgdl
        low, high = METER_RANGE_MGDL
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            return _refuse(Rejection.INVALID, "a glucose value is a number of mg/dL")
        try:
            glucose = float(value)
        except (InvalidOperation, ValueError, OverflowError):
            return _refuse(Rejection.INVALID, "a glucose value is a number of mg/dL")
        if not low <= glucose <= high:  # NaN fails both comparisons
            return _refuse(
                Rejection.OUT_OF_RANGE, f"glucose {value} is outside the meter's {low}-{high} mg/dL"
            )
        self._meter = [*self._meter[-1:], MeterReading(self._t, glucose)]
        reason = self.meter_rule.reason(self._meter, self._t)
        hold = None if reason is None else self.meter_rule.hold_until_ms(self._meter)
        detail = f"fingerstick {glucose:.0f} mg/dL"
        if self._limited_running():
            detail += f"; limited mode: {reason or 'no low shown or predicted'}"
        with self._changing(EventKind.METER_GLUCOSE, _LOCAL, detail, command_id=command.command_id):
            self._meter_hold_ms = hold
            self._basal = self._target_basal()
        return _ok(detail)

    def _start_limited(self, command: StartLimitedMode) -> CommandResult:
        refusal = self._only(command.source, (_AUTOMATED,), "limited mode")
        if refusal is not None:
            return refusal
        if self.limited_mode:
            return _ok("limited mode already runs")
        if self._limited_over:
            return _refuse(
                Rejection.WRONG_STATE,
                "limited mode ran its time: the scheduled basal runs until automation resumes "
                "or the alarm is acknowledged at the pump",
            )
        percent = self.adaptive_percent()
        temp = SetTempBasal(
            LIMITED_MODE_MINUTES,
            percent=percent,
            source=_AUTOMATED,
            command_id=command.command_id,
        )
        result = self._set_temp(temp)
        if not result.accepted:
            return result
        self._limited_id = command.command_id
        self.log.append(
            self._t,
            EventKind.LIMITED_MODE,
            _AUTOMATED,
            f"limited mode: adaptive basal {percent} % of the schedule for "
            f"{LIMITED_MODE_MINUTES} min",
            command_id=command.command_id,
        )
        return _ok(f"limited mode: {percent} % of the schedule for {LIMITED_MODE_MINUTES} min")

    def _suspend(self, command: Suspend) -> CommandResult:
        source = command.source
        refusal = self._only(source, (_LOCAL, _REMOTE, _AUTOMATED), "suspending")
        if refusal is not None:
            return refusal
        if self._suspended_by is not None:
            return _refuse(Rejection.WRONG_STATE, f"delivery is already {self._state()}")
        with self._changing(
            EventKind.SUSPEND, source, f"suspended from {source}", command_id=command.command_id
        ) as notes:
            notes.extend(self._stop_everything(f"suspended by {source}"))
            self._suspended_by = source
            self._basal = _ZERO
        if source is not _LOCAL:
            self._raise(AlarmKind.REMOTE_SUSPEND, source)
        return _ok("suspended")

    def _resume(self, command: Resume) -> CommandResult:
        source = command.source
        refusal = self._only(source, (_LOCAL, _REMOTE, _AUTOMATED), "resuming")
        if refusal is not None:
            return refusal
        by = self._suspended_by
        if by is None:
            return _refuse(Rejection.WRONG_STATE, "delivery is running")
        if source is not _LOCAL and by is not source:
            what = "an alarm stop" if by is _SYSTEM else f"a suspend from the {by} source"
            return _refuse(Rejection.NOT_PERMITTED, f"{what} is resumed at the pump")
        alarm = self._stopping_alarm()
        if alarm is not None:
            return _refuse(Rejection.ALARM_ACTIVE, f"clear the {alarm.text} alarm first")
        refusal = self._room_refusal(Fraction(self._scheduled(self._t)))
        if refusal is not None:
            return refusal
        with self._changing(
            EventKind.RESUME, source, f"resumed from {source}", command_id=command.command_id
        ):
            self._suspended_by = None
            self._basal = self._target_basal()
        self._stop_cause = None
        return _ok("resumed: scheduled basal")

    def _set_profile(self, command: SetBasalProfile) -> CommandResult:
        source = command.source
        refusal = self._only(source, (_LOCAL, _REMOTE), "a basal profile")
        if refusal is not None:
            return refusal
        problems = self._profile_problems(command.profile, self._limits)
        if problems:
            return _refuse(problems[0][0], "; ".join(m for _, m in problems))
        profile = command.profile
        if self._suspended_by is None:
            scheduled = Fraction(profile.rate_at(Fraction(self._ms_of_day(self._t), MS_PER_MINUTE)))
            refusal = self._room_refusal(self._rate() - self._basal + scheduled)
            if refusal is not None:
                return refusal
        with self._changing(
            EventKind.BASAL_PROFILE,
            source,
            "basal profile "
            + ", ".join(
                f"{_hh_mm(s.start_min * MS_PER_MINUTE)} {s.rate_u_h}" for s in profile.segments
            ),
            command_id=command.command_id,
        ) as notes:
            if self._temp is not None:
                notes.append(f"{self._temp.describe()} cancelled: the schedule changed")
                self._temp = None
            self._profile = profile
            self._basal = self._target_basal()
        return _ok("basal profile set")

    def _set_limits(self, command: SetLimits) -> CommandResult:
        source = command.source
        if source is not _LOCAL:
            return _refuse(
                Rejection.NOT_PERMITTED, "limits are changed with the buttons on the pump only"
            )
        limits = command.limits
        if not isinstance(limits, InsulinLimits):
            return _refuse(Rejection.INVALID, "limits must be InsulinLimits")
        problems = self._limit_problems(limits, self._profile)
        if problems:
            return _refuse(Rejection(problems[0][0].value), "; ".join(m for _, m in problems))
        active = next((b for b in (self._bolus, self._extended) if b is not None), None)
        if active is not None:
            return _refuse(
                Rejection.WRONG_STATE,
                f"{active.describe()} is {active.status}: finish or cancel it first",
            )
        temp = self._temp
        if temp is not None:
            if temp.rate_u_h is not None:
                highest = temp.rate_u_h
            else:
                assert temp.percent is not None
                highest = max(
                    self._percent_rate(r, temp.percent)
                    for r in self._scheduled_rates(self._t, temp.end_ms)
                )
            if highest > limits.max_basal_u_h:
                return _refuse(
                    Rejection.INCONSISTENT,
                    f"the running temp basal reaches {highest} U/h, above the new max basal: "
                    "cancel it first",
                )
        for window in self._windows(limits):
            done = self._ledger.between(self._t - window.length_ms, self._t)
            if done > window.limit:
                return _refuse(
                    Rejection.INCONSISTENT,
                    f"{_text(done)} U already delivered is above the new {window.name} limit "
                    f"{_text(window.limit)} U",
                )
        old = self._limits
        with self._changing(
            EventKind.LIMITS,
            source,
            f"max bolus {old.max_bolus_u} -> {limits.max_bolus_u} U, max basal "
            f"{old.max_basal_u_h} -> {limits.max_basal_u_h} U/h, max IOB {old.max_iob_u} -> "
            f"{limits.max_iob_u} U, 2 h {old.max_2h_u} -> {limits.max_2h_u} U, 24 h "
            f"{old.max_tdd_u} -> {limits.max_tdd_u} U",
            command_id=command.command_id,
        ):
            self._limits = limits
        return _ok("limits set")

    def _set_offset(self, command: SetUtcOffset) -> CommandResult:
        source = command.source
        if source is not _LOCAL:
            return _refuse(Rejection.NOT_PERMITTED, "the pump's time is set on the pump only")
        refusal = self._offset_problem(command.offset_min)
        if refusal is not None:
            return refusal
        old = self._offset_min
        if self._suspended_by is None:
            self._offset_min = command.offset_min
            scheduled = Fraction(self._scheduled(self._t))
            self._offset_min = old
            refusal = self._room_refusal(self._rate() - self._basal + scheduled)
            if refusal is not None:
                return refusal
        with self._changing(
            EventKind.TIME,
            source,
            f"UTC offset {old} -> {command.offset_min} min",
            command_id=command.command_id,
        ) as notes:
            if self._temp is not None:
                notes.append(f"{self._temp.describe()} cancelled: the schedule moved")
                self._temp = None
            self._offset_min = command.offset_min
            self._basal = self._target_basal()
        return _ok(f"UTC offset {command.offset_min} min")

    def _acknowledge(self, command: AcknowledgeAlarm) -> CommandResult:
        if command.source is not _LOCAL:
            return _refuse(Rejection.NOT_PERMITTED, "alarms are acknowledged at the pump only")
        if not self._alarms:
            return _refuse(Rejection.WRONG_STATE, "no active alarm")
        self._limited_over = False  # the user has seen that automation stopped
        cleared = []
        for kind, alarm in list(self._alarms.items()):
            if self._condition_present(kind):
                self._alarms[kind] = replace(alarm, acknowledged=True)
            else:
                del self._alarms[kind]
                cleared.append(kind.text)
        self.log.append(
            self._t,
            EventKind.ALARM_ACK,
            command.source,
            "cleared: " + (", ".join(cleared) or "none"),
            command_id=command.command_id,
        )
        return _ok("acknowledged")

    def _change_reservoir(self, command: ChangeReservoir) -> CommandResult:
        if command.source is not _LOCAL:
            return _refuse(Rejection.NOT_PERMITTED, "the reservoir is changed at the pump only")
        refusal = self._decimal_problem(
            command.units, "reservoir", self.model.bolus_step_u, self.model.reservoir_capacity_u
        )
        if refusal is not None:
            return refusal
        if self._suspended_by is None:
            return _refuse(Rejection.WRONG_STATE, "suspend delivery before changing the reservoir")
        old = self._reservoir
        with self._changing(
            EventKind.RESERVOIR,
            command.source,
            f"reservoir {_text(old)} -> {command.units} U",
            command_id=command.command_id,
        ):
            self._fill = Fraction(command.units)
            self._fill_mark = self._ledger.total_u
        for kind in (AlarmKind.RESERVOIR_EMPTY, AlarmKind.RESERVOIR_LOW):
            if kind in self._alarms and not self._condition_present(kind):
                del self._alarms[kind]
                self.log.append(self._t, EventKind.ALARM_OFF, command.source, kind.text)
        return _ok(f"reservoir {command.units} U")

    def _occlusion(self, command: Occlusion) -> CommandResult:
        if command.source is not _SYSTEM:
            return _refuse(Rejection.NOT_PERMITTED, "an occlusion is sensed by the pump itself")
        self._occluded = bool(command.active)
        state = "on" if self._occluded else "off"
        self.log.append(self._t, EventKind.SENSOR, command.source, f"occlusion {state}")
        if self._occluded:
            self._stop(AlarmKind.OCCLUSION)
        return _ok(f"occlusion {state}")

    def _charging(self, command: SetCharging) -> CommandResult:
        if command.source is not _SYSTEM:
            return _refuse(Rejection.NOT_PERMITTED, "charging is sensed by the pump itself")
        self.battery.mains = bool(command.connected)
        state = "connected" if self.battery.mains else "disconnected"
        self.log.append(self._t, EventKind.CHARGING, command.source, f"charger {state}")
        self._battery_events()
        return _ok(f"charger {state}")


def _hh_mm(ms_of_day: int) -> str:
    minutes = ms_of_day // MS_PER_MINUTE
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _ok(message: str) -> CommandResult:
    return CommandResult(True, message)


def _refuse(rejection: Rejection, message: str) -> CommandResult:
    return CommandResult(False, message, rejection)
