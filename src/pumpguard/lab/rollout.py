"""A hospital pump fleet in virtual time receiving one drug library through a staged roll-out.

Each of N pumps alternates between infusing and idle, and between online and offline; the
server's ``Rollout`` (canary first, then the rest) notifies pumps; a notified pump waits a random
jitter (so that the fleet does not fetch at once), fetches, verifies, stages the library with the
real ``StagedUpdate``, and applies it only when ``can_apply`` says so. Pump states are modelled
(``Activity``), not run through the real firmware: 10,000 firmware instances would be too slow,
and ``tests/lab/test_rollout_fleet.py`` checks that the model's rule agrees with ``can_apply`` on
the states the real firmware goes through.

When a pump applies (the design point that decides time to coverage): at once, idle or
infusing, except while a programme is being entered (pre-filled, awaiting confirmation); then
at the confirmation, just after the programme is started on the library it was checked
against. The firmware binds every running programme to the library it was checked against for
its whole life, so "runs the new library" means: the new library is the pump's active library,
the one every programme confirmed afterwards is checked against. Programmes running at that
instant keep the old one until they end; the simulation records them
(``FleetResult.infusions_on_old_library``). Each programme starts with an entry period
(``FleetModel.programming_entry_s``); titrations, whose entry also delays an install by as long,
are not modelled.

Offline pumps: a notification to an offline pump waits in its MQTT session and is delivered at
reconnection; an offline pump cannot fetch, but applies a library it staged before it went
offline. The simulation stops when every pump runs the library (or failed, or dropped it after a
halt), or at the horizon.

The utilisation model and its sources are ``FleetModel``; figures not taken from a source are
marked there as assumptions.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from enum import IntEnum, StrEnum
from pathlib import Path

from pumpguard.clinical import parse_library
from pumpguard.clock import MS_PER_HOUR, VirtualClock
from pumpguard.devices.infusion import PumpState
from pumpguard.security_events import SecurityEventLog
from pumpguard.updates import (
    ApplyDecision,
    Compliance,
    FailureReason,
    Installed,
    MemorySource,
    PumpRolloutState,
    Rollout,
    RolloutPhase,
    RolloutPlan,
    SourceFetcher,
    StagedUpdate,
    TargetDescription,
    UpdateClient,
    UpdateKind,
    UpdateRepository,
    VerifiedUpdate,
    load_signer,
    target_path,
)

__all__ = [
    "TARGET_T95_S",
    "Activity",
    "FleetEvent",
    "FleetEventKind",
    "FleetModel",
    "FleetResult",
    "OldLibraryInfusions",
    "ReleaseCost",
    "RolloutBench",
    "activity_of",
    "bench_rollout",
    "measure_release",
    "simulate_fleet",
]

_MS = 1000

TARGET_T95_S = 3600
"""Issue 6's target for 10,000 pumps: 95 % of online pumps on the new library within an hour."""


class Activity(StrEnum):
    """What the simulation knows of a pump: enough to decide the apply rule, nothing more."""

    IDLE = "idle"
    PROGRAMMING = "programming"
    IN_USE = "in-use"
    NOT_READY = "not-ready"

    @property
    def pump_state(self) -> PumpState:
        """The firmware state the simulation hands to ``can_apply`` for this activity."""
        return _REPRESENTATIVE[self]


_REPRESENTATIVE = {
    Activity.IDLE: PumpState.IDLE,
    Activity.PROGRAMMING: PumpState.PROGRAMMING,
    Activity.IN_USE: PumpState.INFUSING,
    Activity.NOT_READY: PumpState.OFF,
}
_ACTIVITY = {
    PumpState.IDLE: Activity.IDLE,
    PumpState.PROGRAMMING: Activity.PROGRAMMING,
    PumpState.INFUSING: Activity.IN_USE,
    PumpState.PAUSED: Activity.IN_USE,
    PumpState.KVO: Activity.IN_USE,
    PumpState.OFF: Activity.NOT_READY,
    PumpState.FAILED: Activity.NOT_READY,
}


def activity_of(state: PumpState, *, awaiting_confirmation: bool = False) -> Activity:
    """How a real firmware state is modelled: entering a programme (also a titration or a
    secondary pre-filled on a running pump) is programming; a confirmed programme until it is
    cleared is in use."""
    activity = _ACTIVITY[state]
    if awaiting_confirmation and activity is not Activity.NOT_READY:
        return Activity.PROGRAMMING
    return activity


