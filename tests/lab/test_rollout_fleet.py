"""The virtual fleet receiving a drug library: the apply rule per pump, coverage, determinism,
halt, agreement with the real firmware, and ``pumpguard bench rollout``."""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal

import pytest
from tests.updates.conftest import library_bytes, parse_library_bytes
from typer.testing import CliRunner

from pumpguard.cli import app
from pumpguard.clinical import PumpKind
from pumpguard.clock import VirtualClock
from pumpguard.devices.infusion import (
    Clear,
    Confirm,
    ContinuousProgramme,
    InfusionPump,
    Pause,
    PowerOff,
    PowerOn,
    Program,
    PumpState,
    Resume,
    SetCareArea,
)
from pumpguard.lab.rollout import (
    Activity,
    FleetEventKind,
    FleetModel,
    FleetResult,
    activity_of,
    simulate_fleet,
)
from pumpguard.updates import ApplyDecision, LagReason, RolloutPhase, RolloutPlan, can_apply

runner = CliRunner()
K = FleetEventKind


def _per_pump(result: FleetResult) -> dict[int, list[FleetEventKind]]:
    kinds: dict[int, list[FleetEventKind]] = defaultdict(list)
    for event in result.events:
        kinds[event.pump].append(event.kind)
    return kinds


def _canary(result: FleetResult) -> set[int]:
    return {int(p.removeprefix("PUMP-")) for p in result.rollout.waves[0].pump_ids}


@pytest.fixture(scope="module")
def fleet() -> FleetResult:
    return simulate_fleet(300, seed=7, keep_log=True)


def _replay(result: FleetResult) -> tuple[int, int, int]:
    """Replays every pump's log (replaces the old rule's check that no pump applies while in
    use): no pump applies while a programme is being entered. Returns how many applied while
    infusing, how many applied at a confirmation after waiting, and how many applied."""
    infusing = at_confirmation = applied = 0
    events: dict[int, list[tuple[int, FleetEventKind]]] = defaultdict(list)
    for event in result.events:
        events[event.pump].append((event.time_ms, event.kind))
    for pump, timeline in events.items():
        if pump < 0:
            continue
        state, last_confirm = "idle", -1
        for when, kind in timeline:
            if kind is K.PROGRAMMING_START:
                assert state == "idle", f"pump {pump} programmed twice"
                state = "entering"
            elif kind is K.INFUSION_START:
                state, last_confirm = "infusing", when
            elif kind is K.INFUSION_END:
                state = "idle"
            elif kind is K.APPLIED:
                assert state != "entering", f"pump {pump} applied during programming entry"
                applied += 1
                infusing += state == "infusing"
                at_confirmation += when == last_confirm
    return infusing, at_confirmation, applied


def test_no_pump_applies_during_programming_entry(fleet: FleetResult) -> None:
    infusing, _, applied = _replay(fleet)
    assert applied == sum(t is not None for t in fleet.applied_ms)
    # the new rule was exercised: many pumps were infusing when the library went in
    assert infusing > 30


def test_a_library_staged_during_programming_entry_goes_in_at_the_confirmation() -> None:
    """Long entries (30 min) make many pumps receive the library while a programme is entered:
    each waits, and applies at the instant the programme is confirmed (on the old library)."""
    result = simulate_fleet(
        300, seed=7, keep_log=True, model=FleetModel(programming_entry_s=1800.0)
    )
    _, at_confirmation, applied = _replay(result)
    assert applied == sum(t is not None for t in result.applied_ms)
    assert at_confirmation > 5


def test_a_programme_keeps_the_library_active_at_its_confirmation(fleet: FleetResult) -> None:
    """Programmes confirmed before their pump applied run on the old library until they end
    (and are counted as such); programmes confirmed afterwards never are."""
    old = fleet.old_library_programmes
    assert old
    for pump, start, end in old:
        applied = fleet.applied_ms[pump]
        assert start < end
        assert applied is None or start <= applied
    confirmed_after: dict[int, int] = defaultdict(int)
    for event in fleet.events:
        if event.kind is K.INFUSION_START and event.pump >= 0:
            applied = fleet.applied_ms[event.pump]
            if applied is not None and event.time_ms - fleet.publish_ms > applied:
                confirmed_after[event.pump] += 1
    assert sum(confirmed_after.values()) > 100
    at_publish = fleet.infusions_on_old_library(0)
    assert at_publish.on_pumps_with_new_library_active == 0
    assert at_publish.on_pumps_without_it == fleet.infusing_at_publish
    t95 = fleet.time_to_share_ms(0.95)
    assert t95 is not None
    later = fleet.infusions_on_old_library(t95)
    assert later.on_pumps_with_new_library_active > later.on_pumps_without_it
    still_old = later.on_pumps_with_new_library_active + later.on_pumps_without_it
    assert still_old > 0


