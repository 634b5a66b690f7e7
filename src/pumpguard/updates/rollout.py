"""Staged roll-out of one published update to a fleet: canary first, then the rest, with halt.

Publishing a release (``UpdateRepository.publish``) makes it verifiable by every pump; the
roll-out decides which pumps are *told* to fetch it, and when. Pumps fetch only what they are
notified of, so a release that goes wrong on the canary pumps reaches no other pump.

``Rollout`` is a pure state machine, like ``StagedUpdate``: it is fed what the pumps report
(``record``, ``report``, ``fail``, ``set_online``) and the time (``tick``), and it queues what
the server must send (``take_actions``: pumps to notify, pumps to tell to drop a staged update).
It never reads a clock, sends a message or touches a file, so the server and the lab's virtual
fleet drive the same code.

Waves: the plan's leading shares of the fleet (a 5 % canary by default), then everyone else.
The next wave is released only while no pump has failed (verification refused, or a firmware
self-test that rolled back) and either the current wave's success share has applied after a
minimum observation time, or the soak time has passed: some canary pumps are always infusing or
offline, and without the soak time they would hold the whole fleet back. A failure halts the
roll-out by default (``halt_on_failure``): one refusal can be an attack on one pump's network
path rather than a bad release, but stopping costs minutes and pushing a bad library costs
patients. ``halt`` stops all further waves: pumps that already applied keep what they run, pumps
that were notified but have not applied are told to drop it, and nothing is pushed further.

Per-pump status feeds fleet compliance (``Rollout.compliance``): share of pumps on the release,
each laggard with the reason it lags, and time to coverage.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from pumpguard.clock import MS_PER_MINUTE
from pumpguard.updates.staging import ApplyDecision, InstallReport, UpdatePhase
from pumpguard.updates.targets import TargetDescription

__all__ = [
    "Compliance",
    "FailureReason",
    "LagReason",
    "Laggard",
    "PumpRolloutState",
    "PumpStatus",
    "Rollout",
    "RolloutActions",
    "RolloutError",
    "RolloutPhase",
    "RolloutPlan",
    "RolloutPlanError",
    "RolloutStateError",
    "Wave",
]


class RolloutError(Exception):
    """Base of roll-out errors."""


class RolloutPlanError(RolloutError, ValueError):
    """A roll-out plan that cannot work (shares out of range, soak shorter than observation)."""


class RolloutStateError(RolloutError):
    """A report or command the roll-out's current state does not allow."""


class PumpRolloutState(StrEnum):
    """How far one pump has got with the release, in order."""

    WAITING = "waiting"
    RELEASED = "released"
    NOTIFIED = "notified"
    FETCHED = "fetched"
    VERIFIED = "verified"
    STAGED = "staged"
    APPLIED = "applied"
    REPORTED = "reported"
    FAILED = "failed"

    @property
    def runs_release(self) -> bool:
        return self in (PumpRolloutState.APPLIED, PumpRolloutState.REPORTED)


_ORDER = {state: i for i, state in enumerate(PumpRolloutState)}
_PROGRESS = frozenset(PumpRolloutState) - {PumpRolloutState.WAITING, PumpRolloutState.FAILED}


class FailureReason(StrEnum):
    VERIFICATION_FAILED = "verification-failed"
    SELF_TEST_FAILED = "self-test-failed"


class LagReason(StrEnum):
    """Why a pump does not run the release yet: what fleet compliance shows per laggard."""

    NOT_RELEASED = "not-released"
    HALTED = "halted"
    OFFLINE = "offline"
    IN_PROGRESS = "in-progress"
    INFUSING = "infusing"
    PROGRAMMING = "programming"
    NOT_READY = "not-ready"
    VERIFICATION_FAILED = "verification-failed"
    SELF_TEST_FAILED = "self-test-failed"


