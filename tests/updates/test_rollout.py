"""The staged roll-out state machine: waves, canary gate, halt, failures, fleet compliance."""

from __future__ import annotations

import pytest

from pumpguard.clock import MS_PER_MINUTE
from pumpguard.devices.infusion import PumpState
from pumpguard.updates import (
    ApplyDecision,
    FailureReason,
    FirmwareSlots,
    LagReason,
    PumpRolloutState,
    Rollout,
    RolloutActions,
    RolloutPhase,
    RolloutPlan,
    RolloutPlanError,
    RolloutStateError,
    Slot,
    StagedUpdate,
    TargetDescription,
    UpdateKind,
    VerifiedUpdate,
    target_path,
)

T0 = 1_000_000
MIN = MS_PER_MINUTE
LIBRARY = TargetDescription(
    target_path(UpdateKind.DRUG_LIBRARY, "ward-library", 7),
    UpdateKind.DRUG_LIBRARY,
    "ward-library",
    7,
    100,
    "a" * 64,
)
FIRMWARE = TargetDescription(
    target_path(UpdateKind.FIRMWARE, "lvp-main", 5), UpdateKind.FIRMWARE, "lvp-main", 5, 9, "b" * 64
)
PUMPS = [f"P{i:03d}" for i in range(100)]
CANARY = PUMPS[:5]
REST = PUMPS[5:]


def _plan(**changes: object) -> RolloutPlan:
    fields: dict[str, object] = {
        "wave_shares": (0.05,),
        "success_share": 0.6,
        "min_observation_ms": 10 * MIN,
        "soak_ms": 30 * MIN,
    }
    fields.update(changes)
    return RolloutPlan(**fields)  # type: ignore[arg-type]


def _started(**changes: object) -> Rollout:
    rollout = Rollout(_plan(**changes), LIBRARY, PUMPS)
    rollout.start(T0)
    assert rollout.take_actions().notify == tuple(CANARY)
    return rollout


def _apply(rollout: Rollout, pump: str, at: int) -> None:
    rollout.record(pump, PumpRolloutState.NOTIFIED, at)
    rollout.record(pump, PumpRolloutState.VERIFIED, at)
    rollout.record(pump, PumpRolloutState.APPLIED, at)


def test_waves_follow_the_given_order_and_the_canary_share() -> None:
    assert _plan().waves(PUMPS) == (tuple(CANARY), tuple(REST))
    three = RolloutPlan((0.05, 0.25)).waves(PUMPS)
    assert [len(w) for w in three] == [5, 25, 70]
    # a fleet too small for the shares still gets a canary of one pump
    assert RolloutPlan((0.05,)).waves(["a", "b", "c"]) == (("a",), ("b", "c"))


@pytest.mark.parametrize(
    "changes",
    [
        {"wave_shares": (0.0,)},
        {"wave_shares": (1.0,)},
        {"wave_shares": (0.6, 0.5)},
        {"success_share": 0.0},
        {"success_share": 1.5},
        {"min_observation_ms": -1},
        {"soak_ms": 5 * MIN},
    ],
)
def test_plans_that_cannot_work_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(RolloutPlanError):
        _plan(**changes)


def test_a_pump_cannot_be_in_a_roll_out_twice() -> None:
    with pytest.raises(RolloutPlanError, match="only once"):
        Rollout(_plan(), LIBRARY, ["a", "b", "a"])


def test_start_releases_the_canary_only() -> None:
    rollout = _started()
    assert rollout.phase is RolloutPhase.ROLLING_OUT
    assert rollout.current_wave == 0
    assert {rollout.status(p).state for p in CANARY} == {PumpRolloutState.RELEASED}
    assert {rollout.status(p).state for p in REST} == {PumpRolloutState.WAITING}
    with pytest.raises(RolloutStateError, match="not released"):
        rollout.record(REST[0], PumpRolloutState.NOTIFIED, T0)
    with pytest.raises(RolloutStateError, match="not planned"):
        rollout.start(T0)


def test_the_canary_is_promoted_once_its_share_applied_and_observed() -> None:
    rollout = _started()
    for pump in CANARY[:3]:  # 3 of 5 = the 60 % success share
        _apply(rollout, pump, T0 + MIN)
    assert rollout.tick(T0 + 10 * MIN - 1) is None  # not observed long enough
    assert rollout.take_actions().notify == ()
    assert rollout.tick(T0 + 10 * MIN) == 1
    assert rollout.take_actions().notify == tuple(REST)
    assert rollout.phase is RolloutPhase.RELEASED_TO_ALL
    assert rollout.tick(T0 + 60 * MIN) is None