@dataclass(frozen=True, slots=True)
class FleetModel:
    """Utilisation and network assumptions, each with its source or marked as an assumption.

    - ``share_infusing``: share of pumps running a programme at any instant. RTLS vendors report
      average IV pump utilisation of 30-35 % in hospitals without asset tracking (Penguin RTLS,
      https://penguinin.com/rtls-healthcare-asset-tracking-roi-use-cases/, a vendor source); we
      take 0.40, on the busy side of that, because busier fleets roll out more slowly.
    - programme lengths (assumption, from typical practice): a mixture of intermittent
      infusions (antibiotics, electrolytes; log-normal, median 45 min) and continuous ones that
      run until the bag or syringe is changed (maintenance fluids, heparin, sedation;
      log-normal, median 6 h, at most 24 h of hang time). ``continuous_share`` is their share
      of programmes started (assumption: 30 %); continuous programmes take most pump-hours.
    - idle gaps: exponential, with the mean that makes ``share_infusing`` the stationary share.
    - ``programming_entry_s``: time from the start of programming to the clinician's
      confirmation at the pump (assumption: 60 s; the pump reminds after 2 min). A library is
      not applied during it.
    - ``share_offline``: share of pumps out of network reach at any instant (switched off in
      storage, in transport, Wi-Fi dead spots); assumption: 10 %, in episodes with an
      exponential length of mean ``offline_mean_h`` (assumption: 12 h). Offline is modelled as
      independent of infusing.
    - network (assumptions): MQTT notification latency uniform in 0.1-2 s to an online pump;
      a pump waits a uniform jitter of up to ``fetch_jitter_s`` before fetching (so 10,000
      pumps do not fetch at once); a fetch (TUF metadata and a ~30 KB library over mutual TLS on
      hospital Wi-Fi) takes a log-normal time with median ``fetch_median_s``; verification on
      the pump's embedded CPU takes ``verify_s`` (assumption: 5 s, two orders of magnitude
      above the 20-40 ms one verification takes on a shared laptop core, see
      ``measure_release``).
    """

    share_infusing: float = 0.40
    continuous_share: float = 0.30
    intermittent_median_min: float = 45.0
    intermittent_sigma: float = 0.5
    continuous_median_h: float = 6.0
    continuous_sigma: float = 0.6
    continuous_max_h: float = 24.0
    programming_entry_s: float = 60.0
    share_offline: float = 0.10
    offline_mean_h: float = 12.0
    notify_latency_s: tuple[float, float] = (0.1, 2.0)
    fetch_jitter_s: float = 120.0
    fetch_median_s: float = 2.0
    fetch_sigma: float = 0.5
    verify_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("share_infusing", "share_offline", "continuous_share"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        positive = (
            "intermittent_median_min",
            "continuous_median_h",
            "continuous_max_h",
            "offline_mean_h",
            "fetch_median_s",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        low, high = self.notify_latency_s
        if not 0 <= low <= high:
            raise ValueError("notify_latency_s must be (low, high) with 0 <= low <= high")
        if self.fetch_jitter_s < 0 or self.verify_s < 0 or self.programming_entry_s < 0:
            raise ValueError(
                "fetch_jitter_s, verify_s and programming_entry_s must not be negative"
            )


class FleetEventKind(IntEnum):
    INFUSION_START = 0
    INFUSION_END = 1
    OFFLINE = 2
    ONLINE = 3
    NOTIFIED = 4
    FETCHED = 5
    VERIFIED = 6
    STAGED = 7
    APPLIED = 8
    REPORTED = 9
    FAILED = 10
    CANCELLED = 11
    PUBLISHED = 12
    PROGRAMMING_START = 13
    """A programme is being entered; ``INFUSION_START`` is its confirmation."""


@dataclass(frozen=True, slots=True)
class FleetEvent:
    """One line of the simulation's event log; ``pump`` is -1 for fleet-wide events."""

    time_ms: int
    pump: int
    kind: FleetEventKind


@dataclass(frozen=True, slots=True)
class FleetResult:
    """What the simulation measured; times are milliseconds after publication."""

    pumps: int
    seed: int
    publish_ms: int
    online_at_publish: int
    infusing_at_publish: int
    applied_ms: tuple[int | None, ...]
    online_at_publish_mask: tuple[bool, ...]
    phase: RolloutPhase
    halt_reason: str | None
    waves_released_ms: tuple[int | None, ...]
    failed: int
    cancelled: int
    programmes_first_hour: int
    programmes_first_hour_on_current: int
    programmes_later: int
    programmes_later_on_current: int
    horizon_reached: bool
    end_ms: int
    events: tuple[FleetEvent, ...]
    rollout: Rollout = field(repr=False)
    compliance_at_target: Compliance | None = field(default=None, repr=False)
    """Fleet compliance one hour (``TARGET_T95_S``) after publication, if the run got there."""
    old_library_programmes: tuple[tuple[int, int, int], ...] = field(default=(), repr=False)
    """(pump, confirmed, ends) of every programme checked against the old library that was
    still running at publication or started later; ms after publication."""

    def infusions_on_old_library(self, ms: int) -> OldLibraryInfusions:
        """Programmes running on the old library ``ms`` after publication, split by whether
        their pump has the new library active already (they keep the old one until they end)."""
        bound = without = 0
        for pump, start, end in self.old_library_programmes:
            if start <= ms < end:
                applied = self.applied_ms[pump]
                if applied is not None and applied <= ms:
                    bound += 1
                else:
                    without += 1
        return OldLibraryInfusions(bound, without)

    def time_to_share_ms(self, share: float, *, online_only: bool = True) -> int | None:
        """When ``share`` of the pumps online at publication (or of all) ran the library."""
        chosen = [
            t
            for t, online in zip(self.applied_ms, self.online_at_publish_mask, strict=True)
            if online or not online_only
        ]
        if not chosen:
            return None
        needed = math.ceil(share * len(chosen))
        times = sorted(t for t in chosen if t is not None)
        return times[needed - 1] if len(times) >= needed else None


@dataclass(frozen=True, slots=True)
class OldLibraryInfusions:
    """Infusions running on the old library at one instant."""

    on_pumps_with_new_library_active: int
    """Started before their pump installed the new library: bound to the old one until they end."""
    on_pumps_without_it: int
    """On pumps that have not installed the new library yet (not reached, offline, entering)."""


@dataclass(slots=True)
class _Pump:
    activity: Activity = Activity.IDLE
    online: bool = True
    notify_pending: bool = False
    cancel_pending: bool = False
    cancelled: bool = False
    fetch_pending: bool = False
    fetching: bool = False
    staged: StagedUpdate | None = None
    applied_ms: int | None = None
    report_pending: bool = False
    done: bool = False


class _Ev(IntEnum):
    """Scheduler entries (ordered: at one instant, the infusion ends before anything else)."""

    INFUSION_END = 0
    INFUSION_START = 1
    OFFLINE = 2
    ONLINE = 3
    NOTIFY = 4
    CANCEL = 5
    FETCH_START = 6
    FETCH_DONE = 7
    VERIFY_DONE = 8
    TICK = 9
    HALT = 10
    SNAPSHOT = 11
    CONFIRM = 12


class _Fleet:
    def __init__(
        self,
        pumps: int,
        model: FleetModel,
        plan: RolloutPlan,
        seed: int,
        update: VerifiedUpdate,
        *,
        warmup_ms: int,
        horizon_ms: int,
        verification_failure_share: float,
        halt_after_ms: int | None,
        keep_log: bool,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.n = pumps
        self.m = model
        self.rng = random.Random(seed)
        self.seed = seed
        self.update = update
        self.clock = VirtualClock(0)
        self.publish_ms = warmup_ms
        self.end_limit = warmup_ms + horizon_ms
        self.failure_share = verification_failure_share
        self.halt_after_ms = halt_after_ms
        self.keep_log = keep_log
        self.progress = progress
        self.queue: list[tuple[int, int, int, int]] = []
        self.seq = 0
        self.log: list[FleetEvent] = []
        self.pumps = [_Pump() for _ in range(pumps)]
        self.ids = [f"PUMP-{i:05d}" for i in range(pumps)]
        order = list(range(pumps))
        self.rng.shuffle(order)
        self.rollout = Rollout(plan, update.target, [self.ids[i] for i in order])
        self.index = {pump_id: i for i, pump_id in enumerate(self.ids)}
        self.published = False
        self.unresolved = pumps
        self.mean_idle_ms = self._mean_idle_ms()
        self.mean_online_ms = (
            model.offline_mean_h * MS_PER_HOUR * (1 - model.share_offline) / model.share_offline
            if model.share_offline > 0
            else math.inf
        )
        self.programmes = [0, 0, 0, 0]
        self.old_programmes: list[tuple[int, int, int]] = []
        self.snapshot: Compliance | None = None
        self.failed = 0
        self.cancelled = 0
        self.last_progress = 0

    # ------------------------------------------------------------------ model

    def _mean_idle_ms(self) -> float:
        u = self.m.share_infusing
        if u == 0:
            return math.inf
        sampler = random.Random(0)
        mean_ms = sum(self._programme_ms(sampler) for _ in range(50_000)) / 50_000
        mean_ms += self.m.programming_entry_s * _MS
        return mean_ms * (1 - u) / u

    def _programme_ms(self, rng: random.Random) -> int:
        m = self.m
        if rng.random() < m.continuous_share:
            hours = rng.lognormvariate(math.log(m.continuous_median_h), m.continuous_sigma)
            return int(min(hours, m.continuous_max_h) * MS_PER_HOUR)
        minutes = rng.lognormvariate(math.log(m.intermittent_median_min), m.intermittent_sigma)
        return int(minutes * 60 * _MS)

    def _exp_ms(self, mean_ms: float) -> int:
        return int(self.rng.expovariate(1 / mean_ms))

    def _uniform_ms(self, low_s: float, high_s: float) -> int:
        return int(self.rng.uniform(low_s, high_s) * _MS)

    # ------------------------------------------------------------------ scheduling

    def _at(self, when_ms: int, kind: _Ev, pump: int) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (when_ms, kind, self.seq, pump))

    def _log(self, pump: int, kind: FleetEventKind) -> None:
        if self.keep_log:
            self.log.append(FleetEvent(self.clock.now_ms(), pump, kind))

    def run(self) -> FleetResult:
        m = self.m
        for i, p in enumerate(self.pumps):
            if self.rng.random() < m.share_infusing:
                p.activity = Activity.IN_USE
                self._log(i, FleetEventKind.INFUSION_START)
                end = self._programme_ms(self.rng)
                self._at(end, _Ev.INFUSION_END, i)
                self._old_programme(i, 0, end)
            elif math.isfinite(self.mean_idle_ms):
                self._at(self._exp_ms(self.mean_idle_ms), _Ev.INFUSION_START, i)
            if m.share_offline > 0 and self.rng.random() < m.share_offline:
                p.online = False
                self._log(i, FleetEventKind.OFFLINE)
                self._at(self._exp_ms(m.offline_mean_h * MS_PER_HOUR), _Ev.ONLINE, i)
            elif math.isfinite(self.mean_online_ms):
                self._at(self._exp_ms(self.mean_online_ms), _Ev.OFFLINE, i)
        self._at(self.publish_ms, _Ev.TICK, -1)
        self._at(self.publish_ms + TARGET_T95_S * _MS, _Ev.SNAPSHOT, -1)
        if self.halt_after_ms is not None:
            self._at(self.publish_ms + self.halt_after_ms, _Ev.HALT, -1)
        online_at_publish: list[bool] = []
        infusing_at_publish = 0
        finished = False
        while self.queue:
            when, kind, _, pump = heapq.heappop(self.queue)
            if when > self.end_limit:
                break
            self.clock.advance_to(when)
            if not self.published and when >= self.publish_ms:
                online_at_publish = [p.online for p in self.pumps]
                infusing_at_publish = sum(p.activity is Activity.IN_USE for p in self.pumps)
                self._publish()
            self._dispatch(_Ev(kind), pump)
            if self.published and self._finished():
                finished = True
                break
        return self._result(online_at_publish, infusing_at_publish, not finished)

    def _finished(self) -> bool:
        if self.unresolved == 0:
            return True
        if self.rollout.phase is not RolloutPhase.HALTED:
            return False
        return all(
            p.done or (p.cancelled and not p.cancel_pending) or self._never_released(i)
            for i, p in enumerate(self.pumps)
        )

    def _never_released(self, i: int) -> bool:
        return self.rollout.status(self.ids[i]).state is PumpRolloutState.WAITING

    # ------------------------------------------------------------------ events

    def _dispatch(self, kind: _Ev, i: int) -> None:
        now = self.clock.now_ms()
        if kind is _Ev.TICK:
            self._tick(now)
        elif kind is _Ev.SNAPSHOT:
            self.snapshot = self.rollout.compliance(now)
        elif kind is _Ev.HALT:
            if self.rollout.phase is not RolloutPhase.HALTED:
                self.rollout.halt("operator halt (simulation)", now)
                self._send()
        elif kind is _Ev.INFUSION_END:
            self._infusion_end(i, now)
        elif kind is _Ev.INFUSION_START:
            self._infusion_start(i, now)
        elif kind is _Ev.CONFIRM:
            self._confirm(i, now)
        elif kind is _Ev.OFFLINE:
            self._offline(i, now)
        elif kind is _Ev.ONLINE:
            self._online(i, now)
        elif kind is _Ev.NOTIFY:
            self._notified(i, now)
        elif kind is _Ev.CANCEL:
            self._cancel(i, now)
        elif kind is _Ev.FETCH_START:
            self._fetch_start(i, now)
        elif kind is _Ev.FETCH_DONE:
            self._fetch_done(i, now)
        elif kind is _Ev.VERIFY_DONE:
            self._verify_done(i, now)

    def _publish(self) -> None:
        self.published = True
        self._log(-1, FleetEventKind.PUBLISHED)
        for i, p in enumerate(self.pumps):
            if not p.online:
                self.rollout.set_online(self.ids[i], False, self.publish_ms)
        self.rollout.start(self.publish_ms)
        self._send()
        self._schedule_gate()

    def _schedule_gate(self) -> None:
        current = self.rollout.current_wave
        deadline = self.rollout.next_decision_ms()
        if current is None or deadline is None:
            return
        released = self.rollout.waves[current].released_ms
        assert released is not None
        self._at(released + self.rollout.plan.min_observation_ms, _Ev.TICK, -1)
        self._at(deadline, _Ev.TICK, -1)

    def _tick(self, now: int) -> None:
        if self.published and self.rollout.tick(now) is not None:
            self._send()
            self._schedule_gate()

    def _send(self) -> None:
        actions = self.rollout.take_actions()
        low, high = self.m.notify_latency_s
        for pump_id in actions.notify:
            i = self.index[pump_id]
            if self.pumps[i].online:
                self._at(self.clock.now_ms() + self._uniform_ms(low, high), _Ev.NOTIFY, i)
            else:
                self.pumps[i].notify_pending = True
        for pump_id in actions.cancel:
            i = self.index[pump_id]
            self.pumps[i].cancel_pending = True
            if self.pumps[i].online:
                self._at(self.clock.now_ms() + self._uniform_ms(low, high), _Ev.CANCEL, i)

    def _infusion_start(self, i: int, now: int) -> None:
        """A clinician starts entering a programme; it runs once confirmed."""
        entry_ms = int(self.m.programming_entry_s * _MS)
        if entry_ms == 0:
            self._confirm(i, now)
            return
        self.pumps[i].activity = Activity.PROGRAMMING
        self._log(i, FleetEventKind.PROGRAMMING_START)
        self._at(now + entry_ms, _Ev.CONFIRM, i)

    def _confirm(self, i: int, now: int) -> None:
        """The programme starts, checked against the pump's active library at this instant;
        a library staged during the entry goes in right after (``_try_apply``)."""
        p = self.pumps[i]
        p.activity = Activity.IN_USE
        self._log(i, FleetEventKind.INFUSION_START)
        if self.published and now < self.publish_ms + 24 * MS_PER_HOUR:
            slot = 0 if now < self.publish_ms + MS_PER_HOUR else 2
            self.programmes[slot] += 1
            self.programmes[slot + 1] += p.applied_ms is not None
        end = now + self._programme_ms(self.rng)
        self._at(end, _Ev.INFUSION_END, i)
        if p.applied_ms is None:
            self._old_programme(i, now, end)
        self._try_apply(i, now)

    def _old_programme(self, i: int, start: int, end: int) -> None:
        if end > self.publish_ms:
            self.old_programmes.append((i, start - self.publish_ms, end - self.publish_ms))

    def _infusion_end(self, i: int, now: int) -> None:
        p = self.pumps[i]
        p.activity = Activity.IDLE
        self._log(i, FleetEventKind.INFUSION_END)
        self._try_apply(i, now)
        if math.isfinite(self.mean_idle_ms):
            self._at(now + self._exp_ms(self.mean_idle_ms), _Ev.INFUSION_START, i)

    def _offline(self, i: int, now: int) -> None:
        self.pumps[i].online = False
        self._log(i, FleetEventKind.OFFLINE)
        if self.published:
            self.rollout.set_online(self.ids[i], False, now)
        self._at(now + self._exp_ms(self.m.offline_mean_h * MS_PER_HOUR), _Ev.ONLINE, i)

    def _online(self, i: int, now: int) -> None:
        p = self.pumps[i]
        p.online = True
        self._log(i, FleetEventKind.ONLINE)
        if self.published:
            self.rollout.set_online(self.ids[i], True, now)
        low, high = self.m.notify_latency_s
        if p.notify_pending:
            p.notify_pending = False
            self._at(now + self._uniform_ms(low, high), _Ev.NOTIFY, i)
        if p.cancel_pending:
            self._at(now + self._uniform_ms(low, high) + 1, _Ev.CANCEL, i)
        if p.fetch_pending:
            p.fetch_pending = False
            self._at(now + self._uniform_ms(0, self.m.fetch_jitter_s), _Ev.FETCH_START, i)
        if p.report_pending:
            p.report_pending = False
            self._report(i, now)
        if math.isfinite(self.mean_online_ms):
            self._at(now + self._exp_ms(self.mean_online_ms), _Ev.OFFLINE, i)

    def _notified(self, i: int, now: int) -> None:
        p = self.pumps[i]
        if p.cancelled:
            return
        self._log(i, FleetEventKind.NOTIFIED)
        self.rollout.record(self.ids[i], PumpRolloutState.NOTIFIED, now)
        self._at(now + self._uniform_ms(0, self.m.fetch_jitter_s), _Ev.FETCH_START, i)

    def _cancel(self, i: int, now: int) -> None:
        p = self.pumps[i]
        if not p.cancel_pending:
            return
        p.cancel_pending = False
        if p.done:
            return
        p.cancelled = True
        p.staged = None
        p.fetch_pending = False
        self.cancelled += 1
        self._log(i, FleetEventKind.CANCELLED)

    def _fetch_start(self, i: int, now: int) -> None:
        p = self.pumps[i]
        if p.cancelled or p.fetching:
            return
        if not p.online:
            p.fetch_pending = True
            return
        p.fetching = True
        seconds = self.rng.lognormvariate(math.log(self.m.fetch_median_s), self.m.fetch_sigma)
        self._at(now + int(seconds * _MS), _Ev.FETCH_DONE, i)

    def _fetch_done(self, i: int, now: int) -> None:
        p = self.pumps[i]
        p.fetching = False
        if p.cancelled:
            return
        self._log(i, FleetEventKind.FETCHED)
        self.rollout.record(self.ids[i], PumpRolloutState.FETCHED, now)
        self._at(now + int(self.m.verify_s * _MS), _Ev.VERIFY_DONE, i)

    def _verify_done(self, i: int, now: int) -> None:
        p = self.pumps[i]
        if p.cancelled:
            return
        if self.failure_share > 0 and self.rng.random() < self.failure_share:
            self._log(i, FleetEventKind.FAILED)
            p.done = True
            self.failed += 1
            self.unresolved -= 1
            self.rollout.fail(
                self.ids[i], FailureReason.VERIFICATION_FAILED, "simulated refusal", now
            )
            self._send()
            return
        self._log(i, FleetEventKind.VERIFIED)
        self.rollout.record(self.ids[i], PumpRolloutState.VERIFIED, now)
        staged = StagedUpdate(self.update, previous_version=self.update.target.version - 1)
        staged.stage()
        p.staged = staged
        self._log(i, FleetEventKind.STAGED)
        decision = staged.try_apply(p.activity.pump_state)
        if decision is ApplyDecision.APPLY:
            self.rollout.record(self.ids[i], PumpRolloutState.STAGED, now)
            self._applied(i, now)
        else:
            self.rollout.record(self.ids[i], PumpRolloutState.STAGED, now, waiting=decision)

    def _try_apply(self, i: int, now: int) -> None:
        p = self.pumps[i]
        if p.staged is None or p.done or p.cancelled:
            return
        if p.staged.try_apply(p.activity.pump_state) is ApplyDecision.APPLY:
            self._applied(i, now)

    def _applied(self, i: int, now: int) -> None:
        p = self.pumps[i]
        p.applied_ms = now
        p.done = True
        self.unresolved -= 1
        self._log(i, FleetEventKind.APPLIED)
        self.rollout.record(self.ids[i], PumpRolloutState.APPLIED, now)
        if p.online:
            self._report(i, now)
        else:
            p.report_pending = True
        if self.rollout.status(self.ids[i]).wave == self.rollout.current_wave:
            self._tick(now)
        applied = self.n - self.unresolved
        if self.progress is not None and applied - self.last_progress >= max(1, self.n // 200):
            self.last_progress = applied
            self.progress(applied, self.n)

    def _report(self, i: int, now: int) -> None:
        p = self.pumps[i]
        assert p.staged is not None
        self._log(i, FleetEventKind.REPORTED)
        self.rollout.report(self.ids[i], p.staged.report(now))

    # ------------------------------------------------------------------ result

    def _result(
        self, online_at_publish: list[bool], infusing_at_publish: int, horizon_reached: bool
    ) -> FleetResult:
        if self.progress is not None:
            self.progress(self.n - self.unresolved, self.n)
        applied = tuple(
            None if p.applied_ms is None else p.applied_ms - self.publish_ms for p in self.pumps
        )
        return FleetResult(
            pumps=self.n,
            seed=self.seed,
            publish_ms=self.publish_ms,
            online_at_publish=sum(online_at_publish),
            infusing_at_publish=infusing_at_publish,
            applied_ms=applied,
            online_at_publish_mask=tuple(online_at_publish),
            phase=self.rollout.phase,
            halt_reason=self.rollout.halt_reason,
            waves_released_ms=tuple(
                None if w.released_ms is None else w.released_ms - self.publish_ms
                for w in self.rollout.waves
            ),
            failed=self.failed,
            cancelled=self.cancelled,
            programmes_first_hour=self.programmes[0],
            programmes_first_hour_on_current=self.programmes[1],
            programmes_later=self.programmes[2],
            programmes_later_on_current=self.programmes[3],
            horizon_reached=horizon_reached,
            end_ms=self.clock.now_ms() - self.publish_ms,
            events=tuple(self.log),
            rollout=self.rollout,
            compliance_at_target=self.snapshot,
            old_library_programmes=tuple(self.old_programmes),
        )


def _synthetic_update(version: int = 2) -> VerifiedUpdate:
    path = target_path(UpdateKind.DRUG_LIBRARY, "ward-library", version)
    target = TargetDescription(path, UpdateKind.DRUG_LIBRARY, "ward-library", version, 0, "0" * 64)
    return VerifiedUpdate(target, b"", None)


def simulate_fleet(
    pumps: int,
    *,
    seed: int = 1,
    model: FleetModel | None = None,
    plan: RolloutPlan | None = None,
    update: VerifiedUpdate | None = None,
    warmup_h: float = 48.0,
    horizon_h: float = 14 * 24.0,
    verification_failure_share: float = 0.0,
    halt_after_s: float | None = None,
    keep_log: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> FleetResult:
    """Run the fleet for ``warmup_h`` (so that infusions at publication are a stationary mix of
    short and long ones), publish, and run until every pump runs the library or ``horizon_h``.

    ``update`` is what pumps stage (a real ``VerifiedUpdate`` from ``measure_release``, or a
    stand-in description of a drug library: the simulation never reads its content).
    ``verification_failure_share`` makes that share of pumps refuse the release, to exercise
    the halt; ``halt_after_s`` has an operator halt the roll-out that long after publication.
    """
    if pumps < 1:
        raise ValueError("the fleet needs at least one pump")
    if warmup_h < 0 or horizon_h <= 0:
        raise ValueError("warmup_h must not be negative and horizon_h must be positive")
    if not 0 <= verification_failure_share <= 1:
        raise ValueError("verification_failure_share must be in [0, 1]")
    fleet = _Fleet(
        pumps,
        model or FleetModel(),
        plan or RolloutPlan(),
        seed,
        update or _synthetic_update(),
        warmup_ms=int(warmup_h * MS_PER_HOUR),
        horizon_ms=int(horizon_h * MS_PER_HOUR),
        verification_failure_share=verification_failure_share,
        halt_after_ms=None if halt_after_s is None else int(halt_after_s * _MS),
        keep_log=keep_log,
        progress=progress,
    )
    return fleet.run()


# ---------------------------------------------------------------------- real release costs

_REPO_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: a fixed date keeps runs comparable


def _passphrase(key_name: str) -> bytes:
    return f"bench rollout passphrase of {key_name}".encode()


@dataclass(frozen=True, slots=True)
class ReleaseCost:
    """Real wall-clock cost of one drug-library release with the real TUF repository."""

    key_ceremony_wall_s: float
    signing_wall_s: float
    signers: int
    library_bytes: int
    verified_pumps: int
    verification_wall_s_sample: float
    verification_wall_s_per_pump: float
    update: VerifiedUpdate

    def fleet_verification_wall_s(self, pumps: int) -> float:
        """Measured for ``verified_pumps``; linear extrapolation beyond (one client per pump,
        each verification independent of the others)."""
        if pumps == self.verified_pumps:
            return self.verification_wall_s_sample
        return self.verification_wall_s_per_pump * pumps


def measure_release(
    library: bytes,
    *,
    sample: int,
    on_verified: Callable[[int, int], None] | None = None,
) -> ReleaseCost:
    """Sign and publish ``library``'s next version (2 of 3 pharmacists), then verify it with
    ``sample`` real ``UpdateClient`` instances, each with its own state; in a temporary dir.

    Timed: signing is proposing, unlocking each pharmacist's key, the two approvals and the
    publication (the key ceremony is timed apart: it happens once per repository, not per
    release). Verification is one ``UpdateClient.fetch`` per pump (the whole TUF workflow from
    the trust anchor, the download and the library validation), provisioning excluded.
    """
    if sample < 1:
        raise ValueError("sample must be at least 1")
    old = parse_library(json.loads(library, parse_float=Decimal), "benchmark library")
    document = json.loads(library)
    document["version"] = old.version + 1
    data = json.dumps(document).encode()
    clock = VirtualClock(_REPO_START_MS)
    events = SecurityEventLog()
    workdir = Path(tempfile.mkdtemp(prefix="pumpguard-bench-rollout-"))
    try:
        start = time.perf_counter()
        repo = UpdateRepository.create(workdir / "repo", clock=clock, passphrase_for=_passphrase)
        ceremony = time.perf_counter() - start

        start = time.perf_counter()
        repo.propose_drug_library(data)
        for name in ("drug-libraries-1", "drug-libraries-2"):
            repo.approve(
                UpdateKind.DRUG_LIBRARY, load_signer(repo.keys_dir, name, _passphrase(name))
            )
        target = repo.publish(UpdateKind.DRUG_LIBRARY)
        signing = time.perf_counter() - start

        source = MemorySource.from_directory(repo.published_dir)
        root = repo.trusted_root()
        installed = Installed(UpdateKind.DRUG_LIBRARY, old.library_id, old.version)
        total = 0.0
        verified: VerifiedUpdate | None = None
        for k in range(sample):
            state = workdir / "pumps" / f"pump-{k}"
            UpdateClient.provision(state, root)
            client = UpdateClient(
                state, SourceFetcher(source), clock=clock, events=events, device_id=f"PUMP-{k}"
            )
            start = time.perf_counter()
            outcome = client.fetch(target.path, installed)
            total += time.perf_counter() - start
            if not isinstance(outcome, VerifiedUpdate):
                raise RuntimeError(f"the benchmark release was refused: {outcome}")
            verified = outcome
            shutil.rmtree(state)
            if on_verified is not None:
                on_verified(k + 1, sample)
        assert verified is not None
        return ReleaseCost(
            key_ceremony_wall_s=ceremony,
            signing_wall_s=signing,
            signers=2,
            library_bytes=len(data),
            verified_pumps=sample,
            verification_wall_s_sample=total,
            verification_wall_s_per_pump=total / sample,
            update=verified,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------- the benchmark

_APPLY_RULE = (
    "a pump applies a verified library at once, idle or infusing (updates.can_apply), except "
    "while a programme is being entered (then at its confirmation); running programmes keep "
    "the library they were checked against until they end, every programme confirmed "
    "afterwards is checked against the new one"
)
_RUNS_NEW_LIBRARY = (
    "a pump runs the new library once it is its active library (the one every programme "
    "confirmed afterwards is checked against); infusions running at that instant keep the old "
    "library until they end: old_library_infusions_* counts them"
)
_DENOMINATOR = (
    "t50_s/t95_s/t99_s: virtual seconds after publication until that share of the pumps that "
    "were online at publication run the library (pumps that go offline later stay in the "
    "denominator); pumps offline at publication are left out and counted in "
    "offline_at_publish; t*_all_pumps_s count every pump"
)


@dataclass(frozen=True, slots=True)
class RolloutBench:
    """One ``bench rollout`` run: the simulated fleet and the measured release costs."""

    fleet: FleetResult
    cost: ReleaseCost
    model: FleetModel
    plan: RolloutPlan
    simulation_wall_s: float

    def report(self) -> dict[str, object]:
        f, c = self.fleet, self.cost
        extrapolated = c.verified_pumps < f.pumps
        t95 = _seconds(f.time_to_share_ms(0.95))
        return {
            "pumps": f.pumps,
            "seed": f.seed,
            "t50_s": _seconds(f.time_to_share_ms(0.50)),
            "t95_s": t95,
            "t99_s": _seconds(f.time_to_share_ms(0.99)),
            "t_definition": _DENOMINATOR,
            "runs_new_library": _RUNS_NEW_LIBRARY,
            "old_library_infusions_at_publish": _old_at(f, 0),
            "old_library_infusions_at_t95": _old_at(f, f.time_to_share_ms(0.95)),
            "old_library_infusions_at_target": _old_at(f, TARGET_T95_S * _MS),
            "target_t95_s": TARGET_T95_S,
            "target_met": t95 is not None and t95 <= TARGET_T95_S,
            "share_of_online_at_target": _share_at(f, TARGET_T95_S * _MS),
            "laggards_at_target": (
                None
                if f.compliance_at_target is None
                else {r.value: n for r, n in f.compliance_at_target.by_reason()}
            ),
            "online_at_publish": f.online_at_publish,
            "offline_at_publish": f.pumps - f.online_at_publish,
            "infusing_at_publish": f.infusing_at_publish,
            "t50_all_pumps_s": _seconds(f.time_to_share_ms(0.50, online_only=False)),
            "t95_all_pumps_s": _seconds(f.time_to_share_ms(0.95, online_only=False)),
            "t99_all_pumps_s": _seconds(f.time_to_share_ms(0.99, online_only=False)),
            "programme_starts_first_hour": f.programmes_first_hour,
            "programme_starts_first_hour_on_new_library": f.programmes_first_hour_on_current,
            "programme_starts_1h_to_24h": f.programmes_later,
            "programme_starts_1h_to_24h_on_new_library": f.programmes_later_on_current,
            "apply_rule": _APPLY_RULE,
            "rollout_phase": f.phase.value,
            "waves": [len(w.pump_ids) for w in f.rollout.waves],
            "waves_released_s": [_seconds(t) for t in f.waves_released_ms],
            "horizon_reached": f.horizon_reached,
            "simulated_until_s": _seconds(f.end_ms),
            "simulation_wall_s": self.simulation_wall_s,
            "signing_wall_s": c.signing_wall_s,
            "signing": (
                f"propose, unlock {c.signers} pharmacist keys, {c.signers} approvals "
                "(threshold 2 of 3), publish: real TUF repository in a temporary directory"
            ),
            "key_ceremony_wall_s": c.key_ceremony_wall_s,
            "library_bytes": c.library_bytes,
            "verification_wall_s": c.fleet_verification_wall_s(f.pumps),
            "verification_wall_s_per_pump": c.verification_wall_s_per_pump,
            "verification_measured_pumps": c.verified_pumps,
            "verification_extrapolated_from": c.verified_pumps if extrapolated else None,
            "verification": (
                "one real UpdateClient.fetch per pump (TUF workflow from the trust anchor, "
                "download, library validation), serial, on this machine"
                + (
                    f"; measured on {c.verified_pumps} pumps and extrapolated linearly"
                    if extrapolated
                    else ""
                )
            ),
            "utilisation": asdict(self.model),
            "utilisation_sources": _MODEL_SOURCES,
            "rollout_plan": asdict(self.plan),
        }


_MODEL_SOURCES = (
    "share_infusing: RTLS vendor figures of 30-35 % average IV pump utilisation (Penguin "
    "RTLS), taken at 0.40 to be on the busy side; everything else is an assumption stated in "
    "pumpguard.lab.rollout.FleetModel"
)


def _share_at(fleet: FleetResult, ms: int) -> float:
    online = [t for t, on in zip(fleet.applied_ms, fleet.online_at_publish_mask, strict=True) if on]
    return sum(t is not None and t <= ms for t in online) / len(online) if online else 0.0


def _old_at(fleet: FleetResult, ms: int | None) -> dict[str, int] | None:
    if ms is None:
        return None
    old = fleet.infusions_on_old_library(ms)
    return {
        "on_pumps_with_new_library_active": old.on_pumps_with_new_library_active,
        "on_pumps_without_it": old.on_pumps_without_it,
    }


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / _MS


def bench_rollout(
    pumps: int,
    *,
    library: bytes,
    seed: int = 1,
    plan: RolloutPlan | None = None,
    model: FleetModel | None = None,
    verify_sample: int = 50,
    on_verified: Callable[[int, int], None] | None = None,
    on_applied: Callable[[int, int], None] | None = None,
) -> RolloutBench:
    """Sign and verify ``library``'s next version for real, then roll it out in virtual time."""
    plan = plan or RolloutPlan()
    model = model or FleetModel()
    cost = measure_release(library, sample=min(verify_sample, pumps), on_verified=on_verified)
    start = time.perf_counter()
    fleet = simulate_fleet(
        pumps, seed=seed, model=model, plan=plan, update=cost.update, progress=on_applied
    )
    return RolloutBench(fleet, cost, model, plan, time.perf_counter() - start)