def test_each_pump_goes_through_the_update_steps_in_order(fleet: FleetResult) -> None:
    order = [K.NOTIFIED, K.FETCHED, K.VERIFIED, K.STAGED, K.APPLIED]
    for pump, kinds in _per_pump(fleet).items():
        steps = [k for k in kinds if k in order]
        if pump >= 0 and K.APPLIED in steps:
            assert steps == order, f"pump {pump}: {steps}"


def test_every_online_pump_eventually_applies(fleet: FleetResult) -> None:
    assert not fleet.horizon_reached
    assert fleet.phase is RolloutPhase.RELEASED_TO_ALL
    online = [t for t, on in zip(fleet.applied_ms, fleet.online_at_publish_mask, strict=True) if on]
    assert len(online) == fleet.online_at_publish > 0
    assert all(t is not None and t > 0 for t in online)
    assert fleet.rollout.compliance(fleet.end_ms).on_current == fleet.pumps
    t50, t95, t99 = (fleet.time_to_share_ms(s) for s in (0.5, 0.95, 0.99))
    assert t50 is not None and t95 is not None and t99 is not None
    assert t50 <= t95 <= t99


def test_only_the_canary_is_notified_before_promotion(fleet: FleetResult) -> None:
    promoted = fleet.waves_released_ms[1]
    assert promoted is not None and promoted >= RolloutPlan().min_observation_ms
    canary = _canary(fleet)
    for event in fleet.events:
        if event.kind is K.NOTIFIED and event.time_ms < fleet.publish_ms + promoted:
            assert event.pump in canary


def test_the_simulation_is_deterministic_for_a_seed() -> None:
    a = simulate_fleet(80, seed=3, keep_log=True)
    b = simulate_fleet(80, seed=3, keep_log=True)
    c = simulate_fleet(80, seed=4, keep_log=True)
    assert a.applied_ms == b.applied_ms
    assert a.events == b.events
    assert a.applied_ms != c.applied_ms


def test_the_fleet_infuses_at_the_stated_share() -> None:
    result = simulate_fleet(2000, seed=11, model=FleetModel(share_infusing=0.4))
    assert 0.36 <= result.infusing_at_publish / result.pumps <= 0.44
    assert 0.87 <= result.online_at_publish / result.pumps <= 0.93


def test_a_verification_failure_in_the_canary_halts_the_roll_out() -> None:
    result = simulate_fleet(200, seed=5, keep_log=True, verification_failure_share=1.0)
    assert result.phase is RolloutPhase.HALTED
    assert result.halt_reason is not None and "verification-failed" in result.halt_reason
    assert result.waves_released_ms[1] is None
    assert all(t is None for t in result.applied_ms)
    notified = {e.pump for e in result.events if e.kind is K.NOTIFIED}
    assert notified and notified <= _canary(result)
    assert result.failed >= 1


def test_an_operator_halt_keeps_what_applied_and_pushes_nothing_further() -> None:
    result = simulate_fleet(400, seed=2, keep_log=True, halt_after_s=300)
    assert result.phase is RolloutPhase.HALTED
    canary = _canary(result)
    applied = {i for i, t in enumerate(result.applied_ms) if t is not None}
    assert applied and applied <= canary
    assert all(result.applied_ms[i] is not None for i in applied)
    assert result.cancelled > 0
    assert not any(e.kind is K.NOTIFIED and e.pump not in canary for e in result.events)