def test_below_the_success_share_only_the_soak_time_promotes() -> None:
    rollout = _started()
    for pump in CANARY[:2]:  # 2 of 5: below 60 %
        _apply(rollout, pump, T0 + MIN)
    assert rollout.tick(T0 + 29 * MIN) is None
    assert rollout.next_decision_ms() == T0 + 30 * MIN
    assert rollout.tick(T0 + 30 * MIN) == 1


def test_a_failure_blocks_promotion_even_after_the_soak_time() -> None:
    rollout = _started(halt_on_failure=False)
    for pump in CANARY[:4]:
        _apply(rollout, pump, T0 + MIN)
    rollout.record(CANARY[4], PumpRolloutState.NOTIFIED, T0 + MIN)
    rollout.fail(CANARY[4], FailureReason.VERIFICATION_FAILED, "updates.target_hash_mismatch", T0)
    assert rollout.tick(T0 + 10 * MIN) is None
    assert rollout.tick(T0 + 300 * MIN) is None
    assert rollout.phase is RolloutPhase.ROLLING_OUT
    assert {rollout.status(p).state for p in REST} == {PumpRolloutState.WAITING}
    failed = rollout.failures()
    assert [(f.pump_id, f.failure) for f in failed] == [
        (CANARY[4], FailureReason.VERIFICATION_FAILED)
    ]
    assert failed[0].detail == "updates.target_hash_mismatch"


def test_a_failure_halts_by_default_and_cancels_what_has_not_applied() -> None:
    rollout = _started()
    _apply(rollout, CANARY[0], T0 + MIN)
    rollout.record(
        CANARY[1], PumpRolloutState.STAGED, T0 + MIN, waiting=ApplyDecision.WAIT_INFUSING
    )
    rollout.record(CANARY[2], PumpRolloutState.NOTIFIED, T0 + MIN)
    rollout.fail(CANARY[2], FailureReason.VERIFICATION_FAILED, "updates.invalid_target", T0 + MIN)
    assert rollout.phase is RolloutPhase.HALTED
    assert rollout.halt_reason is not None and CANARY[2] in rollout.halt_reason
    # pumps told to drop it: notified or staged, not the one that applied, not the failed one
    assert set(rollout.take_actions().cancel) == {CANARY[1], CANARY[3], CANARY[4]}
    assert rollout.status(CANARY[0]).state is PumpRolloutState.APPLIED
    assert rollout.tick(T0 + 1000 * MIN) is None
    assert {rollout.status(p).state for p in REST} == {PumpRolloutState.WAITING}
    compliance = rollout.compliance(T0 + 2 * MIN)
    assert compliance.on_current == 1
    assert compliance.count(LagReason.HALTED) == len(REST) + 3
    assert compliance.count(LagReason.VERIFICATION_FAILED) == 1


def test_an_operator_halt_stops_further_waves() -> None:
    rollout = _started()
    _apply(rollout, CANARY[0], T0 + MIN)
    with pytest.raises(RolloutStateError, match="reason"):
        rollout.halt("  ", T0 + 2 * MIN)
    rollout.halt("pharmacy found a wrong heparin limit", T0 + 2 * MIN)
    assert rollout.take_actions() == RolloutActions(cancel=tuple(CANARY[1:]))
    assert rollout.tick(T0 + 1000 * MIN) is None
    assert rollout.take_actions().notify == ()
    with pytest.raises(RolloutStateError, match="already halted"):
        rollout.halt("again", T0 + 3 * MIN)
    # a pump that missed the cancel and applied anyway is recorded as it is
    _apply(rollout, CANARY[1], T0 + 5 * MIN)
    assert rollout.status(CANARY[1]).state is PumpRolloutState.APPLIED
    assert rollout.status(CANARY[1]).cancelled


def test_a_firmware_self_test_failure_is_reported_as_a_failure() -> None:
    pumps = ["fw-1", "fw-2", "fw-3"]
    rollout = Rollout(RolloutPlan((0.3,)), FIRMWARE, pumps)
    rollout.start(T0)
    staged = StagedUpdate(
        VerifiedUpdate(FIRMWARE, b"image", None), slots=FirmwareSlots(Slot.A, active_version=4)
    )
    staged.stage()
    assert staged.try_apply(PumpState.IDLE) is ApplyDecision.APPLY
    staged.self_test(passed=False)
    rollout.record("fw-1", PumpRolloutState.STAGED, T0 + 1)
    rollout.report("fw-1", staged.report(T0 + 2))
    status = rollout.status("fw-1")
    assert status.state is PumpRolloutState.FAILED
    assert status.failure is FailureReason.SELF_TEST_FAILED
    assert "v4" in status.detail
    assert rollout.phase is RolloutPhase.HALTED