_WAITING_REASON = {
    ApplyDecision.WAIT_INFUSING: LagReason.INFUSING,
    ApplyDecision.WAIT_PROGRAMMING: LagReason.PROGRAMMING,
    ApplyDecision.WAIT_NOT_READY: LagReason.NOT_READY,
}


class RolloutPhase(StrEnum):
    PLANNED = "planned"
    ROLLING_OUT = "rolling-out"
    RELEASED_TO_ALL = "released-to-all"
    HALTED = "halted"


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """Wave sizes and the gate between waves.

    ``wave_shares`` are the sizes of the leading waves as shares of the fleet (the first is the
    canary); the last wave is everyone else. A wave is promoted when no pump has failed and
    either ``success_share`` of it runs the release and ``min_observation_ms`` has passed since
    it was released, or ``soak_ms`` has passed.
    """

    wave_shares: tuple[float, ...] = (0.05,)
    success_share: float = 0.25
    min_observation_ms: int = 10 * MS_PER_MINUTE
    soak_ms: int = 30 * MS_PER_MINUTE
    halt_on_failure: bool = True

    def __post_init__(self) -> None:
        for share in self.wave_shares:
            if not 0 < share < 1:
                raise RolloutPlanError(f"a wave share must be between 0 and 1, got {share}")
        if sum(self.wave_shares) >= 1:
            raise RolloutPlanError(
                f"the leading waves take {sum(self.wave_shares):g} of the fleet; "
                "they must leave some pumps for the last wave"
            )
        if not 0 < self.success_share <= 1:
            raise RolloutPlanError(f"success_share must be in (0, 1], got {self.success_share}")
        if self.min_observation_ms < 0:
            raise RolloutPlanError("min_observation_ms must not be negative")
        if self.soak_ms < self.min_observation_ms:
            raise RolloutPlanError(
                f"soak_ms ({self.soak_ms}) must not be shorter than "
                f"min_observation_ms ({self.min_observation_ms})"
            )

    def waves(self, pump_ids: Sequence[str]) -> tuple[tuple[str, ...], ...]:
        """Split ``pump_ids`` in the given order; each leading wave has at least one pump.

        The caller chooses the order (random, or one pump per ward in the canary); empty waves
        are dropped, so a fleet too small for every wave still gets its pumps in order.
        """
        if len(set(pump_ids)) != len(pump_ids):
            raise RolloutPlanError("a pump may appear only once in a roll-out")
        if not pump_ids:
            raise RolloutPlanError("a roll-out needs at least one pump")
        waves: list[tuple[str, ...]] = []
        start = 0
        for share in self.wave_shares:
            size = max(1, math.ceil(share * len(pump_ids)))
            end = min(len(pump_ids), start + size)
            if end > start:
                waves.append(tuple(pump_ids[start:end]))
            start = end
        if start < len(pump_ids):
            waves.append(tuple(pump_ids[start:]))
        return tuple(waves)


@dataclass(frozen=True, slots=True)
class Wave:
    index: int
    pump_ids: tuple[str, ...]
    released_ms: int | None


@dataclass(frozen=True, slots=True)
class RolloutActions:
    """What the server must send now: notifications, and cancellations after a halt."""

    notify: tuple[str, ...] = ()
    cancel: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PumpStatus:
    pump_id: str
    wave: int
    state: PumpRolloutState
    online: bool
    cancelled: bool
    waiting: ApplyDecision | None
    failure: FailureReason | None
    detail: str
    changed_ms: int | None
    applied_ms: int | None
    installed_version: int | None


@dataclass(frozen=True, slots=True)
class Laggard:
    pump_id: str
    reason: LagReason
    state: PumpRolloutState
    detail: str