def test_the_model_apply_rule_agrees_with_can_apply_on_the_real_firmware() -> None:
    """Drive the real LVP firmware through a programme's life and compare, at every state it
    shows, the apply decision on the real state with the one on the modelled activity."""
    clock = VirtualClock(1_767_225_600_000)
    pump = InfusionPump(PumpKind.LVP, clock, library=parse_library_bytes(library_bytes(1)))
    seen: list[tuple[PumpState, bool]] = [(pump.state, pump.awaiting_confirmation)]
    saline = ContinuousProgramme("Saline", Decimal(100), "mL/h", Decimal(50))
    titration = ContinuousProgramme("Saline", Decimal(120), "mL/h", Decimal(50))
    for step in (
        PowerOn(),
        SetCareArea("ICU"),
        Program(saline),
        Confirm(),
        Program(titration),
        Confirm(),
        Pause(),
        Resume(),
        None,
        Clear(),
        PowerOff(),
    ):
        if step is None:
            clock.advance(40 * 60_000)  # 50 mL at 120 mL/h: complete, the pump keeps the vein open
        else:
            assert pump.handle(step).accepted, step
        seen.append((pump.state, pump.awaiting_confirmation))
    assert {state for state, _ in seen} >= {
        PumpState.OFF,
        PumpState.IDLE,
        PumpState.PROGRAMMING,
        PumpState.INFUSING,
        PumpState.PAUSED,
        PumpState.KVO,
    }
    assert (PumpState.INFUSING, True) in seen  # a titration entered on a running pump
    every = [(state, pending) for state in PumpState for pending in (False, True)]
    for state, pending in [*seen, *every]:
        real = can_apply(state, awaiting_confirmation=pending)
        modelled = can_apply(activity_of(state, awaiting_confirmation=pending).pump_state)
        assert (real is ApplyDecision.APPLY) == (modelled is ApplyDecision.APPLY), state
    assert activity_of(PumpState.KVO) is Activity.IN_USE
    assert activity_of(PumpState.INFUSING, awaiting_confirmation=True) is Activity.PROGRAMMING


def test_bench_rollout_json_reports_every_figure() -> None:
    result = runner.invoke(
        app, ["bench", "rollout", "--pumps", "150", "--verify-sample", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["pumps"] == 150
    assert 0 < report["t50_s"] <= report["t95_s"] <= report["t99_s"]
    assert report["signing_wall_s"] > 0
    assert report["verification_wall_s"] > 0
    assert report["verification_extrapolated_from"] == 3
    assert report["verification_measured_pumps"] == 3
    assert report["online_at_publish"] + report["offline_at_publish"] == 150
    assert report["utilisation"]["share_infusing"] == 0.4
    assert report["target_met"] == (report["t95_s"] <= 3600)
    assert report["waves"][0] == 8
    assert "active library" in report["runs_new_library"]
    at_publish = report["old_library_infusions_at_publish"]
    assert at_publish["on_pumps_without_it"] == report["infusing_at_publish"]
    assert set(report["old_library_infusions_at_t95"]) == set(at_publish)


def test_bench_rollout_verifies_every_pump_of_a_small_fleet() -> None:
    result = runner.invoke(app, ["bench", "rollout", "--pumps", "4", "--seed", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["verification_extrapolated_from"] is None
    assert report["verification_measured_pumps"] == 4


def test_bench_rollout_table() -> None:
    result = runner.invoke(
        app, ["bench", "rollout", "--pumps", "20", "--verify-sample", "1"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "t95_s" in result.stdout and "extrapolated from 1" in result.stdout


@pytest.mark.parametrize(
    "flags",
    [
        ["--pumps", "0"],
        ["--canary-share", "0"],
        ["--canary-share", "1"],
        ["--share-infusing", "1.2"],
        ["--share-offline", "-0.1"],
        ["--verify-sample", "0"],
        ["--pumps", "many"],
    ],
)
def test_bench_rollout_refuses_bad_flags(flags: list[str]) -> None:
    result = runner.invoke(app, ["bench", "rollout", *flags])
    assert result.exit_code == 2


def test_compliance_mid_roll_out_names_offline_pumps_and_no_infusing_ones() -> None:
    """Replaces the old rule's expectation of infusing laggards: an infusion no longer holds a
    pump back, and compliance says so."""
    result = simulate_fleet(300, seed=9, horizon_h=1.0)
    assert result.horizon_reached
    compliance = result.rollout.compliance(result.publish_ms + result.end_ms)
    counts = dict(compliance.by_reason())
    assert LagReason.INFUSING not in counts
    assert counts[LagReason.OFFLINE] > 0
    assert compliance.on_current == sum(t is not None for t in result.applied_ms)
    assert compliance.online == sum(p.online for p in result.rollout.statuses())
    assert compliance.online < result.pumps


@pytest.mark.slow
def test_a_fleet_of_ten_thousand_pumps_is_covered() -> None:
    result = simulate_fleet(10_000, seed=1)
    assert not result.horizon_reached
    online = [
        t for t, on in zip(result.applied_ms, result.online_at_publish_mask, strict=True) if on
    ]
    assert all(t is not None for t in online)
    assert result.time_to_share_ms(0.95) is not None