def test_an_install_report_marks_the_pump_reported() -> None:
    rollout = _started()
    staged = StagedUpdate(VerifiedUpdate(LIBRARY, b"{}", None), previous_version=6)
    staged.stage()
    staged.try_apply(PumpState.IDLE)
    rollout.record(CANARY[0], PumpRolloutState.APPLIED, T0 + 5)
    rollout.report(CANARY[0], staged.report(T0 + 9))
    status = rollout.status(CANARY[0])
    assert status.state is PumpRolloutState.REPORTED
    assert (status.applied_ms, status.installed_version) == (T0 + 5, 7)


@pytest.mark.parametrize(
    ("first", "then", "waiting"),
    [
        (PumpRolloutState.STAGED, PumpRolloutState.VERIFIED, None),
        (PumpRolloutState.FETCHED, PumpRolloutState.FETCHED, None),
        (PumpRolloutState.NOTIFIED, PumpRolloutState.APPLIED, ApplyDecision.WAIT_INFUSING),
        (PumpRolloutState.NOTIFIED, PumpRolloutState.STAGED, ApplyDecision.APPLY),
        (PumpRolloutState.NOTIFIED, PumpRolloutState.FAILED, None),
    ],
)
def test_reports_that_make_no_sense_are_refused(
    first: PumpRolloutState, then: PumpRolloutState, waiting: ApplyDecision | None
) -> None:
    rollout = _started()
    rollout.record(CANARY[0], first, T0)
    with pytest.raises(RolloutStateError):
        rollout.record(CANARY[0], then, T0 + 1, waiting=waiting)


def test_unknown_pumps_and_reports_after_a_failure_are_refused() -> None:
    rollout = _started(halt_on_failure=False)
    with pytest.raises(RolloutStateError, match="not part"):
        rollout.record("P999", PumpRolloutState.NOTIFIED, T0)
    rollout.fail(CANARY[0], FailureReason.VERIFICATION_FAILED, "updates.freeze", T0)
    with pytest.raises(RolloutStateError, match="failed"):
        rollout.record(CANARY[0], PumpRolloutState.APPLIED, T0 + 1)
    with pytest.raises(RolloutStateError, match="already failed"):
        rollout.fail(CANARY[0], FailureReason.VERIFICATION_FAILED, "again", T0 + 1)


def test_compliance_names_why_each_pump_lags() -> None:
    rollout = _started(halt_on_failure=False)
    p_applied, p_infusing, p_programming, p_offline, p_fetching = CANARY
    _apply(rollout, p_applied, T0 + 2 * MIN)
    rollout.record(p_infusing, PumpRolloutState.STAGED, T0, waiting=ApplyDecision.WAIT_INFUSING)
    rollout.record(
        p_programming, PumpRolloutState.STAGED, T0, waiting=ApplyDecision.WAIT_PROGRAMMING
    )
    rollout.record(p_offline, PumpRolloutState.NOTIFIED, T0)
    rollout.set_online(p_offline, False, T0 + MIN)
    rollout.record(p_fetching, PumpRolloutState.FETCHED, T0)
    compliance = rollout.compliance(T0 + 3 * MIN)
    reasons = {lag.pump_id: lag.reason for lag in compliance.laggards}
    assert reasons[p_infusing] is LagReason.INFUSING
    assert reasons[p_programming] is LagReason.PROGRAMMING
    assert reasons[p_offline] is LagReason.OFFLINE
    assert reasons[p_fetching] is LagReason.IN_PROGRESS
    assert all(reasons[p] is LagReason.NOT_RELEASED for p in REST)
    assert p_applied not in reasons
    assert (compliance.on_current, compliance.pumps, compliance.online) == (1, 100, 99)
    assert compliance.share_on_current == pytest.approx(0.01)
    assert dict(compliance.by_reason())[LagReason.NOT_RELEASED] == len(REST)


def test_time_to_coverage_counts_from_the_start() -> None:
    rollout = _started()
    assert rollout.time_to_coverage(0.4, CANARY) is None
    _apply(rollout, CANARY[0], T0 + 3 * MIN)
    _apply(rollout, CANARY[1], T0 + 7 * MIN)
    assert rollout.time_to_coverage(0.2, CANARY) == 3 * MIN
    assert rollout.time_to_coverage(0.4, CANARY) == 7 * MIN
    assert rollout.time_to_coverage(0.6, CANARY) is None
    assert rollout.time_to_coverage(0.01) == 3 * MIN
    with pytest.raises(ValueError, match="share"):
        rollout.time_to_coverage(0)