@dataclass(frozen=True, slots=True)
class Compliance:
    """Fleet compliance with one release at one instant."""

    version: int
    at_ms: int
    pumps: int
    on_current: int
    online: int
    online_on_current: int
    laggards: tuple[Laggard, ...]

    @property
    def share_on_current(self) -> float:
        return self.on_current / self.pumps

    @property
    def share_of_online_on_current(self) -> float:
        return self.online_on_current / self.online if self.online else 0.0

    def count(self, reason: LagReason) -> int:
        return sum(1 for lag in self.laggards if lag.reason is reason)

    def by_reason(self) -> tuple[tuple[LagReason, int], ...]:
        counts = Counter(lag.reason for lag in self.laggards)
        return tuple((reason, counts[reason]) for reason in LagReason if counts[reason])


@dataclass(slots=True)
class _Pump:
    pump_id: str
    wave: int
    state: PumpRolloutState = PumpRolloutState.WAITING
    online: bool = True
    cancelled: bool = False
    waiting: ApplyDecision | None = None
    failure: FailureReason | None = None
    detail: str = ""
    changed_ms: int | None = None
    applied_ms: int | None = None
    installed_version: int | None = None


@dataclass(slots=True)
class _Outbox:
    notify: list[str] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)


class Rollout:
    """The roll-out of ``target`` to ``pump_ids`` (in wave order) under ``plan``."""

    def __init__(
        self, plan: RolloutPlan, target: TargetDescription, pump_ids: Sequence[str]
    ) -> None:
        self._plan = plan
        self._target = target
        self._waves = plan.waves(pump_ids)
        self._released: list[int | None] = [None] * len(self._waves)
        self._pumps = {
            pump_id: _Pump(pump_id, index)
            for index, wave in enumerate(self._waves)
            for pump_id in wave
        }
        self._phase = RolloutPhase.PLANNED
        self._started_ms: int | None = None
        self._halt_reason: str | None = None
        self._failed = 0
        self._outbox = _Outbox()

    # ------------------------------------------------------------------ reading

    @property
    def plan(self) -> RolloutPlan:
        return self._plan

    @property
    def target(self) -> TargetDescription:
        return self._target

    @property
    def phase(self) -> RolloutPhase:
        return self._phase

    @property
    def halt_reason(self) -> str | None:
        return self._halt_reason

    @property
    def started_ms(self) -> int | None:
        return self._started_ms

    @property
    def waves(self) -> tuple[Wave, ...]:
        return tuple(Wave(i, ids, self._released[i]) for i, ids in enumerate(self._waves))

    @property
    def current_wave(self) -> int | None:
        """The last released wave, or None before the start."""
        released = [i for i, t in enumerate(self._released) if t is not None]
        return released[-1] if released else None

    def status(self, pump_id: str) -> PumpStatus:
        p = self._pump(pump_id)
        return PumpStatus(
            p.pump_id,
            p.wave,
            p.state,
            p.online,
            p.cancelled,
            p.waiting,
            p.failure,
            p.detail,
            p.changed_ms,
            p.applied_ms,
            p.installed_version,
        )

    def statuses(self) -> tuple[PumpStatus, ...]:
        return tuple(self.status(pump_id) for pump_id in self._pumps)

    def failures(self) -> tuple[PumpStatus, ...]:
        return tuple(s for s in self.statuses() if s.state is PumpRolloutState.FAILED)

    # ------------------------------------------------------------------ commands

    def start(self, now_ms: int) -> None:
        """Release the first wave (the canary)."""
        if self._phase is not RolloutPhase.PLANNED:
            raise RolloutStateError(f"the roll-out is {self._phase.value}, not planned")
        self._started_ms = now_ms
        self._phase = RolloutPhase.ROLLING_OUT
        self._release(0, now_ms)

    def tick(self, now_ms: int) -> int | None:
        """Promote to the next wave if the gate holds; return the index released, if any."""
        current = self.current_wave
        if self._phase is not RolloutPhase.ROLLING_OUT or current is None:
            return None
        if self._failed:
            return None
        released_ms = self._released[current]
        assert released_ms is not None
        elapsed = now_ms - released_ms
        wave = self._waves[current]
        applied = sum(1 for pump_id in wave if self._pumps[pump_id].state.runs_release)
        gate_holds = (
            applied >= self._plan.success_share * len(wave)
            and elapsed >= self._plan.min_observation_ms
        )
        if not gate_holds and elapsed < self._plan.soak_ms:
            return None
        self._release(current + 1, now_ms)
        return current + 1

    def next_decision_ms(self) -> int | None:
        """The latest instant at which ``tick`` may promote without any new report (the soak
        deadline), or None when no promotion is pending: lets a caller schedule its next tick."""
        current = self.current_wave
        if self._phase is not RolloutPhase.ROLLING_OUT or current is None:
            return None
        released_ms = self._released[current]
        assert released_ms is not None
        return released_ms + self._plan.soak_ms

    def halt(self, reason: str, now_ms: int) -> None:
        """Stop: no further wave; pumps notified but not yet running the release drop it."""
        if not reason.strip():
            raise RolloutStateError("a halt needs a reason (it goes to the audit trail)")
        if self._phase is RolloutPhase.HALTED:
            raise RolloutStateError(f"the roll-out is already halted: {self._halt_reason}")
        self._phase = RolloutPhase.HALTED
        self._halt_reason = reason
        for p in self._pumps.values():
            if p.state in _PROGRESS and not p.state.runs_release and not p.cancelled:
                p.cancelled = True
                p.changed_ms = now_ms
                self._outbox.cancel.append(p.pump_id)

    def take_actions(self) -> RolloutActions:
        """What to send since the last call (each pump appears once per action)."""
        actions = RolloutActions(tuple(self._outbox.notify), tuple(self._outbox.cancel))
        self._outbox = _Outbox()
        return actions

    # ------------------------------------------------------------------ what pumps report

    def set_online(self, pump_id: str, online: bool, now_ms: int) -> None:
        p = self._pump(pump_id)
        if p.online != online:
            p.online = online
            p.changed_ms = now_ms

    def record(
        self,
        pump_id: str,
        state: PumpRolloutState,
        now_ms: int,
        *,
        waiting: ApplyDecision | None = None,
        installed_version: int | None = None,
    ) -> None:
        """A pump moved forward (notified, fetched, verified, staged, applied, reported).

        Steps may be skipped (a pump may report only what it applied), never repeated or
        reversed. A pump whose wave was never released cannot have anything to report: that
        is refused, as a bug in the caller or a pump that fetched what it was not told to.
        """
        p = self._pump(pump_id)
        if state not in _PROGRESS or state is PumpRolloutState.RELEASED:
            raise RolloutStateError(
                f"{state.value} is not something a pump reports; use fail() for failures"
            )
        if p.state is PumpRolloutState.WAITING:
            raise RolloutStateError(
                f"pump {pump_id} reports {state.value} but its wave {p.wave} was not released"
            )
        if p.state is PumpRolloutState.FAILED:
            raise RolloutStateError(f"pump {pump_id} has failed ({p.failure}); it cannot progress")
        if _ORDER[state] <= _ORDER[p.state]:
            raise RolloutStateError(
                f"pump {pump_id} is {p.state.value}; it cannot go to {state.value}"
            )
        if waiting is not None and state is not PumpRolloutState.STAGED:
            raise RolloutStateError("only a staged pump waits for the apply rule")
        if waiting is ApplyDecision.APPLY:
            raise RolloutStateError("a pump told to apply is not waiting: record APPLIED")
        p.state = state
        p.waiting = waiting
        p.changed_ms = now_ms
        if state.runs_release:
            if p.applied_ms is None:
                p.applied_ms = now_ms
            p.installed_version = installed_version or self._target.version

    def report(self, pump_id: str, report: InstallReport) -> None:
        """The pump's ``InstallReport``: the release applied, or a firmware rollback (a failure)."""
        if report.target.path != self._target.path:
            raise RolloutStateError(
                f"pump {pump_id} reports {report.target.path}, not {self._target.path}"
            )
        if report.phase is UpdatePhase.ROLLED_BACK:
            self.fail(
                pump_id,
                FailureReason.SELF_TEST_FAILED,
                f"rolled back to v{report.installed_version}",
                report.time_ms,
            )
            return
        if report.installed_version != self._target.version:
            raise RolloutStateError(
                f"pump {pump_id} reports v{report.installed_version} for v{self._target.version}"
            )
        self.record(
            pump_id,
            PumpRolloutState.REPORTED,
            report.time_ms,
            installed_version=report.installed_version,
        )

    def fail(self, pump_id: str, reason: FailureReason, detail: str, now_ms: int) -> None:
        """A pump refused the release (the event code in ``detail``) or rolled it back."""
        p = self._pump(pump_id)
        if p.state is PumpRolloutState.WAITING:
            raise RolloutStateError(
                f"pump {pump_id} reports a failure but its wave {p.wave} was not released"
            )
        if p.state is PumpRolloutState.FAILED:
            raise RolloutStateError(f"pump {pump_id} has already failed ({p.failure})")
        p.state = PumpRolloutState.FAILED
        self._failed += 1
        p.failure = reason
        p.detail = detail
        p.waiting = None
        p.changed_ms = now_ms
        if self._plan.halt_on_failure and self._phase is not RolloutPhase.HALTED:
            self.halt(f"{reason.value} on pump {pump_id}: {detail}", now_ms)

    # ------------------------------------------------------------------ compliance

    def compliance(self, now_ms: int) -> Compliance:
        on_current = online = online_on_current = 0
        laggards: list[Laggard] = []
        for p in self._pumps.values():
            runs = p.state.runs_release
            on_current += runs
            online += p.online
            online_on_current += runs and p.online
            if not runs:
                laggards.append(Laggard(p.pump_id, self._lag_reason(p), p.state, p.detail))
        return Compliance(
            self._target.version,
            now_ms,
            len(self._pumps),
            on_current,
            online,
            online_on_current,
            tuple(laggards),
        )

    def time_to_coverage(self, share: float, pumps: Iterable[str] | None = None) -> int | None:
        """Milliseconds from the start until ``share`` of ``pumps`` (default: all) ran the
        release, or None if that has not happened (yet)."""
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        if self._started_ms is None:
            return None
        chosen = [self._pump(i) for i in pumps] if pumps is not None else list(self._pumps.values())
        if not chosen:
            return None
        needed = math.ceil(share * len(chosen))
        times = sorted(p.applied_ms for p in chosen if p.applied_ms is not None)
        if len(times) < needed:
            return None
        return times[needed - 1] - self._started_ms

    # ------------------------------------------------------------------ internals

    def _pump(self, pump_id: str) -> _Pump:
        try:
            return self._pumps[pump_id]
        except KeyError:
            raise RolloutStateError(f"pump {pump_id} is not part of this roll-out") from None

    def _release(self, index: int, now_ms: int) -> None:
        self._released[index] = now_ms
        for pump_id in self._waves[index]:
            p = self._pumps[pump_id]
            p.state = PumpRolloutState.RELEASED
            p.changed_ms = now_ms
            self._outbox.notify.append(pump_id)
        if index == len(self._waves) - 1:
            self._phase = RolloutPhase.RELEASED_TO_ALL

    def _lag_reason(self, p: _Pump) -> LagReason:
        if p.failure is not None:
            return LagReason(p.failure.value)
        if p.cancelled or (
            self._phase is RolloutPhase.HALTED and p.state is PumpRolloutState.WAITING
        ):
            return LagReason.HALTED
        if not p.online:
            return LagReason.OFFLINE
        if p.state is PumpRolloutState.WAITING:
            return LagReason.NOT_RELEASED
        if p.state is PumpRolloutState.STAGED and p.waiting is not None:
            return _WAITING_REASON[p.waiting]
        return LagReason.IN_PROGRESS
