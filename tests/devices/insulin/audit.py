"""An auditor that re-derives the insulin pump's delivery from its event log alone.

The pump's own arithmetic is not trusted here: from the before/after snapshots of the log the
auditor rebuilds the delivered-insulin curve (an odometer ``D(t)`` that is exact between
entries), and checks, entry by entry and over time:

* the log is gapless and in time order; every change of rate is an entry: each entry starts
  from the rates the previous one ended with, and the insulin delivered between two entries is
  exactly the earlier entry's total rate times the time between them (the reservoir went down
  by the same amount);
* the basal rate (scheduled or temporary) is never above max basal; nothing is delivered unless
  the pump is running; the reservoir never goes below zero;
* a remote bolus never starts before its cancel window has ended;
* every bolus, when accepted (and a remote one again when it starts), fitted max bolus, max IOB,
  the rolling 2-hour and 24-hour totals and the reservoir, counting the insulin delivered before
  it (IOB recomputed from the log with the clinical curve) and the bolus insulin already
  committed;
* the rolling 2-hour and 24-hour totals never exceed their limits, at any instant (the totals
  are piecewise linear, so checking every entry time, every entry time plus 2 h and 24 h, and
  now covers every instant);
* one command id never creates two boluses, starts a bolus twice, or starts two temp basals;
* the rate rises only through a command from an allowed source or the pump's own schedule;
  limits and the time zone change at the pump only; a suspend is resumed by its own source or
  at the pump.

Limits in force are told to the auditor (``note_limits``) when a test changes them.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from decimal import Decimal
from fractions import Fraction

from pumpguard.clinical import RAPID_ACTING_ADULT, InsulinCurve, InsulinDelivery
from pumpguard.clock import MS_PER_HOUR
from pumpguard.devices.insulin import (
    BolusKind,
    BolusStatus,
    BolusView,
    CommandSource,
    DeliverySnapshot,
    EventKind,
    EventLog,
    InsulinLimits,
    InsulinPump,
    LogEntry,
    PumpState,
)

TWO_HOURS = 2 * MS_PER_HOUR
DAY = 24 * MS_PER_HOUR
IOB_TOLERANCE = Decimal("1e-25")
"""The pump and the auditor integrate the same curve over differently cut intervals."""

RATE_MAY_RISE = {
    EventKind.STARTED,
    EventKind.BOLUS_START,
    EventKind.TEMP_BASAL_START,
    EventKind.TEMP_BASAL_END,
    EventKind.TEMP_BASAL_CANCEL,
    EventKind.BASAL_CHANGE,
    EventKind.BASAL_PROFILE,
    EventKind.TIME,
    EventKind.RESUME,
}
COMMANDERS = (CommandSource.LOCAL, CommandSource.REMOTE, CommandSource.AUTOMATED)


class LogAudit:
    def __init__(
        self,
        limits: InsulinLimits,
        *,
        cancel_window_ms: int,
        curve: InsulinCurve = RAPID_ACTING_ADULT,
    ) -> None:
        self.cancel_window_ms = cancel_window_ms
        self.curve = curve
        self.changes: list[tuple[int, int, InsulinLimits]] = [(0, -1, limits)]
        """(seq, time, limits) from which each set of limits is in force."""
        self.seen = 0
        self.last_time = -1
        self.snaps: list[LogEntry] = []
        self.times: list[int] = []
        self.bolus_ids: defaultdict[str, set[int]] = defaultdict(set)
        self.bolus_starts: Counter[int] = Counter()
        self.temp_starts: Counter[str] = Counter()
        self.windows_until: int | None = None
        self.acceptances = 0

    # ------------------------------------------------------------------ limits

    def note_limits(self, log: EventLog, limits: InsulinLimits) -> None:
        """Limits just changed: they are in force from the last LIMITS entry of the log."""
        entry = next(e for e in reversed(list(log)) if e.kind is EventKind.LIMITS)
        self.changes.append((entry.seq, entry.time_ms, limits))

    def limits_at_seq(self, seq: int) -> InsulinLimits:
        return next(lim for s, _, lim in reversed(self.changes) if s <= seq)

    def _limits_around(self, time_ms: int) -> tuple[InsulinLimits, InsulinLimits]:
        """Limits in force just before ``time_ms`` and just after everything at ``time_ms``."""
        before = next(lim for _, t, lim in reversed(self.changes) if t < time_ms)
        after = next(lim for _, t, lim in reversed(self.changes) if t <= time_ms)
        return before, after

    # ------------------------------------------------------------------ the curve

    def delivered_at(self, time_ms: int) -> Fraction:
        """Everything delivered before ``time_ms``, from the log alone."""
        i = bisect.bisect_right(self.times, time_ms) - 1
        if i < 0:
            return Fraction(0)
        snap = self.snaps[i]
        assert snap.after is not None
        return (
            snap.after.delivered_u + snap.after.total_u_h * (time_ms - snap.time_ms) / MS_PER_HOUR
        )

    def window(self, end_ms: int, length_ms: int) -> Fraction:
        return self.delivered_at(end_ms) - self.delivered_at(end_ms - length_ms)

    def iob_at(self, time_ms: int) -> Decimal:
        since = time_ms - self.curve.total_ms
        first = max(0, bisect.bisect_right(self.times, since) - 1)
        deliveries = []
        for i in range(first, len(self.snaps)):
            snap = self.snaps[i]
            assert snap.after is not None
            start = max(snap.time_ms, since)
            end = self.snaps[i + 1].time_ms if i + 1 < len(self.snaps) else time_ms
            end = min(end, time_ms)
            rate = snap.after.total_u_h
            if end > start and rate > 0:
                deliveries.append(InsulinDelivery(start, end, rate * (end - start) / MS_PER_HOUR))
        return self.curve.iob(deliveries, time_ms)

    # ------------------------------------------------------------------ entry checks

    def feed(self, log: EventLog) -> None:
        for entry in log.since(self.seen):
            assert entry.seq == self.seen + 1, f"gap before {entry}"
            assert entry.time_ms >= self.last_time, f"time went back at {entry}"
            self.seen, self.last_time = entry.seq, entry.time_ms
            assert isinstance(entry.source, CommandSource)
            if entry.kind in (EventKind.LIMITS, EventKind.TIME):
                assert entry.source is CommandSource.LOCAL, entry
            if entry.before is None or entry.after is None:
                assert entry.before is None and entry.after is None, entry
                continue
            self._check_change(entry, entry.before, entry.after)
            self.snaps.append(entry)
            self.times.append(entry.time_ms)

    def _check_change(self, e: LogEntry, before: DeliverySnapshot, after: DeliverySnapshot) -> None:
        if self.snaps:
            last = self.snaps[-1]
            assert last.after is not None
            prev = last.after
            for name in ("basal_u_h", "bolus_u_h", "extended_u_h", "state"):
                assert getattr(before, name) == getattr(prev, name), (name, last, e)
            expected = prev.delivered_u + prev.total_u_h * (e.time_ms - last.time_ms) / MS_PER_HOUR
            assert before.delivered_u == expected, (last, e)
            used = before.delivered_u - prev.delivered_u
            assert before.reservoir_u == prev.reservoir_u - used, (last, e)
        assert after.delivered_u == before.delivered_u, e
        if e.kind is not EventKind.RESERVOIR:
            assert after.reservoir_u == before.reservoir_u, e
        self._check_snapshot(e, before, self.limits_at_seq(e.seq - 1))
        self._check_snapshot(e, after, self.limits_at_seq(e.seq))
        if after.total_u_h > before.total_u_h:
            assert e.kind in RATE_MAY_RISE, e
            if e.kind in (EventKind.BASAL_CHANGE, EventKind.TEMP_BASAL_END):
                assert e.source is CommandSource.SYSTEM, e
        if e.kind is EventKind.RESUME:
            assert before.state is not PumpState.RUNNING, e
            assert e.source is CommandSource.LOCAL or e.source is before.suspended_by, e
        if e.kind is EventKind.TEMP_BASAL_START and e.command_id is not None:
            self.temp_starts[e.command_id] += 1
            assert self.temp_starts[e.command_id] == 1, f"command {e.command_id} started twice"
        if e.kind in (EventKind.BOLUS_REQUESTED, EventKind.BOLUS_START):
            self._check_bolus(e, before, after)

    def _check_snapshot(self, e: LogEntry, snap: DeliverySnapshot, limits: InsulinLimits) -> None:
        assert snap.basal_u_h <= limits.max_basal_u_h, (e, limits)
        assert snap.reservoir_u >= 0, e
        if snap.state is not PumpState.RUNNING:
            assert snap.total_u_h == 0, e
            assert snap.bolus is None and snap.extended is None and snap.temp is None, e
        for view, kind in ((snap.bolus, BolusKind.NORMAL), (snap.extended, BolusKind.EXTENDED)):
            if view is None:
                continue
            assert view.kind is kind, e
            assert view.status in (BolusStatus.PENDING, BolusStatus.DELIVERING), e
            assert 0 <= view.delivered_u <= view.amount_u, e
            assert view.source in COMMANDERS, e
            if kind is BolusKind.EXTENDED:
                assert view.source is not CommandSource.AUTOMATED, e
            if view.status is BolusStatus.DELIVERING and view.source is CommandSource.REMOTE:
                ready = view.requested_ms + self.cancel_window_ms
                assert view.start_ms >= ready and e.time_ms >= ready, ("remote bolus early", e)
            if view.status is BolusStatus.PENDING:
                assert view.delivered_u == 0, e
        if snap.bolus is not None and snap.bolus.status is BolusStatus.DELIVERING:
            assert snap.bolus_u_h == snap.bolus.rate_u_h, e
        else:
            assert snap.bolus_u_h == 0, e
        if snap.extended is not None and snap.extended.status is BolusStatus.DELIVERING:
            assert snap.extended_u_h == snap.extended.rate_u_h, e
        else:
            assert snap.extended_u_h == 0, e

    def _check_bolus(self, e: LogEntry, before: DeliverySnapshot, after: DeliverySnapshot) -> None:
        view = _find(after, e.bolus_id)
        assert view is not None and e.source is view.source and e.source in COMMANDERS, e
        if e.kind is EventKind.BOLUS_REQUESTED:
            assert e.source is CommandSource.REMOTE and view.status is BolusStatus.PENDING, e
        else:
            self.bolus_starts[view.bolus_id] += 1
            assert self.bolus_starts[view.bolus_id] == 1, f"bolus {view.bolus_id} started twice"
            immediate = view.requested_ms == e.time_ms and view.source is not CommandSource.REMOTE
            if not immediate:
                assert view.source is CommandSource.REMOTE, e
        if view.command_id is not None:
            self.bolus_ids[view.command_id].add(view.bolus_id)
            assert len(self.bolus_ids[view.command_id]) == 1, f"{view.command_id} dosed twice"
        self._check_acceptance(e, before, view)

    def _check_acceptance(self, e: LogEntry, before: DeliverySnapshot, view: BolusView) -> None:
        """The bolus fitted every limit at the instant the pump accepted (or started) it."""
        self.acceptances += 1
        limits = self.limits_at_seq(e.seq)
        amount = view.amount_u
        committed = sum(
            (
                other.remaining_u
                for other in (before.bolus, before.extended)
                if other is not None and other.bolus_id != view.bolus_id
            ),
            Fraction(0),
        )
        t = e.time_ms
        assert amount <= limits.max_bolus_u, e
        assert committed + amount <= before.reservoir_u, e
        assert self.window(t, TWO_HOURS) + committed + amount <= limits.max_2h_u, e
        assert self.window(t, DAY) + committed + amount <= limits.max_tdd_u, e
        iob = self.iob_at(t)
        ceiling = Fraction(limits.max_iob_u) + Fraction(IOB_TOLERANCE)
        assert Fraction(iob) + committed + amount <= ceiling, (e, iob)

    # ------------------------------------------------------------------ over time

    def check_windows(self, now_ms: int) -> None:
        """The rolling totals stayed within their limits at every instant up to ``now_ms``."""
        start = self.windows_until if self.windows_until is not None else self.times[0] - 1
        points = {now_ms}
        for offset in (0, TWO_HOURS, DAY):
            lo = bisect.bisect_right(self.times, start - offset)
            hi = bisect.bisect_right(self.times, now_ms - offset)
            points.update(t + offset for t in self.times[lo:hi])
        for t in sorted(points):
            before, after = self._limits_around(t)
            two_hours = self.window(t, TWO_HOURS)
            day = self.window(t, DAY)
            assert two_hours <= min(before.max_2h_u, after.max_2h_u), (t, two_hours)
            assert day <= min(before.max_tdd_u, after.max_tdd_u), (t, day)
        self.windows_until = now_ms

    def check_now(self, pump: InsulinPump, now_ms: int) -> None:
        """Feed the log up to now and check that the pump is doing what its log says (rates,
        delivered insulin, reservoir) and that the rolling totals held."""
        pump.tick()
        self.feed(pump.log)
        last = self.snaps[-1]
        assert last.after is not None
        assert pump.total_u_h == last.after.total_u_h
        assert pump.basal_u_h == last.after.basal_u_h
        assert pump.delivered_u == self.delivered_at(now_ms)
        used = self.delivered_at(now_ms) - last.after.delivered_u
        assert pump.reservoir_u == last.after.reservoir_u - used
        self.check_windows(now_ms)

    def check_iob(self, pump: InsulinPump, now_ms: int) -> None:
        """The pump's insulin on board is the one recomputed from its log."""
        self.check_now(pump, now_ms)
        assert abs(pump.iob_u - self.iob_at(now_ms)) <= IOB_TOLERANCE


def _find(snap: DeliverySnapshot, bolus_id: int | None) -> BolusView | None:
    return next(
        (v for v in (snap.bolus, snap.extended) if v is not None and v.bolus_id == bolus_id),
        None,
    )
